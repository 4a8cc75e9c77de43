/**
 * The packages a workspace package's library code imports: one scanner for the tools that check imports
 * (check-packs' declared-dependency check, the e2e test of the package map's layering).
 */
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { builtinModules } = require('node:module');

const root = path.resolve(__dirname, '..', '..');
const ts = require(require.resolve('typescript', { paths: [root] }));

/** Package name of a bare import specifier ('@scope/name/sub' → '@scope/name'), or null for relative/builtin. */
function packageOf(spec) {
  if (spec.startsWith('.') || spec.startsWith('/') || spec.startsWith('node:')) return null;
  const name = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0];
  return builtinModules.includes(name) ? null : name;
}

/** The library sources under `dir`: .ts files, without tests and test utilities. */
function sourceFiles(dir) {
  const out = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const file = path.join(dir, entry.name);
    if (entry.isDirectory()) {
      if (entry.name !== 'test-utils' && entry.name !== '__tests__') out.push(...sourceFiles(file));
    } else if (/\.ts$/.test(entry.name) && !/\.(test|spec)\.ts$/.test(entry.name)) {
      out.push(file);
    }
  }
  return out;
}

/** Every package imported (import, export … from, require, type imports) by `<pkgDir>/src`: name → first file. */
function packageImports(pkgDir) {
  const imported = new Map();
  for (const file of sourceFiles(path.join(pkgDir, 'src'))) {
    const info = ts.preProcessFile(fs.readFileSync(file, 'utf8'), true, true);
    for (const ref of info.importedFiles) {
      const name = packageOf(ref.fileName);
      if (name && !imported.has(name)) imported.set(name, path.relative(pkgDir, file));
    }
  }
  return imported;
}

module.exports = { packageImports, packageOf, sourceFiles };
