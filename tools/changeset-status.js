#!/usr/bin/env node
/**
 * `changeset status` for any checkout: CI's fresh clone of main, a feature branch, a detached commit, with or
 * without a remote.
 *
 * `changeset status` reads every pending changeset (a malformed one, an unknown package or bump type fails it)
 * and fails when packages changed since the base branch (`baseBranch` of .changeset/config.json, i.e. the
 * merge base of `main` and HEAD, working-tree changes included) but no changeset was added. It needs that
 * branch to exist locally; this script picks the base instead:
 *
 *   --base REF or CHANGESET_BASE=REF   compare with REF (e.g. origin/main in a pull-request job)
 *   a local `main`                      plain `changeset status` (on main itself: only uncommitted changes count)
 *   else `origin/main`                  `changeset status --since=origin/main`
 *   else                                `changeset status --since=HEAD` (uncommitted changes only)
 *
 * Usage: node tools/changeset-status.js [--base REF]   (npm run changeset:status)
 */
'use strict';
const { execFileSync, spawnSync } = require('node:child_process');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const { baseBranch = 'main' } = require(path.join(root, '.changeset', 'config.json'));
const bin = require.resolve('@changesets/cli/bin.js', { paths: [root] });

function git(args) {
  try {
    return execFileSync('git', args, {
      cwd: root,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trim();
  } catch {
    return null;
  }
}
const exists = (ref) => git(['rev-parse', '--verify', '--quiet', `${ref}^{commit}`]) !== null;

const flag = process.argv.indexOf('--base');
const explicit = flag > 0 ? process.argv[flag + 1] : process.env.CHANGESET_BASE;
if (git(['rev-parse', 'HEAD']) === null) {
  console.error('changeset-status: not a git checkout with a commit; changesets compares with git history');
  process.exit(2);
}

let args;
let why;
if (explicit) {
  if (!exists(explicit)) {
    console.error(`changeset-status: base ${explicit} is not a commit here`);
    process.exit(2);
  }
  args = [`--since=${explicit}`];
  why = `packages changed since ${explicit}`;
} else if (exists(baseBranch)) {
  args = [];
  why = `packages changed since the merge base of ${baseBranch} and HEAD`;
} else if (exists(`origin/${baseBranch}`)) {
  args = [`--since=origin/${baseBranch}`];
  why = `packages changed since origin/${baseBranch}`;
} else {
  args = ['--since=HEAD'];
  why = `no ${baseBranch} branch here: only uncommitted changes are compared`;
}
console.log(`changeset-status: ${why}`);
const result = spawnSync(process.execPath, [bin, 'status', '--verbose', ...args], {
  cwd: root,
  stdio: 'inherit',
});
process.exit(result.status ?? 1);
