/**
 * The queue address of a coordinator or worker: `redis://[user:password@]host:port[/db][?queue=name]`, or
 * `rediss://…` for TLS.
 */
import { ConfigError } from '@bilevel/core';
import type { ConnectionOptions } from 'bullmq';

/** The default BullMQ queue name (`?queue=` picks another one on the same Redis). */
export const DEFAULT_QUEUE_NAME = 'bilevel';

/** A parsed queue address. */
export interface QueueAddress {
  /** Connection options for BullMQ (ioredis). */
  readonly connection: ConnectionOptions;
  /** The BullMQ queue name. */
  readonly queueName: string;
  /** The address with any password replaced by `***` (for messages and logs). */
  readonly display: string;
}

/**
 * Parses a queue URL. A password (`redis://:secret@host:6379`, or `user:secret@` with Redis ACLs) and TLS
 * (`rediss://`) are taken from it; anything else is a {@link ConfigError} naming what is wrong.
 */
export function parseQueueUrl(url: string): QueueAddress {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new ConfigError(
      `--queue: '${url}' is not a URL; expected redis://host:port (or rediss:// for TLS)`,
      'queue',
    );
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') {
    throw new ConfigError(`--queue: scheme must be redis:// or rediss:// (got '${u.protocol}//')`, 'queue');
  }
  if (!u.hostname) throw new ConfigError(`--queue: '${url}' has no host`, 'queue');
  const port = u.port === '' ? 6379 : Number(u.port);
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new ConfigError(`--queue: port must be 1–65535 (got '${u.port}')`, 'queue');
  }
  let db = 0;
  const dbPart = u.pathname.replace(/^\/+/, '');
  if (dbPart !== '') {
    db = Number(dbPart);
    if (!Number.isInteger(db) || db < 0)
      throw new ConfigError(`--queue: database must be an integer >= 0 (got '${dbPart}')`, 'queue');
  }
  const queueName = u.searchParams.get('queue') ?? DEFAULT_QUEUE_NAME;
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(queueName)) {
    throw new ConfigError(`--queue: queue name must be letters, digits, . _ - (got '${queueName}')`, 'queue');
  }
  for (const key of u.searchParams.keys()) {
    if (key !== 'queue')
      throw new ConfigError(`--queue: unknown parameter '${key}' (only 'queue' is known)`, 'queue');
  }
  const host = u.hostname.replace(/^\[(.*)\]$/, '$1');
  const connection: ConnectionOptions = {
    host,
    port,
    db,
    username: u.username ? decodeURIComponent(u.username) : undefined,
    password: u.password ? decodeURIComponent(u.password) : undefined,
    tls: u.protocol === 'rediss:' ? { servername: host } : undefined,
    // BullMQ's workers block on Redis: no per-command retry limit (required by BullMQ).
    maxRetriesPerRequest: null,
  };
  const shown = new URL(url);
  if (shown.password) shown.password = '***';
  return { connection, queueName, display: shown.toString() };
}
