#!/usr/bin/env node
/**
 * Checks that every publishable package works when a user installs it on its own from its tarball.
 *
 * 1. Declared dependencies: the bare imports of each package's sources (tests excluded) must be exactly its
 *    `dependencies` + `peerDependencies` + `optionalDependencies` — nothing missing, nothing unused. And they
 *    must follow the package map (`layers.js`, the one statement of the allowed graph): an import up or
 *    sideways fails, with the file and the import named.
 * 2. For each package: `npm pack` it and the @bilevel packages it depends on, install the tarballs into an empty
 *    project (npm also installs the peer `@tensorflow/tfjs-core`), so that only declared dependencies are
 *    present, and load it there. Its `bin` commands must answer `--help`.
 * 3. Take the first ```ts block of the package's README, transpile it with TypeScript and run it in that
 *    project. @bilevel packages the example imports beyond the package's own closure (e.g. meta-learning's
 *    example also uses solvers and estimators, as its README's install line says) are installed first.
 *    Some packages' examples run more than once (`VARIANTS`, e.g. tfjs-blas without its native addon).
 *
 * 4. A user project, as the README's "Use it in your own project" describes it: `npm init -y`, the packed
 *    packages the snippets import (with their dependencies) plus typescript, tsx and @types/node installed, the
 *    README's tsconfig.json. Every ```ts block of README.md, docs/*.md and the package READMEs (the rules of
 *    examples/check-examples.js: `snippet: skip` blocks left out, `snippet: no-run` ones only compiled) is pasted
 *    into a file of its own and checked twice:
 *      CommonJS — compiled with `tsc` (that tsconfig.json) and run with `node` on the compiled JavaScript;
 *      ES module — in a folder whose package.json says "type": "module", type-checked with `tsc` under
 *      `"module": "nodenext"` and run with `tsx`.
 *    The package READMEs' blocks are only compiled here: they run in step 3 and in examples/check-examples.js.
 *
 * Prints, per package: packed and unpacked size, install time, the example's output and PASS/FAIL; then a table.
 * Exits 1 when anything failed. Packages must be built first (`npm run check-packs` builds them).
 *
 * Usage: node tools/check-packs/check-packs.js [--quiet] [--keep] [--no-user-project] [package-name ...]
 *   --quiet            do not print the examples' output (only the table)
 *   --keep             keep the temporary folder (its path is printed)
 *   --no-user-project  skip step 4 (which also runs only when no package name is given, or with --user-project)
 *   --user-project     only step 4
 *
 * npm's cache is reused (`--prefer-offline`), so a second run installs from the cache; third-party packages
 * come from the registry the first time.
 */
'use strict';
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { packageImports, packageOf } = require('./package-imports');
const { layeringProblems } = require('./layers');
const { blockName, blocks, docFiles } = require('./doc-blocks');

const root = path.resolve(__dirname, '../..');
const ts = require(require.resolve('typescript', { paths: [root] }));

/** Extra runs of a package's README example, each with these environment variables. */
const VARIANTS = {
  '@bilevel/tfjs-blas': [{ label: 'without the native addon', env: { BILEVEL_BLAS_DISABLE: '1' } }],
};
/** Time limit of one example run. */
const EXAMPLE_TIMEOUT_MS = 180_000;

const args = process.argv.slice(2);
const quiet = args.includes('--quiet');
const keep = args.includes('--keep');
const wanted = args.filter((a) => !a.startsWith('--'));
const userProjectOnly = args.includes('--user-project');
const userProject = userProjectOnly || (!args.includes('--no-user-project') && wanted.length === 0);

const pkgsDir = path.join(root, 'packages');
const packages = fs
  .readdirSync(pkgsDir)
  .map((d) => path.join(pkgsDir, d))
  .filter((d) => fs.existsSync(path.join(d, 'package.json')))
  .map((dir) => ({ dir, json: JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')) }))
  .filter((p) => !p.json.private);
const byName = new Map(packages.map((p) => [p.json.name, p]));
for (const w of wanted) {
  if (!byName.has(w)) {
    console.error(`unknown package ${w}; publishable packages: ${[...byName.keys()].join(', ')}`);
    process.exit(2);
  }
}
const selected = userProjectOnly ? [] : wanted.length ? packages.filter((p) => wanted.includes(p.json.name)) : packages;

function run(cmd, cmdArgs, cwd, env = {}, timeout = 600_000) {
  return execFileSync(cmd, cmdArgs, {
    cwd,
    stdio: ['ignore', 'pipe', 'pipe'],
    encoding: 'utf8',
    timeout,
    maxBuffer: 64 * 1024 * 1024,
    env: { ...process.env, npm_config_nodedir: '', npm_config_update_notifier: 'false', ...env },
  });
}

const kib = (bytes) =>
  bytes < 1024 * 1024 ? `${(bytes / 1024).toFixed(1)} kB` : `${(bytes / 1024 / 1024).toFixed(2)} MB`;
const secs = (ms) => `${(ms / 1000).toFixed(1)} s`;
const indent = (text) =>
  text
    .trimEnd()
    .split('\n')
    .map((l) => `    │ ${l}`)
    .join('\n');

// ---------------------------------------------------------------------------------------------------------
// 1. Declared dependencies against the imports of the sources, and the layering of the package map.

function checkDeclaredDependencies(p) {
  const imported = packageImports(p.dir); // name → first file importing it
  // Imports only down the package map (tools/check-packs/layers.js): file and import named.
  const problems = layeringProblems(p.json.name, imported).map((m) => `layering: ${m}`);
  const declared = new Set(
    ['dependencies', 'peerDependencies', 'optionalDependencies'].flatMap((k) => Object.keys(p.json[k] || {})),
  );
  for (const [name, file] of imported) {
    if (!declared.has(name)) problems.push(`imports ${name} (${file}) but does not declare it`);
  }
  for (const name of declared) {
    if (!imported.has(name)) problems.push(`declares ${name} but never imports it`);
  }
  return problems;
}

// ---------------------------------------------------------------------------------------------------------
// 2. Pack, install, load.

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'bilevel-packs-'));
const packed = new Map(); // name → { file, size, unpackedSize, entryCount }
function pack(p) {
  if (packed.has(p.json.name)) return packed.get(p.json.name);
  for (const f of ['dist/index.js', 'dist/index.d.ts']) {
    if (!fs.existsSync(path.join(p.dir, f))) throw new Error(`${f} is missing — build first (npm run build)`);
  }
  const [info] = JSON.parse(run('npm', ['pack', '--json', '--pack-destination', work], p.dir));
  const result = {
    file: path.join(work, info.filename),
    size: info.size,
    unpackedSize: info.unpackedSize,
    entryCount: info.entryCount,
  };
  packed.set(p.json.name, result);
  return result;
}

/** The packages and every @bilevel package they depend on, transitively. */
function closure(names, seen = new Set()) {
  for (const name of names) {
    if (seen.has(name)) continue;
    seen.add(name);
    const p = byName.get(name);
    const deps = { ...(p.json.dependencies || {}), ...(p.json.optionalDependencies || {}) };
    closure(
      Object.keys(deps).filter((d) => byName.has(d)),
      seen,
    );
  }
  return seen;
}

function npmInstall(proj, names) {
  const files = [...names].map((n) => pack(byName.get(n)).file);
  const started = Date.now();
  run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error', ...files], proj);
  return Date.now() - started;
}

// ---------------------------------------------------------------------------------------------------------
// 3. The README example.

function readmeExample(p) {
  const file = path.join(p.dir, 'README.md');
  if (!fs.existsSync(file)) return null;
  const m = /```ts\n([\s\S]*?)```/.exec(fs.readFileSync(file, 'utf8'));
  return m ? m[1] : null;
}

function exampleImports(code) {
  return ts
    .preProcessFile(code, true, true)
    .importedFiles.map((f) => packageOf(f.fileName))
    .filter((n) => n !== null);
}

function writeExample(proj, code) {
  const js = ts.transpileModule(code, {
    compilerOptions: {
      module: ts.ModuleKind.CommonJS,
      target: ts.ScriptTarget.ES2022,
      experimentalDecorators: true,
      emitDecoratorMetadata: true,
      esModuleInterop: true,
    },
  }).outputText;
  // Top-level await: the transpiled module body runs inside an async function.
  const file = path.join(proj, 'example.js');
  fs.writeFileSync(
    file,
    `(async () => {\n${js}\n})().catch((e) => { console.error(e); process.exit(1); });\n`,
  );
  return file;
}

// ---------------------------------------------------------------------------------------------------------

const results = [];
const totalStarted = Date.now();
console.log(`check-packs: ${selected.length} package(s), working in ${work}\n`);

for (const p of selected) {
  const name = p.json.name;
  const row = { name, packed: '', unpacked: '', files: '', install: '', example: '', status: 'PASS' };
  results.push(row);
  const lines = [];
  const fail = (msg) => {
    row.status = 'FAIL';
    lines.push(`  ✗ ${msg}`);
  };
  console.log(`── ${name}`);
  try {
    const depProblems = checkDeclaredDependencies(p);
    if (depProblems.length) depProblems.forEach((d) => fail(d.startsWith('layering: ') ? d : `dependencies: ${d}`));
    else lines.push('  ✓ declared dependencies match the imports of src/, which go only down the package map');

    const own = pack(p);
    row.packed = kib(own.size);
    row.unpacked = kib(own.unpackedSize);
    row.files = String(own.entryCount);
    lines.push(`  packed ${row.packed} (${row.unpacked} unpacked, ${own.entryCount} files)`);

    const proj = path.join(work, name.replace('@bilevel/', 'project-'));
    fs.mkdirSync(proj, { recursive: true });
    fs.writeFileSync(
      path.join(proj, 'package.json'),
      JSON.stringify({ name: 'check', version: '1.0.0', private: true }),
    );
    const names = closure([name]);
    const installMs = npmInstall(proj, names);
    row.install = secs(installMs);
    lines.push(`  installed with ${[...names].join(', ')} in ${row.install}`);

    const entry = require.resolve(name, { paths: [proj] });
    if (!entry.startsWith(proj)) throw new Error(`${name} resolved outside the test project: ${entry}`);
    const exported = run(
      process.execPath,
      ['-e', `console.log(Object.keys(require(${JSON.stringify(name)})).length)`],
      proj,
    ).trim();
    lines.push(`  ✓ require('${name}') loads: ${exported} exports`);

    for (const bin of Object.keys(
      typeof p.json.bin === 'string' ? { [name]: p.json.bin } : p.json.bin || {},
    )) {
      const binPath = path.join(proj, 'node_modules', '.bin', bin);
      if (!fs.existsSync(binPath)) fail(`bin ${bin} was not linked`);
      else {
        const help = run(binPath, ['--help'], proj);
        lines.push(`  ✓ npx ${bin} --help: ${help.split('\n')[0].trim()}`);
      }
    }

    const example = readmeExample(p);
    if (!example) throw new Error('README.md has no ```ts example block');
    const extra = closure(exampleImports(example).filter((n) => byName.has(n) && !names.has(n)));
    for (const n of names) extra.delete(n);
    if (extra.size) {
      const ms = npmInstall(proj, extra);
      lines.push(`  the README example also needs ${[...extra].join(', ')}: installed in ${secs(ms)}`);
    }
    const undeclared = exampleImports(example).filter(
      (n) => !byName.has(n) && !fs.existsSync(path.join(proj, 'node_modules', n, 'package.json')),
    );
    if (undeclared.length)
      fail(`the README example imports ${undeclared.join(', ')}, which installing ${name} does not bring`);
    const file = writeExample(proj, example);
    const times = [];
    for (const variant of [{ label: '', env: {} }, ...(VARIANTS[name] || [])]) {
      const started = Date.now();
      try {
        const out = run(process.execPath, [file], proj, variant.env, EXAMPLE_TIMEOUT_MS);
        times.push(Date.now() - started);
        lines.push(
          `  ✓ README example${variant.label ? ` (${variant.label})` : ''} ran in ${secs(Date.now() - started)}`,
        );
        if (!quiet) lines.push(indent(out || '(no output)'));
        if (!out.trim()) fail('the README example printed nothing');
      } catch (err) {
        fail(
          `README example${variant.label ? ` (${variant.label})` : ''} failed after ${secs(Date.now() - started)}`,
        );
        lines.push(indent(`${err.stdout || ''}${err.stderr || err.message}`));
      }
    }
    row.example = times.map(secs).join(' + ');
  } catch (err) {
    fail(err.stderr ? `${err.message.split('\n')[0]}\n${indent(err.stderr)}` : err.message);
  }
  console.log(lines.join('\n'));
  console.log(`  ${row.status} ${name}\n`);
}

// ---------------------------------------------------------------------------------------------------------
// 4. The README's and the guides' snippets in a user project.

/** The first ```json block after the README's "Use it in your own project" heading: the documented tsconfig.json. */
function readmeTsconfig() {
  const text = fs.readFileSync(path.join(root, 'README.md'), 'utf8');
  const at = text.indexOf('## Use it in your own project');
  if (at < 0) throw new Error('README.md has no "## Use it in your own project" section');
  const m = /```json\n([\s\S]*?)```/.exec(text.slice(at));
  if (!m) throw new Error('README.md\'s "Use it in your own project" shows no tsconfig.json (```json block)');
  return JSON.parse(m[1]);
}

/** The version of a devDependency installed in the repository (so the user project installs the same one). */
const rootVersion = (name) => JSON.parse(fs.readFileSync(path.join(root, 'node_modules', name, 'package.json'), 'utf8')).version;

/** tsc's diagnostics about `file` (a path relative to tsc's folder), from its whole output. */
const diagnosticsOf = (report, file) =>
  report
    .split('\n')
    .filter((l) => l.startsWith(`${file}(`))
    .join('\n');

function checkUserProject() {
  const row = { name: 'user project (docs)', packed: '', unpacked: '', files: '', install: '', example: '', status: 'PASS' };
  results.push(row);
  const lines = [];
  const fail = (msg, detail) => {
    row.status = 'FAIL';
    lines.push(`  ✗ ${msg}`);
    if (detail) lines.push(indent(detail));
  };
  console.log('── user project: the snippets of README.md and docs/*.md, as CommonJS and as an ES module');
  try {
    const proj = path.join(work, 'user-project');
    fs.mkdirSync(proj, { recursive: true });
    run('npm', ['init', '-y'], proj);
    const type = JSON.parse(fs.readFileSync(path.join(proj, 'package.json'), 'utf8')).type;
    if (type !== undefined && type !== 'commonjs') throw new Error(`npm init -y wrote "type": "${type}"; expected CommonJS`);
    const snippets = [];
    for (const file of docFiles(root)) {
      // The package READMEs' blocks are compiled here too; they run in the per-package projects (the first one)
      // and in examples/check-examples.js (the others).
      const packageReadme = path.relative(root, file).startsWith('packages');
      blocks(file).forEach((b, i) => {
        if (b.directive === 'snippet' && b.value === 'skip') return;
        snippets.push({
          where: `${path.relative(root, file)}:${b.line}`,
          name: blockName(root, file, i),
          code: b.code,
          run: !packageReadme && !(b.directive === 'snippet' && b.value === 'no-run'),
        });
      });
    }
    // The @bilevel packages the snippets import, with what they depend on (npm adds the peer tfjs-core).
    const names = closure(snippets.flatMap((s) => exampleImports(s.code)).filter((n) => byName.has(n)));
    const started = Date.now();
    run(
      'npm',
      [
        'install',
        '--prefer-offline',
        '--no-audit',
        '--no-fund',
        '--loglevel=error',
        ...[...names].map((n) => pack(byName.get(n)).file),
        `typescript@${rootVersion('typescript')}`,
        `tsx@${rootVersion('tsx')}`,
        `@types/node@${rootVersion('@types/node')}`,
      ],
      proj,
    );
    row.install = secs(Date.now() - started);
    lines.push(`  npm init -y; installed ${[...names].join(', ')}, typescript, tsx and @types/node in ${row.install}`);
    const tsconfig = readmeTsconfig();
    const variants = [
      {
        label: 'CommonJS',
        dir: path.join(proj, 'cjs'),
        packageJson: null,
        compilerOptions: { ...tsconfig.compilerOptions, outDir: 'dist' },
        command: (s) => [process.execPath, [path.join('dist', `${s.name}.js`)]],
      },
      {
        label: 'ES module',
        dir: path.join(proj, 'esm'),
        packageJson: { type: 'module' },
        compilerOptions: { ...tsconfig.compilerOptions, module: 'nodenext', moduleResolution: 'nodenext', noEmit: true },
        command: (s) => [path.join(proj, 'node_modules', '.bin', 'tsx'), [`${s.name}.ts`]],
      },
    ];
    const times = [];
    for (const v of variants) {
      fs.mkdirSync(v.dir, { recursive: true });
      if (v.packageJson) fs.writeFileSync(path.join(v.dir, 'package.json'), JSON.stringify(v.packageJson));
      for (const s of snippets) fs.writeFileSync(path.join(v.dir, `${s.name}.ts`), s.code);
      fs.writeFileSync(
        path.join(v.dir, 'tsconfig.json'),
        JSON.stringify({ compilerOptions: v.compilerOptions, files: snippets.map((s) => `${s.name}.ts`) }, null, 2),
      );
      const tscStarted = Date.now();
      let report = '';
      try {
        run(path.join(proj, 'node_modules', '.bin', 'tsc'), ['-p', '.'], v.dir);
      } catch (err) {
        report = `${err.stdout || ''}${err.stderr || err.message}`;
      }
      const bad = new Set();
      for (const s of snippets) {
        const mine = diagnosticsOf(report, `${s.name}.ts`);
        if (mine) {
          bad.add(s.name);
          fail(`${v.label}: ${s.where} does not compile`, mine);
        }
      }
      if (report && bad.size === 0) fail(`${v.label}: tsc failed`, report);
      lines.push(`  ${v.label}: tsc on ${snippets.length} snippets in ${secs(Date.now() - tscStarted)}${bad.size ? '' : ', no error'}`);
      const runStarted = Date.now();
      for (const s of snippets.filter((x) => x.run && !bad.has(x.name))) {
        const [cmd, cmdArgs] = v.command(s);
        const t0 = Date.now();
        try {
          const out = run(cmd, cmdArgs, v.dir, {}, EXAMPLE_TIMEOUT_MS);
          lines.push(`  ✓ ${v.label}: ${s.where} ran in ${secs(Date.now() - t0)}`);
          if (!quiet && out.trim()) lines.push(indent(out.split('\n').slice(-6).join('\n')));
        } catch (err) {
          fail(`${v.label}: ${s.where} failed after ${secs(Date.now() - t0)}`, `${err.stdout || ''}${err.stderr || err.message}`);
        }
      }
      times.push(Date.now() - runStarted);
    }
    row.example = times.map(secs).join(' + ');
  } catch (err) {
    fail(err.stderr ? `${err.message.split('\n')[0]}\n${indent(err.stderr)}` : err.message);
  }
  console.log(lines.join('\n'));
  console.log(`  ${row.status} user project\n`);
}

if (userProject) checkUserProject();

if (keep) console.log(`kept ${work}`);
else fs.rmSync(work, { recursive: true, force: true });

const headers = ['package', 'packed', 'unpacked', 'files', 'install', 'example', 'result'];
const table = results.map((r) => [r.name, r.packed, r.unpacked, r.files, r.install, r.example, r.status]);
const widths = headers.map((h, i) => Math.max(h.length, ...table.map((r) => r[i].length)));
const fmt = (cells) =>
  cells
    .map((c, i) => (i === 0 || i === cells.length - 1 ? c.padEnd(widths[i]) : c.padStart(widths[i])))
    .join('  ');
console.log(fmt(headers));
console.log(widths.map((w) => '-'.repeat(w)).join('  '));
for (const r of table) console.log(fmt(r));
const failed = results.filter((r) => r.status !== 'PASS').length;
console.log(`\ntotal ${secs(Date.now() - totalStarted)}`);
console.log(`check-packs: ${results.length - failed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
