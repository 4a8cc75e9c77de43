/**
 * A private redis-server for tests: a free loopback port, a temporary data folder, no persistence; stopped
 * by `stop()` (call it in afterAll). Tests skip (with a message naming why) when redis-server is not
 * installed, unless BILEVEL_REQUIRE_REDIS=1 (CI), where its absence is a failure.
 */
import { type ChildProcess, spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';

/** Path of redis-server, or null when it is not installed. */
export function findRedisServer(): string | null {
  for (const candidate of ['/usr/bin/redis-server', '/usr/local/bin/redis-server']) {
    if (fs.existsSync(candidate)) return candidate;
  }
  const which = spawnSync('sh', ['-c', 'command -v redis-server'], { encoding: 'utf8' });
  const found = which.stdout.trim();
  return which.status === 0 && found ? found : null;
}

/** Why Redis tests cannot run here (null: they can). Throws under BILEVEL_REQUIRE_REDIS=1 instead of skipping. */
export function redisSkipReason(): string | null {
  if (findRedisServer()) return null;
  const reason = 'redis-server is not installed (apt-get install redis-server); the queue tests are skipped';
  if (process.env.BILEVEL_REQUIRE_REDIS === '1') throw new Error(`BILEVEL_REQUIRE_REDIS=1 but ${reason}`);
  return reason;
}

/** A free TCP port on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as net.AddressInfo).port;
      server.close(() => resolve(port));
    });
  });
}

/** A running test Redis. */
export interface TestRedis {
  /** Its port. */
  readonly port: number;
  /** Its queue URL (`redis://127.0.0.1:<port>`, with the password when one was set). */
  readonly url: string;
  /** Stops it (SIGTERM: with `appendonly`, it writes its data first) and starts it again on the same port and folder. */
  restart(): Promise<void>;
  /** Stops it and removes its data folder. */
  stop(): Promise<void>;
}

/** Files of a TLS server certificate (PEM). */
export interface TestTlsFiles {
  /** The server's certificate. */
  readonly cert: string;
  /** Its private key. */
  readonly key: string;
  /** The CA that signed it. */
  readonly ca: string;
}

/**
 * Makes a CA and a server certificate for 127.0.0.1 with `openssl` in `dir`; null (with the reason) when
 * openssl is missing or fails.
 */
export function makeTestCertificates(dir: string): TestTlsFiles | { readonly skip: string } {
  const run = (args: string[]): string | null => {
    const r = spawnSync('openssl', args, { cwd: dir, encoding: 'utf8' });
    return r.status === 0 ? null : `openssl ${args[0]} failed: ${(r.stderr || String(r.error ?? '')).trim().split('\n')[0]}`;
  };
  const steps = [
    ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-keyout', 'ca.key', '-out', 'ca.pem', '-subj', '/CN=bilevel test CA'],
    ['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=127.0.0.1'],
  ];
  for (const args of steps) {
    const failed = run(args);
    if (failed) return { skip: failed };
  }
  fs.writeFileSync(path.join(dir, 'san.ext'), 'subjectAltName=IP:127.0.0.1\n');
  const signed = run(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '1', '-out', 'server.pem', '-extfile', 'san.ext']);
  if (signed) return { skip: signed };
  return { cert: path.join(dir, 'server.pem'), key: path.join(dir, 'server.key'), ca: path.join(dir, 'ca.pem') };
}

/**
 * Starts redis-server on a free loopback port (optionally with `requirepass`, optionally persistent:
 * `appendonly`; with `tls`, TLS only: the URL is `rediss://`).
 */
export async function startTestRedis(
  options: { password?: string; appendonly?: boolean; tls?: TestTlsFiles } = {},
): Promise<TestRedis> {
  const bin = findRedisServer();
  if (!bin) throw new Error('redis-server is not installed');
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bilevel-redis-'));
  const args = options.tls
    ? [
        '--port', '0', '--tls-port', String(port), '--tls-cert-file', options.tls.cert, '--tls-key-file', options.tls.key,
        '--tls-ca-cert-file', options.tls.ca, '--tls-auth-clients', 'no', '--bind', '127.0.0.1', '--save', '', '--dir', dir,
      ]
    : ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--dir', dir];
  args.push(
    ...(options.appendonly ? ['--appendonly', 'yes', '--appendfsync', 'always'] : ['--appendonly', 'no']),
  );
  if (options.password) args.push('--requirepass', options.password);
  let child = await launch(bin, args);
  const auth = options.password ? `:${encodeURIComponent(options.password)}@` : '';
  const halt = async (signal: NodeJS.Signals): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill(signal);
      await exited;
    }
  };
  return {
    port,
    url: `${options.tls ? 'rediss' : 'redis'}://${auth}127.0.0.1:${port}`,
    restart: async () => {
      await halt('SIGTERM');
      child = await launch(bin, args);
    },
    stop: async () => {
      await halt('SIGKILL');
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function launch(bin: string, args: string[]): Promise<ChildProcess> {
  const child: ChildProcess = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`redis-server did not start in 10 s:\n${output}`)),
      10_000,
    );
    child.stdout?.on('data', (d: Buffer) => {
      output += d.toString();
      if (output.includes('Ready to accept connections')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`redis-server exited with code ${code}:\n${output}`));
    });
  });
  child.stdout?.removeAllListeners('data');
  child.removeAllListeners('exit');
  child.stdout?.resume();
  child.stderr?.resume();
  return child;
}
