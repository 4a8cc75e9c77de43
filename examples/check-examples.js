#!/usr/bin/env node
// Checks the runnable examples and every TypeScript snippet of the documentation against the real APIs.
// Run it after `npx tsc -p examples/tsconfig.run.json` (which type-checks examples/*.ts and compiles them and
// the packages to /tmp/bilevel-examples); `npm run examples` does both.
//
// 1. A ```ts block preceded by `<!-- example: examples/NAME.ts -->` must be exactly that file (so a guide
//    shows the code that is type-checked and run here).
// 2. Every other ```ts block of README.md, docs/*.md and packages/*/README.md is type-checked as a module of
//    its own (top-level await allowed), unless preceded by `<!-- snippet: skip -->` (a fragment).
// 3. The small examples (EXAMPLES below) run, and so do the other snippets, unless preceded by
//    `<!-- snippet: no-run -->`: a wrong option name fails at run time, because every option schema refuses
//    unknown keys. The first snippet of a package README is run by tools/check-packs instead (in a project where
//    only that package is installed), and here only with --packages.
//
// Usage: node examples/check-examples.js [--fix] [--no-run] [--packages] [--quiet]
//   --fix       first copy each example file into the blocks that show it (check 1 then passes)
//   --no-run    only the checks 1 and 2
//   --packages  also run the first snippet of each package README (as check-packs does, but on the sources)
//   --quiet     do not print the output of what runs
'use strict';
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const ts = require(require.resolve('typescript', { paths: [root] }));
const { blockName, blocks, docFiles } = require('../tools/check-packs/doc-blocks');
const out = process.env.BILEVEL_EXAMPLES_OUT || '/tmp/bilevel-examples';

/** The examples small enough to run on every check (each a few seconds on the cpu backend). */
const EXAMPLES = ['pipeline-in-code', 'custom-estimator', 'custom-problem', 'choose-backend'];
const TIMEOUT_MS = 300_000;

const args = process.argv.slice(2);
const noRun = args.includes('--no-run');
const runPackages = args.includes('--packages');
const quiet = args.includes('--quiet');
const fix = args.includes('--fix');

const failures = [];
let passed = 0;
const rel = (f) => path.relative(root, f);
const indent = (text) =>
  text
    .trimEnd()
    .split('\n')
    .map((l) => `    │ ${l}`)
    .join('\n');
function pass(what) {
  passed++;
  console.log(`  ✓ ${what}`);
}
function fail(what, detail = '') {
  failures.push(what);
  console.log(`  ✗ ${what}${detail ? `\n${indent(detail)}` : ''}`);
}

// ---------------------------------------------------------------------------------------------------------
// Snippets.

const docs = docFiles(root);

// Inside the repository's node_modules, so that the snippets' third-party imports resolve as in a project.
if (fix) {
  for (const file of docs) {
    const text = fs.readFileSync(file, 'utf8');
    const fixed = text.replace(
      /(<!--\s*example:\s*([^\s]+)\s*-->\s*\n```ts\n)[\s\S]*?```/g,
      (all, head, target) => {
        const source = path.join(root, target);
        return fs.existsSync(source) ? `${head}${fs.readFileSync(source, 'utf8')}\`\`\`` : all;
      },
    );
    if (fixed !== text) {
      fs.writeFileSync(file, fixed);
      console.log(`updated the examples shown in ${rel(file)}`);
    }
  }
}

const snippetDir = path.join(root, 'node_modules', '.cache', 'bilevel-snippets');
fs.rmSync(snippetDir, { recursive: true, force: true });
fs.mkdirSync(snippetDir, { recursive: true });
const snippets = [];
console.log('documentation snippets');
for (const file of docs) {
  const isPackageReadme = rel(file).startsWith('packages/');
  blocks(file).forEach((b, i) => {
    const where = `${rel(file)}:${b.line}`;
    if (b.directive === 'example') {
      const target = path.join(root, b.value);
      if (!fs.existsSync(target)) fail(`${where}: ${b.value} does not exist`);
      else if (fs.readFileSync(target, 'utf8') !== b.code)
        fail(`${where}: the block differs from ${b.value} (copy the file into the guide)`);
      else pass(`${where} is ${b.value}`);
      return;
    }
    if (b.directive === 'snippet' && b.value === 'skip') return;
    if (b.directive && !(b.directive === 'snippet' && b.value === 'no-run')) {
      fail(`${where}: unknown directive <!-- ${b.directive}: ${b.value} -->`);
      return;
    }
    const name = blockName(root, file, i);
    const tsFile = path.join(snippetDir, `${name}.ts`);
    fs.writeFileSync(tsFile, b.code);
    // A package README's first block is run by tools/check-packs in a project of its own; its later ones here.
    const runnable = b.directive !== 'snippet';
    const run = !noRun && (isPackageReadme && i === 0 ? runPackages : runnable);
    snippets.push({ where, name, tsFile, code: b.code, run });
  });
}

// Type-check the snippets in one program: each is a module, top-level await allowed, @bilevel/* resolved to
// the packages' sources through tsconfig.base.json's paths.
const tsconfig = path.join(snippetDir, 'tsconfig.json');
fs.writeFileSync(
  tsconfig,
  JSON.stringify({
    extends: path.join(root, 'tsconfig.base.json'),
    compilerOptions: {
      noEmit: true,
      module: 'es2022',
      moduleResolution: 'bundler',
      moduleDetection: 'force',
      noUnusedLocals: false,
      typeRoots: [path.join(root, 'node_modules', '@types')],
      types: ['node'],
    },
    files: snippets.map((s) => s.tsFile),
  }),
);
try {
  execFileSync(process.execPath, [require.resolve('typescript/bin/tsc', { paths: [root] }), '-p', tsconfig], {
    cwd: root,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  for (const s of snippets) pass(`${s.where} type-checks`);
} catch (err) {
  const report = `${err.stdout || ''}${err.stderr || ''}`;
  for (const s of snippets) {
    const mine = report
      .split('\n')
      .filter((l) => l.includes(`/${s.name}.ts(`) || l.startsWith(`${s.name}.ts(`))
      .map((l) => l.replace(/^.*?bilevel-snippets\//, ''));
    if (mine.length) fail(`${s.where} does not type-check`, mine.join('\n'));
    else pass(`${s.where} type-checks`);
  }
  if (!snippets.some((s) => report.includes(`${s.name}.ts(`))) fail('type-check of the snippets', report);
}

// ---------------------------------------------------------------------------------------------------------
// Runs: the compiled examples, and the snippets transpiled next to them (so that run-compiled.js resolves
// @bilevel/* to the compiled sources).

function runCompiled(name, label) {
  const started = Date.now();
  try {
    const output = execFileSync(process.execPath, [path.join(__dirname, 'run-compiled.js'), name], {
      cwd: root,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: TIMEOUT_MS,
      env: { ...process.env, BILEVEL_EXAMPLES_OUT: out },
    });
    pass(`${label} ran in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    if (!quiet && output.trim()) console.log(indent(output));
  } catch (err) {
    fail(
      `${label} failed after ${((Date.now() - started) / 1000).toFixed(1)} s`,
      `${err.stdout || ''}${err.stderr || err.message}`,
    );
  }
}

if (!noRun) {
  console.log('\nexamples');
  for (const name of EXAMPLES) {
    if (!fs.existsSync(path.join(out, 'examples', `${name}.js`))) {
      fail(`examples/${name}.ts is not compiled: run npx tsc -p examples/tsconfig.run.json first`);
      continue;
    }
    runCompiled(name, `examples/${name}.ts`);
  }
  console.log('\nsnippets that run');
  const runDir = path.join(out, 'examples', 'snippets');
  fs.rmSync(runDir, { recursive: true, force: true });
  fs.mkdirSync(runDir, { recursive: true });
  for (const s of snippets.filter((x) => x.run)) {
    const js = ts.transpileModule(s.code, {
      compilerOptions: {
        module: ts.ModuleKind.CommonJS,
        target: ts.ScriptTarget.ES2022,
        experimentalDecorators: true,
        emitDecoratorMetadata: true,
        esModuleInterop: true,
      },
    }).outputText;
    fs.writeFileSync(
      path.join(runDir, `${s.name}.js`),
      `(async () => {\n${js}\n})().catch((e) => { console.error(e); process.exit(1); });\n`,
    );
    const missing = ts
      .preProcessFile(s.code, true, true)
      .importedFiles.map((f) => /^@bilevel\/([a-z0-9-]+)$/.exec(f.fileName)?.[1])
      .filter((p) => p && !fs.existsSync(path.join(out, 'packages', p, 'src', 'index.js')));
    if (missing.length) {
      console.log(
        `  - ${s.where} skipped: @bilevel/${missing.join(', @bilevel/')} not compiled by examples/tsconfig.run.json`,
      );
      continue;
    }
    runCompiled(`snippets/${s.name}`, s.where);
  }
}

console.log(`\ncheck-examples: ${passed} passed, ${failures.length} failed`);
process.exit(failures.length ? 1 : 0);
