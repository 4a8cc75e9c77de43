import { ConfigError } from '@bilevel/core';
import IORedis from 'ioredis';
import type { QueueAddress } from './queue-url';

/**
 * Connects once to the queue's Redis (no retries, `timeoutMs` at most), authenticates and pings, so that a
 * wrong address, an unreachable server or a wrong password is one clear {@link ConfigError} instead of
 * endless reconnection attempts. Resolves to the server's Redis version.
 */
export async function checkConnection(address: QueueAddress, timeoutMs = 5000): Promise<string> {
  const client = new IORedis({
    ...(address.connection as Record<string, unknown>),
    lazyConnect: true,
    connectTimeout: timeoutMs,
    retryStrategy: () => null,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
  });
  // The first error event says why (an authentication failure closes the connection: connect only says 'closed').
  let firstError: Error | null = null;
  client.on('error', (e: Error) => {
    firstError ??= e;
  });
  try {
    await client.connect();
    await client.ping();
    const info = await client.info('server');
    return /redis_version:([^\r\n]+)/.exec(info)?.[1] ?? 'unknown';
  } catch (e) {
    const cause = (firstError as Error | null) ?? e;
    const message = cause instanceof Error ? cause.message : String(cause);
    const reason = /WRONGPASS|NOAUTH|invalid password|invalid username/i.test(message)
      ? `authentication failed (${message.split('\n')[0]}); check the password in the URL`
      : /ECONNREFUSED|ENOTFOUND|EAI_AGAIN|ETIMEDOUT|EHOSTUNREACH|timeout|Connection is closed/i.test(message)
        ? `cannot reach the server (${message.split('\n')[0]})`
        : message.split('\n')[0];
    throw new ConfigError(`--queue ${address.display}: ${reason}`, 'queue');
  } finally {
    client.disconnect();
  }
}
