// Runs an example compiled by `npx tsc -p examples/tsconfig.run.json` (to /tmp/bilevel-examples), resolving
// `@bilevel/<package>` to the compiled sources of packages/<package>/src — no build of the packages needed.
// Usage: node examples/run-compiled.js <example-name> [flags...]
const Module = require('node:module');
const path = require('node:path');

const out = process.env.BILEVEL_EXAMPLES_OUT || '/tmp/bilevel-examples';
const resolve = Module._resolveFilename;
Module._resolveFilename = function (request, ...rest) {
  const m = /^@bilevel\/([a-z0-9-]+)$/.exec(request);
  if (m) return resolve.call(this, path.join(out, 'packages', m[1], 'src', 'index.js'), ...rest);
  return resolve.call(this, request, ...rest);
};
// Build products found relative to the compiled package — native addons (@bilevel/tfjs-blas's build/Release)
// and generated bundles (@bilevel/core's vendor/tfjs-registrations.js): link them.
const fs = require('node:fs');
const repoPackages = path.join(__dirname, '..', 'packages');
for (const pkg of fs.readdirSync(repoPackages)) {
  for (const part of ['build', 'vendor']) {
    const made = path.join(repoPackages, pkg, part);
    const target = path.join(out, 'packages', pkg, part);
    if (fs.existsSync(made) && fs.existsSync(path.dirname(target)) && !fs.existsSync(target)) fs.symlinkSync(made, target);
  }
}
// Third-party packages come from the repository's node_modules.
process.env.NODE_PATH = [path.join(__dirname, '..', 'node_modules'), process.env.NODE_PATH].filter(Boolean).join(path.delimiter);
Module._initPaths();
require('reflect-metadata');
const name = process.argv[2];
if (!name) {
  console.error('usage: node examples/run-compiled.js <example-name> [flags...]');
  process.exit(2);
}
require(path.join(out, 'examples', `${name.replace(/\.ts$/, '')}.js`));
