/**
 * The `bilevel` command as npm links it: package.json's "bin" must name a file that exists before the build, so
 * that installing the workspace (`npm ci` in the repository, before dist/ is built) links node_modules/.bin/bilevel
 * and `npx bilevel` runs it instead of asking the registry.
 */
import { execFileSync, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { makeTempDir } from './test-utils/helpers';

const pkgDir = path.resolve(__dirname, '..');
const pkg = JSON.parse(fs.readFileSync(path.join(pkgDir, 'package.json'), 'utf8')) as {
  bin: Record<string, string>;
  files: string[];
};
const tmp = makeTempDir();
afterAll(() => tmp.cleanup());

describe('the bilevel bin', () => {
  it('is a committed file outside dist/, shipped in the package', () => {
    expect(Object.keys(pkg.bin)).toEqual(['bilevel']);
    const target = pkg.bin.bilevel;
    expect(target.startsWith('dist/')).toBe(false);
    expect(fs.existsSync(path.join(pkgDir, target))).toBe(true);
    expect(fs.readFileSync(path.join(pkgDir, target), 'utf8').startsWith('#!/usr/bin/env node\n')).toBe(true);
    expect(pkg.files).toContain(target.split('/')[0]);
  });

  it('is linked by npm in a workspace whose dist/ is not built, and then says to build', () => {
    // A copy of the package without dist/ (as in a fresh clone after `npm ci`), in a workspace of its own;
    // no dependencies, so that npm installs nothing from the registry.
    const ws = path.join(tmp.dir, 'workspace');
    const copy = path.join(ws, 'packages', 'cli');
    fs.mkdirSync(copy, { recursive: true });
    fs.writeFileSync(path.join(ws, 'package.json'), JSON.stringify({ name: 'ws', private: true, workspaces: ['packages/*'] }));
    fs.writeFileSync(path.join(copy, 'package.json'), JSON.stringify({ name: '@bilevel/cli', version: '0.0.0', bin: pkg.bin }));
    fs.cpSync(path.join(pkgDir, path.dirname(pkg.bin.bilevel)), path.join(copy, path.dirname(pkg.bin.bilevel)), {
      recursive: true,
    });
    execFileSync('npm', ['install', '--offline', '--no-audit', '--no-fund', '--loglevel=error'], {
      cwd: ws,
      stdio: 'pipe',
      env: { ...process.env, npm_config_update_notifier: 'false' },
    });
    const linked = path.join(ws, 'node_modules', '.bin', 'bilevel');
    expect(fs.existsSync(linked)).toBe(true);
    const r = spawnSync(linked, ['--help'], { encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('bilevel: the command is not built yet');
    expect(r.stderr).toContain('npx nx run @bilevel/cli:build');
  });

  it('runs the built command with its arguments', () => {
    // Builds the CLI (nx builds its dependencies first and caches), as main.test.ts does.
    execFileSync('npx', ['nx', 'run', '@bilevel/cli:build', '--outputStyle=static'], {
      cwd: path.resolve(pkgDir, '..', '..'),
      stdio: 'pipe',
      timeout: 600_000,
    });
    const r = spawnSync(process.execPath, [path.join(pkgDir, pkg.bin.bilevel), '--help'], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('Usage: bilevel');
    const version = spawnSync(process.execPath, [path.join(pkgDir, pkg.bin.bilevel), '--version'], { encoding: 'utf8' });
    expect(version.stdout.trim()).toBe(JSON.parse(fs.readFileSync(path.join(pkgDir, 'package.json'), 'utf8')).version);
  });
});
