import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  CheckpointError,
  listCheckpoints,
  loadLatestCheckpoint,
  readCheckpoint,
  writeCheckpoint,
} from './checkpoint';
import type { TrainerState } from './trainer';
import { zeroCounts } from './oracles';

function state(step: number): TrainerState {
  return {
    step,
    elapsedSeconds: step * 0.5,
    x: { x: { shape: [2], values: [step, -step] } },
    y: { y: { shape: [1], values: [0.25] } },
    rng: { s: [1, 2, 3, step], spare: null },
    oracleCalls: zeroCounts(),
  };
}

describe('checkpoint files', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bilevel-ckpt-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('round-trips and keeps only the newest files', () => {
    for (const s of [5, 10, 15])
      writeCheckpoint(dir, { trainer: state(s), extra: { rows: s }, savedAt: 'now' });
    const files = listCheckpoints(dir).map((f) => path.basename(f));
    expect(files).toEqual(['checkpoint-00000010.json', 'checkpoint-00000015.json']);
    const p = readCheckpoint(path.join(dir, files[1]));
    expect(p.trainer.x.x.values).toEqual([15, -15]);
    expect(p.extra).toEqual({ rows: 15 });
    expect(fs.readdirSync(dir).some((f) => f.includes('.tmp'))).toBe(false);
  });

  it('detects a file cut short and falls back to the previous checkpoint', () => {
    writeCheckpoint(dir, { trainer: state(10), savedAt: 'a' });
    const last = writeCheckpoint(dir, { trainer: state(20), savedAt: 'b' });
    const full = fs.readFileSync(last);
    fs.writeFileSync(last, full.subarray(0, full.length - 7));
    expect(() => readCheckpoint(last)).toThrow(/cut short/);
    const seen: CheckpointError[] = [];
    const found = loadLatestCheckpoint(dir, { onInvalid: (e) => seen.push(e) });
    expect(found?.payload.trainer.step).toBe(10);
    expect(seen).toHaveLength(1);
    expect(seen[0].file).toBe(last);
  });

  it('detects corruption by checksum and a missing header', () => {
    const f = writeCheckpoint(dir, { trainer: state(3), savedAt: 'a' });
    const text = fs.readFileSync(f, 'utf8').replace('"values":[3,-3]', '"values":[4,-3]');
    fs.writeFileSync(f, text);
    expect(() => readCheckpoint(f)).toThrow(/checksum mismatch/);
    fs.writeFileSync(f, '{"trainer"');
    expect(() => readCheckpoint(f)).toThrow(/no header line/);
    expect(loadLatestCheckpoint(dir)).toBeNull();
  });
});
