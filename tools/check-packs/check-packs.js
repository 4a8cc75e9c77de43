#!/usr/bin/env node
/**
 * For every publishable package: `npm pack` it (and the @bilevel packages it depends on), install the tarballs
 * into an empty project so that only declared dependencies are present, then take the first ```ts block of the
 * package's README, compile it with TypeScript and run it there. Fails when a package cannot be installed,
 * imported, or its README example fails.
 *
 * Usage: node tools/check-packs/check-packs.js [package-name ...]   (packages must be built first)
 */
'use strict';
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const root = path.resolve(__dirname, '../..');
const ts = require(require.resolve('typescript', { paths: [root] }));

function sh(cmd, args, cwd) {
  return execFileSync(cmd, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8', env: { ...process.env, npm_config_nodedir: '' } });
}

const pkgsDir = path.join(root, 'packages');
const packages = fs
  .readdirSync(pkgsDir)
  .map((d) => path.join(pkgsDir, d))
  .filter((d) => fs.existsSync(path.join(d, 'package.json')))
  .map((dir) => ({ dir, json: JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')) }))
  .filter((p) => !p.json.private);
const byName = new Map(packages.map((p) => [p.json.name, p]));

const wanted = process.argv.slice(2);
const selected = wanted.length ? packages.filter((p) => wanted.includes(p.json.name)) : packages;

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'bilevel-packs-'));
const tarballs = new Map();
function pack(p) {
  if (tarballs.has(p.json.name)) return tarballs.get(p.json.name);
  for (const f of ['dist/index.js', 'dist/index.d.ts']) {
    if (!fs.existsSync(path.join(p.dir, f))) throw new Error(`${p.json.name}: ${f} is missing — build first`);
  }
  const out = sh('npm', ['pack', '--silent', '--pack-destination', work], p.dir).trim().split('\n').pop();
  const file = path.join(work, out);
  tarballs.set(p.json.name, file);
  return file;
}

/** The package and every @bilevel package it depends on, transitively. */
function closure(p, seen = new Set()) {
  if (seen.has(p.json.name)) return seen;
  seen.add(p.json.name);
  const deps = { ...(p.json.dependencies || {}), ...(p.json.optionalDependencies || {}) };
  for (const d of Object.keys(deps)) if (byName.has(d)) closure(byName.get(d), seen);
  return seen;
}

function readmeExample(p) {
  const file = path.join(p.dir, 'README.md');
  if (!fs.existsSync(file)) return null;
  const m = /```ts\n([\s\S]*?)```/.exec(fs.readFileSync(file, 'utf8'));
  return m ? m[1] : null;
}

let failures = 0;
for (const p of selected) {
  const name = p.json.name;
  const started = Date.now();
  try {
    const names = [...closure(p)];
    const files = names.map((n) => pack(byName.get(n)));
    const proj = path.join(work, name.replace('@bilevel/', 'project-'));
    fs.mkdirSync(proj, { recursive: true });
    fs.writeFileSync(path.join(proj, 'package.json'), JSON.stringify({ name: 'check', version: '1.0.0', private: true }));
    sh('npm', ['install', '--no-audit', '--no-fund', '--loglevel=error', ...files], proj);
    const entry = require.resolve(name, { paths: [proj] });
    if (!entry.startsWith(proj)) throw new Error(`${name} resolved outside the test project: ${entry}`);
    const example = readmeExample(p);
    if (!example) throw new Error('README.md has no ```ts example block');
    const js = ts.transpileModule(example, {
      compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, experimentalDecorators: true, emitDecoratorMetadata: true, esModuleInterop: true },
    }).outputText;
    fs.writeFileSync(path.join(proj, 'example.js'), `(async () => {\n${js}\n})().catch((e) => { console.error(e); process.exit(1); });\n`);
    const out = sh(process.execPath, ['example.js'], proj);
    const secs = ((Date.now() - started) / 1000).toFixed(1);
    console.log(`ok   ${name} (${secs}s): installed with ${names.length} @bilevel package(s); README example ran`);
    if (process.env.VERBOSE) console.log(out);
  } catch (err) {
    failures++;
    const detail = err.stderr ? `${err.message}\n${err.stderr}` : err.message;
    console.error(`FAIL ${name}: ${detail}`);
  }
}
fs.rmSync(work, { recursive: true, force: true });
console.log(`${selected.length - failures} passed, ${failures} failed`);
process.exit(failures ? 1 : 0);
