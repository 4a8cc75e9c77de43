/**
 * A small disk for the full-disk tests: a real tmpfs of a given size when this process may mount one (root
 * with CAP_SYS_ADMIN), otherwise a simulated one — Node's fs functions that write (openSync, writeSync,
 * writeFileSync, appendFileSync) patched to fail with ENOSPC, after writing what still fits, once the files
 * under the folder would pass the quota. `grow` frees space (remount bigger, or a larger quota).
 */
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

/** A folder with little room. */
export interface SmallDisk {
  /** How the disk is made: a real tmpfs, or fs calls that fail past a quota. */
  readonly kind: 'tmpfs' | 'simulated';
  /** The folder (empty at first). */
  readonly root: string;
  /** Changes the size (e.g. frees space). */
  grow(bytes: number): void;
  /** Unmounts (or unpatches) and removes the folder. */
  dispose(): void;
}

/** Whether a tmpfs can be mounted here (tried once, on a scratch folder). */
export function canMountTmpfs(): boolean {
  if (process.platform !== 'linux' || process.getuid?.() !== 0) return false;
  const probe = fs.mkdtempSync(path.join(os.tmpdir(), 'bilevel-mount-probe-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', probe], { stdio: 'pipe' });
    execFileSync('umount', [probe], { stdio: 'pipe' });
    return true;
  } catch {
    return false;
  } finally {
    fs.rmSync(probe, { recursive: true, force: true });
  }
}

/** A real tmpfs of `bytes` (rounded up to whole pages by the kernel); `ro` mounts it read-only. */
export function mountTmpfs(bytes: number, options: { ro?: boolean } = {}): SmallDisk {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'bilevel-tmpfs-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${bytes}${options.ro ? ',ro' : ''}`, 'tmpfs', root], { stdio: 'pipe' });
  return {
    kind: 'tmpfs',
    root,
    grow: (n) => execFileSync('mount', ['-o', `remount,size=${n}`, root], { stdio: 'pipe' }),
    dispose: () => {
      execFileSync('umount', [root], { stdio: 'pipe' });
      fs.rmSync(root, { recursive: true, force: true });
    },
  };
}

function enospc(syscall: string, file?: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`ENOSPC: no space left on device, ${syscall}${file ? ` '${file}'` : ''}`), {
    code: 'ENOSPC',
    errno: -28,
    syscall,
    ...(file ? { path: file } : {}),
  });
}

function usage(dir: string): number {
  let total = 0;
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) total += usage(p);
    else if (entry.isFile()) total += fs.statSync(p).size;
  }
  return total;
}

function byteLength(data: unknown, encoding?: BufferEncoding): number {
  if (typeof data === 'string') return Buffer.byteLength(data, encoding ?? 'utf8');
  if (ArrayBuffer.isView(data)) return data.byteLength;
  return 0;
}

/** A simulated disk of `bytes` under a fresh folder (see the file comment). */
export function simulatedDisk(bytes: number): SmallDisk {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'bilevel-small-disk-'));
  let quota = bytes;
  const under = (p: unknown): boolean => typeof p === 'string' && path.resolve(p).startsWith(root + path.sep);
  const fdPaths = new Map<number, string>();
  // The module object itself (an `import * as` namespace may be a read-only copy of it).
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const nodeFs = require('fs') as Record<string, (...args: unknown[]) => unknown>;
  const original = {
    openSync: nodeFs.openSync,
    closeSync: nodeFs.closeSync,
    writeSync: nodeFs.writeSync,
    writeFileSync: nodeFs.writeFileSync,
    appendFileSync: nodeFs.appendFileSync,
  };
  const room = (): number => Math.max(0, quota - usage(root));

  nodeFs.openSync = (...args: unknown[]) => {
    const fd = original.openSync.apply(fs, args) as number;
    if (under(args[0])) fdPaths.set(fd, path.resolve(args[0] as string));
    return fd;
  };
  nodeFs.closeSync = (...args: unknown[]) => {
    fdPaths.delete(args[0] as number);
    return original.closeSync.apply(fs, args);
  };
  nodeFs.writeSync = (...args: unknown[]) => {
    const fd = args[0] as number;
    const file = fdPaths.get(fd);
    if (file === undefined) return original.writeSync.apply(fs, args);
    const data = args[1];
    const free = room();
    if (typeof data === 'string') {
      if (Buffer.byteLength(data) > free) throw enospc('write');
      return original.writeSync.apply(fs, args);
    }
    const view = data as Uint8Array;
    const offset = typeof args[2] === 'number' ? args[2] : 0;
    const length = typeof args[3] === 'number' ? args[3] : view.byteLength - offset;
    const position = typeof args[4] === 'number' ? args[4] : null;
    const size = fs.fstatSync(fd).size;
    const growth = position === null ? length : Math.max(0, position + length - size);
    if (growth <= free) return original.writeSync.apply(fs, args);
    // What still fits is written (a real disk does the same), then the next write fails.
    const fits = Math.max(0, length - (growth - free));
    if (fits === 0) throw enospc('write');
    return original.writeSync.call(fs, fd, view, offset, fits, position);
  };
  const wholeFile =
    (name: 'writeFileSync' | 'appendFileSync') =>
    (...args: unknown[]) => {
      const [file, data, opts] = args;
      if (!under(file)) return original[name].apply(fs, args);
      const encoding = typeof opts === 'string' ? (opts as BufferEncoding) : (opts as { encoding?: BufferEncoding } | undefined)?.encoding;
      const n = byteLength(data, encoding);
      const existing = name === 'writeFileSync' && fs.existsSync(file as string) ? fs.statSync(file as string).size : 0;
      const free = room() + existing;
      if (n <= free) return original[name].apply(fs, args);
      const bytes = typeof data === 'string' ? Buffer.from(data, encoding ?? 'utf8') : Buffer.from(data as Uint8Array);
      original[name].call(fs, file, bytes.subarray(0, free));
      throw enospc(name === 'writeFileSync' ? 'write' : 'append', file as string);
    };
  nodeFs.writeFileSync = wholeFile('writeFileSync');
  nodeFs.appendFileSync = wholeFile('appendFileSync');
  return {
    kind: 'simulated',
    root,
    grow: (n) => {
      quota = n;
    },
    dispose: () => {
      Object.assign(nodeFs, original);
      fs.rmSync(root, { recursive: true, force: true });
    },
  };
}
