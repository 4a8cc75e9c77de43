/**
 * The built `bilevel` executable as child processes of a test (`--backend cpu`), with their output collected;
 * `killAll` (in `afterAll`) leaves no process behind, and their temporary files stay in the test's folder.
 */
import { type ChildProcess, spawn } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

/** A running `bilevel` command. */
export interface CliProcess {
  child: ChildProcess;
  /** stdout and stderr so far. */
  out: () => string;
  /** Resolves with the exit code. */
  done: Promise<number | null>;
}

const main = path.resolve(__dirname, '..', '..', 'dist', 'main.js');

/** Starts `bilevel` commands in `cwd` and keeps track of the ones still running. */
export class CliProcesses {
  private readonly running = new Set<ChildProcess>();

  constructor(private readonly cwd: string) {}

  /**
   * Runs `bilevel --backend cpu <args>` with `env` added to this process's environment. Its temporary files
   * (e.g. a worker's private checkpoint folder, left behind when it is killed) go to `<cwd>/.tmp`, removed
   * with the test's folder.
   */
  start(args: string[], env: Record<string, string> = {}): CliProcess {
    const tmpdir = path.join(this.cwd, '.tmp');
    fs.mkdirSync(tmpdir, { recursive: true });
    const child = spawn(process.execPath, [main, '--backend', 'cpu', ...args], {
      cwd: this.cwd,
      env: { ...process.env, BILEVEL_BACKEND: '', TMPDIR: tmpdir, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.running.add(child);
    let text = '';
    child.stdout?.on('data', (d: Buffer) => (text += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (text += d.toString()));
    const done = new Promise<number | null>((resolve) =>
      child.on('close', (code) => {
        this.running.delete(child);
        resolve(code);
      }),
    );
    return { child, out: () => text, done };
  }

  /** SIGKILLs every command still running. */
  killAll(): void {
    for (const child of this.running) child.kill('SIGKILL');
  }
}

/** Polls `test` every 50 ms until it holds; throws naming `what` after `timeoutMs`. */
export async function waitFor(what: string, test: () => boolean, timeoutMs = 30_000): Promise<void> {
  const start = Date.now();
  while (!test()) {
    if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Waits until a `bilevel worker` says it takes jobs (fails at once if it exited). */
export async function workerReady(worker: CliProcess, timeoutMs = 30_000): Promise<void> {
  await waitFor(
    `worker ready:\n${worker.out()}`,
    () => {
      if (worker.child.exitCode !== null)
        throw new Error(`worker exited before it was ready:\n${worker.out()}`);
      return worker.out().includes('taking jobs');
    },
    timeoutMs,
  );
}
