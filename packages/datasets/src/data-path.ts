import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';

/** Environment variable holding a ':'-separated list of data roots, each containing `<name>/` folders. */
export const DATA_PATH_ENV = 'BILEVEL_DATA_PATH';

/** The per-user cache root, `~/.cache/bilevel` (`~` is `$HOME` when set). */
export function dataCacheRoot(): string {
  return join(process.env.HOME || homedir(), '.cache', 'bilevel');
}

/** The system-wide root where Debian's `dataset-*` packages install data, `/usr/share/datasets`. */
export const SYSTEM_DATA_ROOT = '/usr/share/datasets';

/** Where a search for data set `name` looks, and why. */
export interface DataSearchPath {
  /** The candidate folder. */
  readonly path: string;
  /**
   * Where it comes from: the explicit path, `BILEVEL_DATA_PATH`, the cache folder or the system data folder.
   */
  readonly source: 'explicit' | 'env' | 'cache' | 'system';
}

function checkName(name: string): void {
  if (!name || isAbsolute(name) || name.split(/[\\/]/).includes('..')) {
    throw new Error(`data set name must be a relative folder name such as 'fashion-mnist' (got '${name}')`);
  }
}

/**
 * Every place searched for data set `name`, in order:
 *
 * 1. `explicit` — a path the caller gave (an option such as `path`); when given it is the only candidate,
 *    so a mistyped path fails loudly instead of silently picking other data;
 * 2. each root of the environment variable `BILEVEL_DATA_PATH` (':'-separated), as `<root>/<name>`;
 * 3. the cache folder `~/.cache/bilevel/<name>`;
 * 4. `/usr/share/datasets/<name>` (Debian's `dataset-fashion-mnist` installs there).
 */
export function dataSearchPaths(name: string, explicit?: string): DataSearchPath[] {
  checkName(name);
  if (explicit !== undefined && explicit !== '') return [{ path: resolve(explicit), source: 'explicit' }];
  const out: DataSearchPath[] = [];
  const env = process.env[DATA_PATH_ENV];
  if (env) {
    for (const root of env.split(':')) {
      if (root.trim() !== '') out.push({ path: resolve(root.trim(), name), source: 'env' });
    }
  }
  out.push({ path: join(dataCacheRoot(), name), source: 'cache' });
  out.push({ path: join(SYSTEM_DATA_ROOT, name), source: 'system' });
  return out;
}

/**
 * The first existing location of data set `name` in the order of {@link dataSearchPaths}, or `null` when
 * there is none (callers turn that into a `DataError` listing the searched paths, see
 * {@link describeSearch}).
 */
export function resolveDataPath(name: string, explicit?: string): string | null {
  for (const c of dataSearchPaths(name, explicit)) if (existsSync(c.path)) return c.path;
  return null;
}

/** A human-readable list of the searched locations, for error and skip messages. */
export function describeSearch(name: string, explicit?: string): string {
  return dataSearchPaths(name, explicit)
    .map((c) => `${c.path} (${c.source === 'env' ? `from ${DATA_PATH_ENV}` : c.source})`)
    .join(', ');
}
