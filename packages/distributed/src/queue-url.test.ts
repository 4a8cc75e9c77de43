import { ConfigError } from '@bilevel/core';
import { parseQueueUrl } from './queue-url';
import { decodeJson, encodeJson, parseRunJob, PROTOCOL_VERSION, RowBatcher } from './protocol';

describe('parseQueueUrl', () => {
  it('reads host, port, db, password, TLS and the queue name, and hides the password when shown', () => {
    const a = parseQueueUrl('rediss://user:s%40cret@redis.example:6380/2?queue=sweeps');
    expect(a.queueName).toBe('sweeps');
    expect(a.connection).toMatchObject({
      host: 'redis.example',
      port: 6380,
      db: 2,
      username: 'user',
      password: 's@cret',
    });
    expect((a.connection as { tls?: unknown }).tls).toEqual({ servername: 'redis.example' });
    expect(a.display).not.toContain('cret');
    const b = parseQueueUrl('redis://127.0.0.1');
    expect(b.connection).toMatchObject({ host: '127.0.0.1', port: 6379, db: 0 });
    expect((b.connection as { tls?: unknown }).tls).toBeUndefined();
    expect(b.queueName).toBe('bilevel');
  });

  it.each([
    ['not a url', /is not a URL/],
    ['http://host:6379', /scheme must be redis:\/\/ or rediss:\/\//],
    ['redis://host:6379/x', /database must be an integer/],
    ['redis://host:6379?queue=a%20b', /queue name must be/],
    ['redis://host:6379?q=1', /unknown parameter 'q'/],
  ])('%s is a ConfigError naming what is wrong', (url, message) => {
    expect(() => parseQueueUrl(url)).toThrow(ConfigError);
    expect(() => parseQueueUrl(url)).toThrow(message);
  });
});

describe('job payloads', () => {
  const good = {
    protocol: PROTOCOL_VERSION,
    libraryVersion: '0.1.0',
    experimentId: 'quadratic-1',
    fileBase: 'esj-seed0',
    methodIndex: 0,
    seed: 0,
    index: 1,
    total: 2,
    config: { name: 'q' },
  };
  it('accepts a well-formed job of this version', () => {
    expect(parseRunJob(good, '0.1.0')).toEqual(good);
  });
  it('refuses malformed, hostile and other-version jobs with a message saying which', () => {
    expect(() => parseRunJob({ ...good, fileBase: '../../etc/passwd' }, '0.1.0')).toThrow(
      /malformed job: fileBase/,
    );
    expect(() => parseRunJob({ ...good, extra: 1 }, '0.1.0')).toThrow(/malformed job/);
    expect(() => parseRunJob({ ...good, seed: -1 }, '0.1.0')).toThrow(/malformed job: seed/);
    expect(() => parseRunJob('{"x":1}', '0.1.0')).toThrow(/malformed job/);
    expect(() => parseRunJob({ ...good, protocol: 99 }, '0.1.0')).toThrow(/protocol 99/);
    expect(() => parseRunJob(good, '0.2.0')).toThrow(/library version 0\.1\.0; this worker runs 0\.2\.0/);
  });
  it('JSON round trip keeps NaN and ±Infinity', () => {
    const v = decodeJson<{ a: number[] }>(encodeJson({ a: [1, NaN, Infinity, -Infinity] }));
    expect(v.a[0]).toBe(1);
    expect(v.a[1]).toBeNaN();
    expect(v.a[2]).toBe(Infinity);
    expect(v.a[3]).toBe(-Infinity);
  });
});

describe('RowBatcher', () => {
  it('sends every row once, in order, in batches, and flush waits for the last one', async () => {
    const sent: { from: number; rows: number[] }[] = [];
    const batcher = new RowBatcher<number>(async (from, rows) => {
      await new Promise((r) => setTimeout(r, 5));
      sent.push({ from, rows: [...rows] });
    }, 20);
    for (let i = 0; i < 5; i++) batcher.add(i * 10, i);
    await new Promise((r) => setTimeout(r, 60));
    for (let i = 5; i < 8; i++) batcher.add(i * 10, i);
    await batcher.flush();
    expect(sent).toEqual([
      { from: 0, rows: [0, 10, 20, 30, 40] },
      { from: 5, rows: [50, 60, 70] },
    ]);
  });
});
