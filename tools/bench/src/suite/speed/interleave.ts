/**
 * Interleaved speed runs: the Bilevel worker and the PyTorch twin are both started, each builds its problem
 * and warms up, then the parent has them time alternating blocks of steps (Bilevel then twin, then twin then
 * Bilevel, …) until each has timed all its steps, each block after one untimed step (the first step after
 * the other side's block pays for cold caches and sleeping threads). Only one side computes at a time (the other waits on its
 * channel), and both sample the same minutes of the machine: on a shared machine, where one side's median
 * alone moved by up to 2× between runs minutes apart, their ratio no longer depends on which side happened to
 * run in the quieter minute.
 */
import { type ChildProcess, fork, spawn } from 'child_process';
import * as path from 'path';
import type { BilevelSpeedResult, SpeedReady, SpeedSideResult, SpeedTask } from './results';
import { BENCH_ROOT, type TwinConfig, parseTwinOutput, twinEnvironment } from './torch';
import { twinScript } from './workloads';

/** A speed worker process (dist/run.js `__worker`), with an IPC channel that carries structured clones. */
export function forkSpeedWorker(workerScript: string): ChildProcess {
  return fork(workerScript, ['__worker'], {
    serialization: 'advanced',
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
}

/** One side of an interleaved run, as the parent drives it. */
interface Side {
  /** Resolves true once the side is warmed up and waits for blocks; false when it ended first. */
  ready(): Promise<boolean>;
  /** What the side said when ready (the Bilevel side: its backend and threads). */
  readonly info: Omit<SpeedReady, 'kind'>;
  /** Times k steps; false when the side ended instead. */
  block(k: number): Promise<boolean>;
  /** Asks for the result (after the last block) and waits for it. */
  finish(): Promise<SpeedSideResult>;
  kill(): void;
}

function failedResult(status: SpeedSideResult['status'], error: string): SpeedSideResult {
  return { status, error, timesMs: [], checks: {} };
}

/** A FIFO of events with a promise for the next one. */
class Events<T> {
  private readonly queue: T[] = [];
  private waiting: ((v: T) => void) | null = null;
  push(v: T): void {
    if (this.waiting) {
      const w = this.waiting;
      this.waiting = null;
      w(v);
    } else this.queue.push(v);
  }
  next(): Promise<T> {
    const v = this.queue.shift();
    if (v !== undefined) return Promise.resolve(v);
    return new Promise((resolve) => (this.waiting = resolve));
  }
}

type SideEvent =
  | { kind: 'ready'; info?: Omit<SpeedReady, 'kind'> }
  | { kind: 'block-done' }
  | { kind: 'result'; result: SpeedSideResult }
  | { kind: 'ended'; error: string };

/** The events of a side until its result: a `result` or `ended` event is final (later events ignored). */
function sideOf(events: Events<SideEvent>, send: (k: number) => void, kill: () => void): Side {
  let final: SpeedSideResult | null = null;
  const side: { info: Omit<SpeedReady, 'kind'> } = { info: {} };
  const until = async (want: SideEvent['kind']): Promise<boolean> => {
    if (final) return false;
    for (;;) {
      const e = await events.next();
      if (e.kind === 'ready' && e.info) side.info = e.info;
      if (e.kind === 'result') {
        final = e.result;
        return false;
      }
      if (e.kind === 'ended') {
        final = failedResult('failed', e.error);
        return false;
      }
      if (e.kind === want) return true;
    }
  };
  return {
    get info() {
      return side.info;
    },
    ready: () => until('ready'),
    block: async (k) => {
      if (final) return false;
      send(k);
      return until('block-done');
    },
    finish: async () => {
      if (!final) {
        send(0);
        await until('result');
      }
      return final ?? failedResult('failed', 'no result');
    },
    kill,
  };
}

function bilevelSide(workerScript: string, task: SpeedTask): Side {
  const events = new Events<SideEvent>();
  const child = forkSpeedWorker(workerScript);
  child.on('message', (m: unknown) => {
    const kind = (m as { kind?: unknown } | null)?.kind;
    if (kind === 'speed-ready') {
      const { kind: _, ...info } = m as SpeedReady;
      events.push({ kind: 'ready', info });
    }
    else if (kind === 'speed-block-done') events.push({ kind: 'block-done' });
    else events.push({ kind: 'result', result: m as BilevelSpeedResult });
  });
  child.on('error', (e) => events.push({ kind: 'ended', error: `worker: ${e.message}` }));
  child.on('close', (code, signal) =>
    // A result sent just before exit arrives first; this only ends a side that sent none.
    setTimeout(
      () =>
        events.push({
          kind: 'ended',
          error: `worker exited (${signal ? `signal ${signal}` : `code ${code}`}) without a result`,
        }),
      200,
    ),
  );
  child.send({ ...task, interleave: true });
  const send = (k: number): void => {
    if (child.connected) child.send({ kind: 'speed-block', steps: k });
  };
  return sideOf(events, send, () => child.kill('SIGKILL'));
}

function twinSide(python: string, config: TwinConfig, script?: string): Side {
  const events = new Events<SideEvent>();
  const file = script ?? path.join(BENCH_ROOT, twinScript(config.workload.family));
  const child = spawn(python, [file, JSON.stringify({ ...config, interleave: true })], {
    cwd: BENCH_ROOT,
    stdio: ['pipe', 'pipe', 'pipe'],
    env: twinEnvironment(config),
  });
  let stdout = '';
  let pending = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => {
    const text = d.toString();
    stdout += text;
    pending += text;
    let nl: number;
    while ((nl = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, nl).trim();
      pending = pending.slice(nl + 1);
      if (line === '{"ready": true}') events.push({ kind: 'ready' });
      else if (line.startsWith('{"blockTimesMs"')) events.push({ kind: 'block-done' });
    }
  });
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  child.stdin.on('error', () => undefined); // a twin that died: its close event reports it
  child.on('error', (e) => events.push({ kind: 'ended', error: `${python}: ${e.message}` }));
  child.on('close', (code) => {
    const parsed = parseTwinOutput(stdout);
    if (parsed && (code === 0 || parsed.status !== 'completed')) {
      events.push({ kind: 'result', result: parsed });
      return;
    }
    const tail = stderr.trim().split('\n').slice(-3).join(' / ');
    events.push({ kind: 'ended', error: `twin exited with code ${code}${tail ? `: ${tail}` : ''}` });
  });
  const send = (k: number): void => {
    if (child.stdin.writable) child.stdin.write(`${JSON.stringify({ block: k })}\n`);
  };
  return sideOf(events, send, () => child.kill('SIGKILL'));
}

export interface InterleavedOptions {
  readonly workerScript: string;
  readonly task: SpeedTask;
  readonly python: string;
  /** The twin's script (default: tools/bench/torch/<family>.py); tests pass a stand-in. */
  readonly twinScript?: string;
  /** The twin's settings, from what the Bilevel side said when ready (its backend and threads). */
  readonly twinConfig: (bilevel: Omit<SpeedReady, 'kind'>) => TwinConfig;
  /** Timed steps of each side. */
  readonly steps: number;
  /** Steps per block. */
  readonly blockSteps: number;
  /** Seconds for the whole pair (both set-ups, warm-ups and blocks). */
  readonly timeoutSeconds: number;
  /** Called once the Bilevel side is ready (the twin's data is written by then). */
  readonly onBilevelReady?: () => void;
}

/** The number of steps per block: about six rounds of alternation, at least one step a block. */
export function blockSize(steps: number): number {
  return Math.max(1, Math.round(steps / 6));
}

/** Runs both sides of a workload interleaved; never throws. */
export async function runInterleaved(
  options: InterleavedOptions,
): Promise<{ bilevel: BilevelSpeedResult; torch: SpeedSideResult }> {
  const bilevel = bilevelSide(options.workerScript, options.task);
  let twin: Side | null = null;
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    bilevel.kill();
    twin?.kill();
  }, options.timeoutSeconds * 1000);
  try {
    const bilevelReady = await bilevel.ready();
    if (!bilevelReady) {
      const result = (await bilevel.finish()) as BilevelSpeedResult;
      return {
        bilevel: timedOut ? { ...failedResult('timeout', `killed after ${options.timeoutSeconds} s`) } : result,
        torch: failedResult('skipped', 'not run: the Bilevel side ended before its timed steps'),
      };
    }
    options.onBilevelReady?.();
    twin = twinSide(options.python, options.twinConfig(bilevel.info), options.twinScript);
    const twinReady = await twin.ready();
    const sides: Side[] = twinReady ? [bilevel, twin] : [bilevel];
    let left = options.steps;
    for (let round = 0; left > 0; round++) {
      const k = Math.min(options.blockSteps, left);
      const order = round % 2 === 0 ? sides : [...sides].reverse();
      for (const s of order) await s.block(k);
      left -= k;
    }
    const [b, t] = await Promise.all([bilevel.finish(), twin.finish()]);
    const timeout = failedResult('timeout', `interleaved run killed after ${options.timeoutSeconds} s`);
    return {
      bilevel: (timedOut && b.status !== 'completed' ? timeout : b) as BilevelSpeedResult,
      torch: timedOut && t.status !== 'completed' ? timeout : t,
    };
  } finally {
    clearTimeout(timer);
  }
}
