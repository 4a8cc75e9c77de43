/**
 * The package map's layering, stated once: for every workspace package, the @bilevel packages its library code
 * (src/, tests and test utilities excluded) may import. Imports point down the map — core ← linalg ← solvers /
 * estimators / problems ← … ← cli — never up, and never sideways between plugins (solvers and estimators do not
 * know each other). check-packs fails on any other import, naming the file and the import; the e2e foundation
 * test checks the same graph.
 */
'use strict';

/** Package → the @bilevel packages it may import. */
const ALLOWED_IMPORTS = {
  '@bilevel/core': [],
  '@bilevel/tfjs-blas': [],
  '@bilevel/backend': ['@bilevel/core', '@bilevel/tfjs-blas'],
  '@bilevel/linalg': ['@bilevel/core'],
  '@bilevel/solvers': ['@bilevel/core', '@bilevel/linalg'],
  '@bilevel/estimators': ['@bilevel/core', '@bilevel/linalg'],
  '@bilevel/datasets': ['@bilevel/core'],
  '@bilevel/problems': ['@bilevel/core', '@bilevel/linalg', '@bilevel/datasets'],
  '@bilevel/meta-learning': ['@bilevel/core', '@bilevel/datasets'],
  '@bilevel/distributed': ['@bilevel/core'],
  '@bilevel/cli': [
    '@bilevel/core',
    '@bilevel/backend',
    '@bilevel/linalg',
    '@bilevel/solvers',
    '@bilevel/estimators',
    '@bilevel/datasets',
    '@bilevel/problems',
    '@bilevel/meta-learning',
    '@bilevel/distributed',
  ],
};

/**
 * The layering violations of one package: `imports` maps each imported package to the (first) file importing
 * it, as `packageImports` returns it. A package missing from the map is a violation too (add it to the map).
 */
function layeringProblems(name, imports) {
  const allowed = ALLOWED_IMPORTS[name];
  if (!allowed) {
    return [
      `${name} is not in the package map (tools/check-packs/layers.js): state which packages it may import`,
    ];
  }
  const problems = [];
  for (const [imported, file] of imports) {
    if (!imported.startsWith('@bilevel/') || imported === name || allowed.includes(imported)) continue;
    problems.push(
      `${file} imports ${imported}, which ${name} may not import (the package map allows ${
        allowed.length ? allowed.join(', ') : 'no @bilevel package'
      }; see tools/check-packs/layers.js)`,
    );
  }
  return problems;
}

module.exports = { ALLOWED_IMPORTS, layeringProblems };
