/**
 * The results folder as a place to write: checked before any training (not on a special file system such as
 * /proc, creatable, writable), locked for the whole run so that two commands never write into it at once,
 * and the errors of a write that fails (a full disk above all) reported with the file they hit.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { ConfigError } from '@bilevel/core';

/** Name of the lock file inside a results folder, present while a command writes there. */
export const LOCK_FILE = '.bilevel.lock';
/** Name of the space reserve inside a results folder (freed to write the final summary when the disk is full). */
export const RESERVE_FILE = '.bilevel.reserve';
/** Bytes set aside by the reserve file: room for summary.json and summary.md after a full disk. */
export const RESERVE_BYTES = 128 * 1024;

/** errno codes of a write that failed because of the storage, not because of the program. */
const STORAGE_CODES: Readonly<Record<string, string>> = {
  ENOSPC: 'disk full',
  EDQUOT: 'disk quota exceeded',
  EFBIG: 'file too large for the file system',
  EROFS: 'read-only file system',
  EIO: 'input/output error',
};

/**
 * A write into the results folder failed because of the storage (full disk, quota, read-only, I/O error).
 * The message reads `disk full at <file>`; what was written before stays, and the run can be resumed.
 */
export class StorageError extends Error {
  constructor(
    /** The errno code (`ENOSPC`, `EDQUOT`, `EFBIG`, `EROFS`, `EIO`). */
    readonly code: string,
    /** The file or folder the write was for. */
    readonly file: string,
    /** The results folder, once known (for the `bilevel resume` hint). */
    public resultsDir?: string,
  ) {
    super(`${STORAGE_CODES[code] ?? code} at ${file} (${code})`);
    this.name = 'StorageError';
  }
}

/** Whether `e` is a failed write due to the storage (a {@link StorageError} or an errno error of that kind). */
export function isStorageFailure(e: unknown): boolean {
  if (e instanceof StorageError) return true;
  const code = (e as NodeJS.ErrnoException | null)?.code;
  return typeof code === 'string' && Object.prototype.hasOwnProperty.call(STORAGE_CODES, code);
}

/** The {@link StorageError} for a failed write (its own path when the error has one, else `file`). */
export function toStorageError(e: unknown, file: string): StorageError {
  if (e instanceof StorageError) return e;
  const err = e as NodeJS.ErrnoException;
  return new StorageError(String(err.code), typeof err.path === 'string' ? err.path : file);
}

/** Runs a write; a storage failure becomes a {@link StorageError} naming `file`. */
export function guardWrite<T>(file: string, write: () => T): T {
  try {
    return write();
  } catch (e) {
    if (isStorageFailure(e)) throw toStorageError(e, file);
    throw e;
  }
}

/**
 * Writes `text` to `file` through a temporary file and a rename, so a kill leaves the old or the new file;
 * a failed write (e.g. a full disk) leaves the old file and no temporary file behind.
 */
export function writeFileAtomic(file: string, text: string | Uint8Array): void {
  const tmp = `${file}.tmp-${process.pid}`;
  guardWrite(file, () => {
    try {
      fs.writeFileSync(tmp, text);
      fs.renameSync(tmp, file);
    } catch (e) {
      fs.rmSync(tmp, { force: true });
      throw e;
    }
  });
}

// File systems that are not storage (kernel and device views): writing there is refused up front (except
// /dev/shm, a tmpfs).
const SPECIAL_ROOTS = ['/proc', '/sys', '/dev'];
// statfs magic numbers of the same kinds of file system, wherever they are mounted.
const SPECIAL_FS_TYPES: Readonly<Record<number, string>> = {
  0x9fa0: 'proc',
  0x62656572: 'sysfs',
  0x1cd1: 'devpts',
  0x27e0eb: 'cgroup',
  0x63677270: 'cgroup2',
  0x64626720: 'debugfs',
  0x74726163: 'tracefs',
  0x73636673: 'securityfs',
  0xcafe4a11: 'bpf',
  0x6165676c: 'pstore',
  0x62656570: 'configfs',
  0x42494e4d: 'binfmt_misc',
};

const ERRNO_TEXT: Readonly<Record<string, string>> = {
  EROFS: 'the file system is read-only',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  ENOTDIR: 'a part of the path is a file, not a folder',
  ENOSPC: 'the disk is full',
  EDQUOT: 'the disk quota is exceeded',
  ENAMETOOLONG: 'the name is too long',
  ELOOP: 'too many symbolic links',
  EIO: 'input/output error',
};

function reason(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  const text = err.code ? ERRNO_TEXT[err.code] : undefined;
  return text ? `${text} (${err.code})` : err.message ?? String(e);
}

/** The deepest existing folder on the way to `dir` (or the first existing thing that is not a folder). */
function nearestExisting(dir: string): string {
  let cur = dir;
  for (;;) {
    if (fs.existsSync(cur)) return cur;
    const up = path.dirname(cur);
    if (up === cur) return cur;
    cur = up;
  }
}

/**
 * Checks, before any training, that results can be written into `dir`: refuses special file systems (/proc,
 * /sys, /dev and the like), creates the folder (one level at a time, so the real cause is named) and writes
 * and removes a probe file. Throws a {@link ConfigError} on `field` (`output.dir`, or `--out` when the folder
 * came from the command line) naming the folder and the cause: read-only, permission denied, not a folder…
 */
export function checkOutputFolder(dir: string, field: string): void {
  const abs = path.resolve(dir);
  const refuse = (why: string): never => {
    throw new ConfigError(`${field}: cannot write results into '${dir}': ${why}`, 'output.dir');
  };
  let real = abs;
  const existing = nearestExisting(abs);
  try {
    real = path.join(fs.realpathSync(existing), path.relative(existing, abs));
  } catch {
    // unreadable: the checks below name the cause
  }
  // /dev/shm is ordinary memory-backed storage (tmpfs), not a device view.
  const devShm = real === '/dev/shm' || real.startsWith('/dev/shm/');
  for (const root of SPECIAL_ROOTS) {
    if (!devShm && (real === root || real.startsWith(root + path.sep))) {
      refuse(`${root} is a special file system (not storage); choose a folder on a disk`);
    }
  }
  try {
    const type = fs.statfsSync(existing).type;
    const name = SPECIAL_FS_TYPES[type];
    if (name) refuse(`it is on a ${name} file system (not storage); choose a folder on a disk`);
  } catch (e) {
    if (e instanceof ConfigError) throw e;
  }
  if (!fs.statSync(existing).isDirectory()) {
    refuse(existing === abs ? 'it exists and is not a folder' : `${existing} is a file, not a folder`);
  }
  // Create the missing levels one at a time: a recursive mkdir reports ENOENT for a read-only parent.
  const missing = path.relative(existing, abs).split(path.sep).filter((p) => p !== '');
  let cur = existing;
  for (const part of missing) {
    cur = path.join(cur, part);
    try {
      fs.mkdirSync(cur);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') refuse(`cannot create ${cur}: ${reason(e)}`);
    }
  }
  const probe = path.join(abs, `.bilevel-write-test-${process.pid}`);
  try {
    fs.writeFileSync(probe, 'ok\n');
  } catch (e) {
    fs.rmSync(probe, { force: true });
    refuse(`cannot write a file there: ${reason(e)}`);
  }
  fs.rmSync(probe, { force: true });
}

/** Who holds a results folder's lock. */
export interface LockHolder {
  /** Process id. */
  readonly pid: number;
  /** Host name. */
  readonly host: string;
  /** When the command started (ISO 8601). */
  readonly startedAt: string;
  /** The command line, when known. */
  readonly command?: string;
}

/** A second command wanted a results folder that a live command holds (exit code 2). */
export class ResultsLockedError extends Error {
  constructor(
    /** The results folder. */
    readonly dir: string,
    /** The holder, as its lock file says (null when the file cannot be read). */
    readonly holder: LockHolder | null,
  ) {
    super(
      holder
        ? `results folder ${dir} is in use by pid ${holder.pid} on ${holder.host} since ${holder.startedAt}${holder.command ? ` (${holder.command})` : ''}; wait for it to end or choose another folder` +
            (holder.host !== os.hostname() ? ` (held from another host: remove ${path.join(dir, LOCK_FILE)} if that command is gone)` : '')
        : `results folder ${dir} is locked (${path.join(dir, LOCK_FILE)}); remove that file if no command is using the folder`,
    );
    this.name = 'ResultsLockedError';
  }
}

function readHolder(file: string): LockHolder | null {
  try {
    const v = JSON.parse(fs.readFileSync(file, 'utf8')) as Partial<LockHolder>;
    if (typeof v.pid === 'number' && typeof v.host === 'string' && typeof v.startedAt === 'string') return v as LockHolder;
  } catch {
    // unreadable or cut short
  }
  return null;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    // EPERM: it exists but belongs to someone else.
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Whether a lock holder is gone: same host and its process no longer exists (another host's lock is kept). */
function isStale(holder: LockHolder): boolean {
  return holder.host === os.hostname() && holder.pid !== process.pid && !isAlive(holder.pid);
}

/**
 * Throws a {@link ResultsLockedError} when a live command holds `dir` (no lock, or a stale one, passes).
 * Lets `bilevel run` name the holder before it says "not empty".
 */
export function assertNotLocked(dir: string): void {
  const holder = readHolder(path.join(dir, LOCK_FILE));
  if (fs.existsSync(path.join(dir, LOCK_FILE)) && (holder === null || !isStale(holder))) {
    throw new ResultsLockedError(dir, holder);
  }
}

/** A held results-folder lock. */
export interface ResultsLock {
  /** The lock file. */
  readonly file: string;
  /** Removes the lock (idempotent); also done when the process exits. */
  release(): void;
}

/**
 * Takes the lock of a results folder for this process: a file `.bilevel.lock` with pid, host, start time and
 * command, created atomically (complete, or not at all). A lock whose process is gone (same host, pid not
 * alive) is taken over, with `onMessage` saying so; a live one (or one from another host) throws a
 * {@link ResultsLockedError} naming the holder. The lock goes with {@link ResultsLock.release} or when the
 * process exits (normally, by an error, or by `process.exit` after a second Ctrl-C); SIGKILL leaves a stale
 * lock that the next command takes over.
 */
export function acquireResultsLock(dir: string, options: { command?: string; onMessage?: (line: string) => void } = {}): ResultsLock {
  const file = path.join(dir, LOCK_FILE);
  const me: LockHolder = { pid: process.pid, host: os.hostname(), startedAt: new Date().toISOString(), command: options.command };
  const tmp = `${file}.${process.pid}.tmp`;
  guardWrite(file, () => fs.writeFileSync(tmp, JSON.stringify(me) + '\n'));
  try {
    for (let attempt = 0; ; attempt++) {
      try {
        // link() fails when the lock exists and otherwise puts the complete file in place at once.
        fs.linkSync(tmp, file);
        break;
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code !== 'EEXIST') {
          if (code === 'EPERM' || code === 'ENOTSUP' || code === 'EOPNOTSUPP') {
            // No hard links on this file system: exclusive create (a kill mid-write leaves an unreadable lock).
            try {
              fs.writeFileSync(file, JSON.stringify(me) + '\n', { flag: 'wx' });
              break;
            } catch (e2) {
              if ((e2 as NodeJS.ErrnoException).code !== 'EEXIST') throw e2;
            }
          } else {
            throw e;
          }
        }
        const holder = readHolder(file);
        if (holder && isStale(holder) && attempt < 3) {
          options.onMessage?.(
            `results folder ${dir}: taking over the lock of pid ${holder.pid} (started ${holder.startedAt}), which is no longer running`,
          );
          fs.rmSync(file, { force: true });
          continue;
        }
        throw new ResultsLockedError(dir, holder);
      }
    }
  } finally {
    fs.rmSync(tmp, { force: true });
  }
  let released = false;
  const release = (): void => {
    if (released) return;
    released = true;
    process.removeListener('exit', release);
    // Only our own lock: never one a later command took over.
    const holder = readHolder(file);
    if (holder && holder.pid === me.pid && holder.host === me.host && holder.startedAt === me.startedAt) {
      fs.rmSync(file, { force: true });
    }
  };
  process.on('exit', release);
  return { file, release };
}

/**
 * Sets aside {@link RESERVE_BYTES} in the results folder (a file of zeros) so that, when the disk fills up
 * during a run, freeing it leaves room for the final summary. Best effort: no reserve when there is no room
 * for it to begin with. Returns a function that frees it (idempotent).
 */
export function reserveSpace(dir: string): () => void {
  const file = path.join(dir, RESERVE_FILE);
  try {
    fs.writeFileSync(file, Buffer.alloc(RESERVE_BYTES));
  } catch {
    fs.rmSync(file, { force: true });
  }
  return () => fs.rmSync(file, { force: true });
}
