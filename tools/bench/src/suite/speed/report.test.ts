import type { BilevelSpeedResult } from './results';
import { agreementText, formatMs, ratio, speedEnvironment, speedSection, speedTable } from './report';
import type { SpeedOutcome, SpeedRow } from './section';
import { speedWorkloads } from './workloads';

const all = speedWorkloads({ quick: false });
const byId = (id: string) => {
  const w = all.find((x) => x.id === id);
  if (!w) throw new Error(id);
  return w;
};

const bilevel = (timesMs: number[], checks: Record<string, number> = {}): BilevelSpeedResult => ({
  status: 'completed',
  timesMs,
  checks,
  backend: { name: 'cpu-blas', reason: 'OpenBLAS 0.3.21 (Haswell), 2 threads' },
  threads: 2,
});

const missing = {
  found: false as const,
  looked: ['BILEVEL_TORCH_PYTHON (not set)', '/usr/bin/python3 (no module named torch)', 'python3 (not found)'],
};
const missingText =
  'PyTorch not found (looked for BILEVEL_TORCH_PYTHON (not set), /usr/bin/python3 (no module named torch), python3 (not found))';

function outcome(rows: SpeedRow[], torch: SpeedOutcome['torch']): SpeedOutcome {
  return { rows, torch, loadAverageStart: [1.5, 1, 0.5], loadAverageEnd: [2, 1.2, 0.6], seconds: 12 };
}

/** The cells of the table's data rows. */
function cells(table: string): string[][] {
  return table
    .split('\n')
    .slice(2)
    .map((l) => l.split(/(?<!\\)\|/).slice(1, -1).map((c) => c.trim()));
}

describe('the speed report without PyTorch', () => {
  const o = outcome(
    [
      { workload: byId('quadratic/aid-cg'), bilevel: bilevel([12, 10, 11], { xRelativeError: 1.5e-5, outerLoss: 3 }), load: { bilevel: 1.2 } },
      { workload: byId('micro/sgemm'), bilevel: bilevel([4, 5, 6]), load: { bilevel: 1.3 } },
    ],
    missing,
  );

  it('says in the PyTorch column where it looked, and leaves the ratio empty', () => {
    const rows = cells(speedTable(o));
    expect(rows).toHaveLength(2);
    for (const r of rows) {
      expect(r[2]).toBe(missingText);
      expect(r[3]).toBe('—');
    }
    expect(rows[0][0]).toBe('quadratic d=1,000, AID-CG');
    expect(rows[0][1]).toBe('11.0 (min 10.0)');
    const cg = byId('quadratic/aid-cg');
    expect(rows[0][4]).toBe(`‖x − x*‖/‖x*‖ after ${cg.warmup + cg.steps} steps 1.500e-5`);
    expect(rows[1][4]).toMatch(/^GFLOP\/s 53\.7$/);
    expect(rows[0][5]).toBe('1.2');
  });

  it('names the missing PyTorch beside the backend and threads', () => {
    const env = speedEnvironment(o);
    expect(env).toContain('`cpu-blas`');
    expect(env).toContain('2 threads');
    expect(env).toContain(missingText);
    expect(env).toContain('1.50 / 1.00 / 0.50 at the start');
  });

  it('still reports our times in the section, with its settings', () => {
    const md = speedSection(5, o, false);
    expect(md).toMatch(/^## 5\. Speed: Bilevel and PyTorch/);
    expect(md).toContain(missingText);
    expect(md).toContain('11.0 (min 10.0)');
    expect(md).toContain('`quadratic/aid-cg`');
    expect(md).not.toContain('Quick mode');
  });
});

describe('the speed report with PyTorch', () => {
  const torch = { found: true as const, python: '/usr/bin/python3', version: '1.13.0' };
  const row: SpeedRow = {
    workload: byId('quadratic/qnbo'),
    bilevel: bilevel([30, 20, 40], { xRelativeErrorWarmup: 0.0123, xRelativeError: 2e-5 }),
    torch: { status: 'completed', timesMs: [5, 4, 6], checks: { xRelativeErrorWarmup: 0.01231, xRelativeError: 2.0001e-5 } },
    load: { bilevel: 1, torch: 1.5 },
  };

  it('divides the medians and shows both sides’ results', () => {
    expect(ratio(row)).toBe(6);
    const [r] = cells(speedTable(outcome([row], torch)));
    expect(r[2]).toBe('5.00 (min 4.00)');
    expect(r[3]).toBe('6.00');
    const w = row.workload;
    expect(r[4]).toBe(
      `‖x − x*‖/‖x*‖ after ${w.warmup} steps 0.01230 vs 0.01231; after ${w.warmup + w.steps} 2.000e-5 vs 2.000e-5`,
    );
    expect(r[5]).toBe('1.0 / 1.5');
    expect(speedEnvironment(outcome([row], torch))).toContain('PyTorch 1.13.0 (`/usr/bin/python3`)');
  });

  it('reports a failed twin in its cell, with no ratio', () => {
    const failed: SpeedRow = { ...row, torch: { status: 'failed', error: 'twin exited with code 1', timesMs: [], checks: {} } };
    const [r] = cells(speedTable(outcome([failed], torch)));
    expect(r[2]).toBe('failed: twin exited with code 1');
    expect(r[3]).toBe('—');
    expect(speedSection(1, outcome([failed], torch), true)).toContain('PyTorch: failed — twin exited with code 1');
  });

  it('shows the first and the last outer loss of the other pipelines', () => {
    const text = agreementText(byId('hyper-cleaning/aid-cg'), bilevel([1], { outerLossFirst: 2.3, outerLoss: 0.7, oracleCalls: 1234 }), {
      status: 'completed',
      timesMs: [1],
      checks: { outerLossFirst: 2.3, outerLoss: 0.71, oracleCalls: 1234 },
    });
    expect(text).toBe('outer loss at step 1 2.300 vs 2.300; at step 12 0.7000 vs 0.7100; oracle calls 1,234 vs 1,234');
  });

  it('shows the network’s loss and gradient norm on both sides', () => {
    const text = agreementText(byId('resnet/forward-backward'), bilevel([1], { loss: 2.5, gradientNorm: 3.25 }), {
      status: 'completed',
      timesMs: [1],
      checks: { loss: 2.5, gradientNorm: 3.25 },
    });
    expect(text).toBe('loss 2.500 vs 2.500; ‖∇‖ 3.250 vs 3.250');
  });
});

describe('formatMs', () => {
  it('keeps three significant digits', () => {
    expect(formatMs(1234.4)).toBe('1234');
    expect(formatMs(12.345)).toBe('12.3');
    expect(formatMs(0.01234)).toBe('0.012');
    expect(formatMs(NaN)).toBe('—');
  });
});
