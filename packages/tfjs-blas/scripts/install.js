#!/usr/bin/env node
/*
 * Install step of @bilevel/tfjs-blas: builds the native BLAS addon with node-gyp (binding.gyp). It never
 * fails the installation: without a BLAS or a compiler it prints a one-line hint and exits 0, and the
 * library then runs on the wasm or cpu backend.
 *
 * Environment:
 *   BILEVEL_BLAS_SKIP_BUILD=1  do not build (the cpu-blas backend stays unavailable)
 *   BILEVEL_BLAS_VERBOSE=1     show node-gyp's output
 */
'use strict';
const { spawnSync } = require('child_process');
const fs = require('fs');
const path = require('path');

const root = path.resolve(__dirname, '..');
const addon = path.join(root, 'build', 'Release', 'bilevel_blas.node');
const verbose = process.env.BILEVEL_BLAS_VERBOSE === '1';
const HINT =
  'to enable the fast cpu-blas backend, install a CBLAS (Debian/Ubuntu: `sudo apt-get install libopenblas-dev`; ' +
  'macOS: Accelerate, built in) with python3, make and a C compiler, then run `npm rebuild @bilevel/tfjs-blas`';

function say(line) {
  process.stdout.write(`@bilevel/tfjs-blas: ${line}\n`);
}

function done(line) {
  say(line);
  process.exit(0);
}

/** The CBLAS header, looked up where Linux distributions and Homebrew put it. */
function findCblasHeader() {
  if (process.platform === 'darwin') return 'Accelerate';
  const multiarch = { x64: 'x86_64-linux-gnu', arm64: 'aarch64-linux-gnu', ppc64: 'powerpc64le-linux-gnu' }[
    process.arch
  ];
  const dirs = [
    '/usr/include',
    multiarch ? `/usr/include/${multiarch}` : '',
    '/usr/include/openblas',
    '/usr/local/include',
    '/opt/homebrew/opt/openblas/include',
    '/usr/local/opt/openblas/include',
  ];
  return dirs
    .filter(Boolean)
    .map((d) => path.join(d, 'cblas.h'))
    .find((f) => fs.existsSync(f));
}

/** node-gyp: npm's own (npm_config_node_gyp), an installed one, or the one bundled next to npm. */
function findNodeGyp() {
  const candidates = [process.env.npm_config_node_gyp];
  try {
    candidates.push(require.resolve('node-gyp/bin/node-gyp.js'));
  } catch {
    // not installed as a package
  }
  if (process.env.npm_execpath) {
    candidates.push(
      path.join(
        path.dirname(process.env.npm_execpath),
        '..',
        'node_modules',
        'node-gyp',
        'bin',
        'node-gyp.js',
      ),
    );
  }
  candidates.push(
    path.join(
      path.dirname(process.execPath),
      '..',
      'lib',
      'node_modules',
      'npm',
      'node_modules',
      'node-gyp',
      'bin',
      'node-gyp.js',
    ),
  );
  return candidates.find((c) => c && fs.existsSync(c));
}

/**
 * Node's headers from the installation that runs this script (e.g. /usr/include/node), so the build works
 * offline; node-gyp would otherwise download them. An explicit npm `nodedir` setting wins.
 */
function localNodeDir() {
  if (process.env.npm_config_nodedir) return undefined;
  const prefix = path.resolve(path.dirname(process.execPath), '..');
  const ok = ['node_api.h', 'common.gypi'].every((f) =>
    fs.existsSync(path.join(prefix, 'include', 'node', f)),
  );
  return ok ? prefix : undefined;
}

function lastErrorLine(output) {
  const lines = output.split('\n').map((l) => l.trim());
  const err = lines.filter(
    (l) =>
      /error|not found|cannot/i.test(l) &&
      !/^gyp (info|ERR! (stack|System|command|cwd|node -v|node-gyp -v|not ok))/.test(l),
  );
  return err.length ? err[0].slice(0, 160) : '';
}

function main() {
  if (process.env.BILEVEL_BLAS_SKIP_BUILD === '1')
    done(`native build skipped (BILEVEL_BLAS_SKIP_BUILD=1); ${HINT}`);
  if (process.platform === 'win32') done(`no native build on Windows; the library runs on wasm or cpu`);
  if (!findCblasHeader()) done(`no BLAS found (cblas.h); ${HINT}`);
  const gyp = findNodeGyp();
  if (!gyp) done(`node-gyp not found; ${HINT}`);
  const args = [gyp, 'rebuild'];
  const nodedir = localNodeDir();
  if (nodedir) args.push(`--nodedir=${nodedir}`);
  const result = spawnSync(process.execPath, args, {
    cwd: root,
    encoding: 'utf8',
    stdio: verbose ? 'inherit' : 'pipe',
  });
  if (result.status !== 0 || !fs.existsSync(addon)) {
    const why = verbose ? '' : lastErrorLine(`${result.stderr || ''}\n${result.stdout || ''}`);
    done(
      `native build failed${why ? ` (${why})` : ''}; ${HINT} (BILEVEL_BLAS_VERBOSE=1 shows the build log)`,
    );
  }
  try {
    const info = require(addon).info();
    done(
      `built the native addon: ${info.library}${info.corename ? ` (${info.corename})` : ''}; backend cpu-blas available`,
    );
  } catch (e) {
    done(`the native addon was built but does not load (${String(e && e.message).split('\n')[0]}); ${HINT}`);
  }
}

try {
  main();
} catch (e) {
  done(`native build skipped after an unexpected error (${String(e && e.message)}); ${HINT}`);
}
