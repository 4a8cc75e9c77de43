/**
 * The worker's side of an interleaved speed run: the parent asks for blocks of timed steps over the IPC
 * channel (see `runInterleaved` in section.ts).
 */
import { type Pace, type SpeedReady, isSpeedBlock } from './results';

/** A pace driven by the parent's `speed-block` messages; `send` is the worker's `process.send`. */
export function ipcPace(send: (message: unknown) => unknown, on: NodeJS.Process = process): Pace {
  const queued: number[] = [];
  let info: Omit<SpeedReady, 'kind'> = {};
  let waiting: ((steps: number) => void) | null = null;
  on.on('message', (m: unknown) => {
    if (!isSpeedBlock(m)) return;
    const steps = Math.max(0, Math.floor(m.steps));
    if (waiting) {
      const w = waiting;
      waiting = null;
      w(steps);
    } else queued.push(steps);
  });
  const next = (): Promise<number> =>
    new Promise((resolve) => {
      const k = queued.shift();
      if (k !== undefined) resolve(k);
      else waiting = resolve;
    });
  return {
    describe: (i) => {
      info = { ...(i.backend ? { backend: i.backend } : {}), ...(i.threads !== undefined ? { threads: i.threads } : {}) };
    },
    ready: () => {
      send({ kind: 'speed-ready', ...info } satisfies SpeedReady);
      return next();
    },
    blockDone: (timesMs) => {
      send({ kind: 'speed-block-done', timesMs: [...timesMs] });
      return next();
    },
  };
}
