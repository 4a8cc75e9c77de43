/**
 * Checkpoints kept in Redis, for workers without a shared checkpoint folder: the newest checkpoint file of a
 * run (the same safetensors bytes core's checkpointer writes) and the run's rows up to it, as one checksummed
 * value, so that a run taken over from a lost worker continues on another one. Values over a size limit are
 * refused with a message telling the user to give the workers a shared folder instead.
 */
import { createHash } from 'crypto';
import IORedis from 'ioredis';
import { ConfigError } from '@bilevel/core';
import type { QueueAddress } from './queue-url';

/** Default largest checkpoint (file plus rows) kept in Redis: 16 MiB. */
export const DEFAULT_REDIS_CHECKPOINT_LIMIT = 16 * 1024 * 1024;

/** A run's newest checkpoint as kept in Redis. */
export interface StoredCheckpoint {
  /** The checkpoint file's name (in the run's checkpoint folder). */
  readonly file: string;
  /** Its bytes (safetensors, as written by core's checkpointer). */
  readonly checkpoint: Buffer;
  /** The run's metrics rows (JSONL text) up to the checkpoint. */
  readonly rows: string;
}

const MAGIC = 0x4b43_4c42; // 'BLCK'

/** One value: magic, header length, JSON header (file, sizes, sha256), checkpoint bytes, rows. */
function encode(entry: StoredCheckpoint): Buffer {
  const rows = Buffer.from(entry.rows, 'utf8');
  const sha256 = createHash('sha256').update(entry.checkpoint).update(rows).digest('hex');
  const header = Buffer.from(
    JSON.stringify({ v: 1, file: entry.file, checkpointBytes: entry.checkpoint.length, rowsBytes: rows.length, sha256 }),
    'utf8',
  );
  const prefix = Buffer.alloc(8);
  prefix.writeUInt32LE(MAGIC, 0);
  prefix.writeUInt32LE(header.length, 4);
  return Buffer.concat([prefix, header, entry.checkpoint, rows]);
}

function decode(buf: Buffer, key: string): StoredCheckpoint {
  const bad = (why: string): never => {
    throw new Error(`checkpoint in Redis (${key}) is damaged: ${why}`);
  };
  if (buf.length < 8 || buf.readUInt32LE(0) !== MAGIC) bad('bad header');
  const headerLength = buf.readUInt32LE(4);
  let header: { v: number; file: string; checkpointBytes: number; rowsBytes: number; sha256: string };
  try {
    header = JSON.parse(buf.subarray(8, 8 + headerLength).toString('utf8')) as typeof header;
  } catch {
    return bad('unreadable header');
  }
  if (header.v !== 1) bad(`format version ${header.v}`);
  if (!/^[A-Za-z0-9._-]{1,200}$/.test(header.file)) bad('bad file name');
  const start = 8 + headerLength;
  if (buf.length !== start + header.checkpointBytes + header.rowsBytes) bad('wrong length');
  const checkpoint = buf.subarray(start, start + header.checkpointBytes);
  const rows = buf.subarray(start + header.checkpointBytes);
  const sha256 = createHash('sha256').update(checkpoint).update(rows).digest('hex');
  if (sha256 !== header.sha256) bad('checksum mismatch');
  return { file: header.file, checkpoint: Buffer.from(checkpoint), rows: rows.toString('utf8') };
}

/** The newest checkpoint of every run of a queue, in that queue's Redis. */
export class RedisCheckpointStore {
  private readonly redis: IORedis;

  constructor(
    private readonly address: QueueAddress,
    /** Largest value (checkpoint file plus rows) in bytes. */
    readonly limitBytes: number = DEFAULT_REDIS_CHECKPOINT_LIMIT,
    /** Seconds a value lives without being replaced (a run abandoned for good does not stay forever). */
    private readonly ttlSeconds = 7 * 24 * 3600,
  ) {
    this.redis = new IORedis(address.connection as Record<string, unknown>);
    this.redis.on('error', () => undefined);
  }

  private key(experimentId: string, fileBase: string): string {
    return `bilevel:checkpoint:${this.address.queueName}:${experimentId}:${fileBase}`;
  }

  /**
   * Checks that a checkpoint fits the limit (synchronously, before anything is sent): a {@link ConfigError}
   * naming both sizes and what to do otherwise.
   */
  checkSize(entry: StoredCheckpoint): void {
    const size = entry.checkpoint.length + Buffer.byteLength(entry.rows, 'utf8');
    if (size > this.limitBytes) {
      throw new ConfigError(
        `the run's checkpoint (${size} bytes with its rows) is over the limit for checkpoints kept in Redis (${this.limitBytes} bytes): ` +
          'start the workers with --checkpoint-dir <a folder every worker can reach> (or raise --redis-checkpoint-limit)',
        'checkpoint',
      );
    }
  }

  /** Replaces the run's stored checkpoint (after {@link checkSize}). */
  async put(experimentId: string, fileBase: string, entry: StoredCheckpoint): Promise<void> {
    this.checkSize(entry);
    await this.redis.set(this.key(experimentId, fileBase), encode(entry), 'EX', this.ttlSeconds);
  }

  /** The run's stored checkpoint, checked against its checksum; null when there is none. */
  async get(experimentId: string, fileBase: string): Promise<StoredCheckpoint | null> {
    const key = this.key(experimentId, fileBase);
    const buf = await this.redis.getBuffer(key);
    return buf ? decode(buf, key) : null;
  }

  /** Removes the run's stored checkpoint (the run is finished). */
  async remove(experimentId: string, fileBase: string): Promise<void> {
    await this.redis.del(this.key(experimentId, fileBase));
  }

  /** Closes the connection. */
  close(): void {
    this.redis.disconnect();
  }
}
