import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Trainer, TrainerState } from './trainer';

/** What a checkpoint file holds: the trainer's whole state plus caller data (e.g. metric rows written). */
export interface CheckpointPayload {
  /** The trainer's state. */
  readonly trainer: TrainerState;
  /** Caller data (e.g. the metric rows written so far). */
  readonly extra?: unknown;
  /** When it was saved (ISO 8601). */
  readonly savedAt: string;
}

/** A checkpoint file that cannot be used, with the reason. */
export class CheckpointError extends Error {
  constructor(
    /** The checkpoint file. */
    readonly file: string,
    /** Why it cannot be used (cut short, checksum mismatch, …). */
    readonly reason: string,
  ) {
    super(`checkpoint ${file}: ${reason}`);
    this.name = 'CheckpointError';
  }
}

const FORMAT = 'bilevel-checkpoint';
const PATTERN = /^checkpoint-(\d{8})\.json$/;

function fileFor(dir: string, step: number): string {
  return path.join(dir, `checkpoint-${String(step).padStart(8, '0')}.json`);
}

/**
 * Writes a checkpoint atomically: a header line (format, byte length and SHA-256 of the payload), then the
 * payload, into a temporary file that is flushed to disk and renamed into place. Keeps the newest `keep`
 * checkpoints of the folder. Returns the file written.
 */
export function writeCheckpoint(
  dir: string,
  payload: CheckpointPayload,
  options: { keep?: number } = {},
): string {
  fs.mkdirSync(dir, { recursive: true });
  const body = JSON.stringify(payload);
  const bytes = Buffer.byteLength(body);
  const sha256 = createHash('sha256').update(body).digest('hex');
  const header = JSON.stringify({ format: FORMAT, version: 1, bytes, sha256 });
  const target = fileFor(dir, payload.trainer.step);
  const tmp = `${target}.tmp-${process.pid}`;
  const fd = fs.openSync(tmp, 'w');
  try {
    fs.writeSync(fd, `${header}\n${body}`);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, target);
  try {
    const dfd = fs.openSync(dir, 'r');
    fs.fsyncSync(dfd);
    fs.closeSync(dfd);
  } catch {
    // Some file systems do not allow fsync on folders; the rename is still atomic.
  }
  const keep = options.keep ?? 2;
  const all = listCheckpoints(dir);
  for (const old of all.slice(0, Math.max(0, all.length - keep))) fs.rmSync(old, { force: true });
  return target;
}

/** Checkpoint files of a folder, oldest first. */
export function listCheckpoints(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir)
    .filter((f) => PATTERN.test(f))
    .sort()
    .map((f) => path.join(dir, f));
}

/** Reads and verifies one checkpoint file (length and checksum), or throws a {@link CheckpointError}. */
export function readCheckpoint(file: string): CheckpointPayload {
  const text = fs.readFileSync(file, 'utf8');
  const nl = text.indexOf('\n');
  if (nl < 0) throw new CheckpointError(file, 'no header line (file cut short?)');
  let header: { format?: string; bytes?: number; sha256?: string };
  try {
    header = JSON.parse(text.slice(0, nl));
  } catch {
    throw new CheckpointError(file, 'header is not valid JSON');
  }
  if (header.format !== FORMAT) throw new CheckpointError(file, `not a ${FORMAT} file`);
  const body = text.slice(nl + 1);
  const bytes = Buffer.byteLength(body);
  if (bytes !== header.bytes) {
    throw new CheckpointError(
      file,
      `payload has ${bytes} bytes, header says ${header.bytes} (file cut short?)`,
    );
  }
  if (createHash('sha256').update(body).digest('hex') !== header.sha256) {
    throw new CheckpointError(file, 'checksum mismatch (file corrupted)');
  }
  return JSON.parse(body) as CheckpointPayload;
}

/**
 * The newest valid checkpoint of a folder. Invalid files (cut short, corrupted) are reported through
 * `onInvalid` and the previous one is tried. Null when there is none.
 */
export function loadLatestCheckpoint(
  dir: string,
  options: { onInvalid?: (error: CheckpointError) => void } = {},
): {
  /** The checkpoint file that was loaded. */
  file: string;
  /** Its content. */
  payload: CheckpointPayload;
} | null {
  const files = listCheckpoints(dir).reverse();
  for (const file of files) {
    try {
      return { file, payload: readCheckpoint(file) };
    } catch (err) {
      const e = err instanceof CheckpointError ? err : new CheckpointError(file, String(err));
      options.onInvalid?.(e);
    }
  }
  return null;
}

/** Options of a {@link Checkpointer}. */
export interface CheckpointerOptions {
  /** Folder of the checkpoint files. */
  readonly dir: string;
  /** Save every this many outer steps (0: only when asked). */
  readonly every: number;
  /** Checkpoint files kept, newest first (default 2). */
  readonly keep?: number;
  /** Caller data stored beside the trainer state. */
  readonly extra?: () => unknown;
}

/** Saves a trainer's state every N steps (attach it once) and on demand (e.g. on interrupt). */
export class Checkpointer {
  private lastSaved = -1;
  constructor(
    /** The trainer whose state is saved. */
    readonly trainer: Trainer,
    /** Where and how often to save. */
    readonly options: CheckpointerOptions,
  ) {
    if (options.every > 0) {
      trainer.on('step', (e) => {
        if (e.step % options.every === 0) this.save();
      });
    }
  }

  /** Writes a checkpoint of the current state unless this step was already saved. */
  save(): string | null {
    if (this.trainer.step === this.lastSaved) return null;
    const file = writeCheckpoint(
      this.options.dir,
      { trainer: this.trainer.getState(), extra: this.options.extra?.(), savedAt: new Date().toISOString() },
      { keep: this.options.keep },
    );
    this.lastSaved = this.trainer.step;
    return file;
  }

  /** Restores the newest valid checkpoint into the trainer; returns its payload or null. */
  restore(onInvalid?: (error: CheckpointError) => void): CheckpointPayload | null {
    const found = loadLatestCheckpoint(this.options.dir, { onInvalid });
    if (!found) return null;
    this.trainer.setState(found.payload.trainer);
    this.lastSaved = this.trainer.step;
    return found.payload;
  }
}
