/**
 * The benchopt section: the step-size choice from the grid runs, and its report (median test error against
 * training time over seeds with 20–80 % quantile bands, a table of test error at fixed times, the grid).
 */
import { type ChartSeries, formatNumber, markdownTable } from '@bilevel/cli';
import type { RunResult } from './results';
import { BENCHOPT_GRID, type SectionSetting, type StepChoice } from './settings';
import { quantile } from './stats';

/** The grid's winner for one method: its steps and the final validation loss of that grid run. */
export interface GridChoice {
  readonly steps: StepChoice;
  readonly validationLoss: number;
}

/**
 * A run's final validation (outer) loss, or its final `metric` when given; undefined when it did not complete
 * with a finite one.
 */
function finalLoss(r: RunResult, metric?: string): number | undefined {
  if (r.status !== 'completed' || r.evals.length === 0) return undefined;
  const last = r.evals[r.evals.length - 1];
  const v = metric === undefined ? last.outerLoss : last.metrics[metric];
  return v !== undefined && Number.isFinite(v) ? v : undefined;
}

/**
 * Per method, the grid run with the lowest final validation loss (f on the whole validation set at the last
 * iterate, or the section's `gridMetric` such as the value function; the test set is not looked at). Methods
 * without a completed grid run are absent.
 */
export function chooseSteps(section: SectionSetting, runs: readonly RunResult[]): Map<string, GridChoice> {
  const out = new Map<string, GridChoice>();
  for (const r of runs) {
    const m = section.methods.find((x) => (x.protocol ? `${x.protocol}/${x.label}` : x.label) === r.key);
    if (!m?.grid) continue;
    const loss = finalLoss(r, section.gridMetric);
    if (loss === undefined) continue;
    const best = out.get(m.grid.method);
    if (!best || loss < best.validationLoss) {
      out.set(m.grid.method, {
        steps: { innerStep: m.grid.innerStep, outerStep: m.grid.outerStep },
        validationLoss: loss,
      });
    }
  }
  return out;
}

/**
 * A run's metric at training time t: its last evaluation at or before t (undefined before the first). The
 * run's final evaluation counts as made at the budget (the last step may end a little past it).
 */
export function valueAt(r: RunResult, metric: string, t: number, budget = Infinity): number | undefined {
  let v: number | undefined;
  for (const [k, p] of r.evals.entries()) {
    const time = k === r.evals.length - 1 ? Math.min(p.time, budget) : p.time;
    if (time > t + 1e-9) break;
    const m = p.metrics[metric];
    if (m !== undefined) v = m;
  }
  return v;
}

/** Median and 20 % / 80 % quantiles over runs at time t (runs without a value there are left out). */
export function bandAt(
  runs: readonly RunResult[],
  metric: string,
  t: number,
  budget = Infinity,
): { median: number; q20: number; q80: number; n: number } {
  const vs = runs
    .map((r) => valueAt(r, metric, t, budget))
    .filter((v): v is number => v !== undefined && Number.isFinite(v));
  return { median: quantile(vs, 0.5), q20: quantile(vs, 0.2), q80: quantile(vs, 0.8), n: vs.length };
}

/**
 * Passes over the training set made by a run's inner gradients (∇_y g calls × batch size / n; a full-batch
 * method's call is one pass). A weight x_i can change y only through an inner step on a batch holding sample i
 * after x_i moved, so a run below about one epoch has hardly used the weights it learned.
 */
export function epochs(section: SectionSetting, r: RunResult, trainSamples?: number): number {
  const m = section.methods.find((x) => (x.protocol ? `${x.protocol}/${x.label}` : x.label) === r.key);
  const options = { ...section.problem.options, ...(m?.problemOptions ?? {}) } as {
    trainSamples: number;
    batchSize?: number;
  };
  const calls = r.oracleCalls?.innerGradY ?? 0;
  return m?.fullBatch || options.batchSize === undefined
    ? calls
    : (calls * options.batchSize) / (trainSamples ?? options.trainSamples);
}

/** Methods by their median of `metric` at time t over their runs, lowest first (methods without a value left out). */
export function rankingAt(
  labels: readonly string[],
  byMethod: ReadonlyMap<string, readonly RunResult[]>,
  metric: string,
  t: number,
): { l: string; v: number }[] {
  return labels
    .map((l) => ({ l, v: bandAt(byMethod.get(l) ?? [], metric, t, t).median }))
    .filter((x) => Number.isFinite(x.v))
    .sort((a, b) => a.v - b.v);
}

/** The first five cells of a grid table's row: method (bold for the grid's winner), ρ, γ, status, outer steps. */
export function gridRowHead(
  section: SectionSetting,
  r: RunResult,
  choices: ReadonlyMap<string, GridChoice>,
): string[] {
  const m = section.methods.find((x) => `${x.protocol}/${x.label}` === r.key);
  const c = choices.get(r.label);
  const won =
    m?.grid !== undefined &&
    c?.steps.innerStep === m.grid.innerStep &&
    c?.steps.outerStep === m.grid.outerStep;
  return [
    won ? `**${r.label}**` : r.label,
    String(m?.grid?.innerStep ?? '–'),
    String(m?.grid?.outerStep ?? '?'),
    r.status,
    String(r.steps),
  ];
}

const pct = (v: number): string => (Number.isFinite(v) ? `${(100 * v).toFixed(1)} %` : '—');

/**
 * The figure's series: per method the median over seeds (a line) over a filled band from the 20 % to the 80 %
 * quantile (same colour, faint), at 61 times from 0 to the budget.
 */
export function bandSeries(
  section: SectionSetting,
  byMethod: ReadonlyMap<string, readonly RunResult[]>,
  budget: number,
): ChartSeries[] {
  const times = Array.from({ length: 61 }, (_, k) => (budget * k) / 60);
  const out: ChartSeries[] = [];
  for (const [label, runs] of byMethod) {
    const color = section.methods.find((m) => m.label === label)?.color ?? '#333333';
    const bands = times.map((t) => ({ t, ...bandAt(runs, section.mainMetric, t, budget) }));
    out.push({
      label,
      color,
      points: bands.map((b) => [b.t, b.median] as [number, number]),
      width: 2.5,
      band: bands.map((b) => [b.t, b.q20, b.q80] as [number, number, number]),
      bandOpacity: 0.18,
    });
  }
  return out;
}

/** The benchopt section's text (the figure is drawn by the caller from {@link bandSeries}). */
export function benchoptText(
  section: SectionSetting,
  runs: readonly RunResult[],
  figure: string,
  quick: boolean,
): string {
  const tuned = runs.filter((r) => r.protocol?.startsWith('seed'));
  const gridRuns = runs.filter((r) => r.protocol?.startsWith('grid'));
  const labels = [...new Set(section.methods.filter((m) => m.tuned).map((m) => m.label))];
  const byMethod = new Map(
    labels.map((l) => [l, tuned.filter((r) => r.label === l && r.status === 'completed')]),
  );
  const budget = section.timeLimitSeconds ?? 0;
  const seeds = [...new Set(tuned.map((r) => r.protocol))].length;
  const p = section.problem.options as {
    trainSamples: number;
    validationSamples: number;
    testSamples: number;
    batchSize: number;
  };
  const choices = chooseSteps(section, runs);
  const gridSeconds = section.methods.find((m) => m.grid)?.timeLimitSeconds ?? budget;
  const times = [budget / 4, budget / 2, budget];
  const table = markdownTable(
    [
      'method',
      'steps ρ / γ (grid winner)',
      'runs',
      ...times.map((t) => `test error at ${formatNumber(t, 3)} s: median [20 %, 80 %]`),
      'outer steps (median)',
      'epochs of inner gradients (median)',
    ],
    labels.map((l) => {
      const rs = byMethod.get(l) ?? [];
      const c = choices.get(l);
      const all = tuned.filter((r) => r.label === l);
      return [
        l,
        c ? `${c.steps.innerStep ?? '–'} / ${c.steps.outerStep}` : '— (no grid run completed)',
        `${rs.length} of ${all.length}${
          all.length > rs.length
            ? ` (${all
                .filter((r) => r.status !== 'completed')
                .map((r) => r.status)
                .join(', ')})`
            : ''
        }`,
        ...times.map((t) => {
          const b = bandAt(rs, section.mainMetric, t, budget);
          return b.n === 0 ? '—' : `${pct(b.median)} [${pct(b.q20)}, ${pct(b.q80)}]`;
        }),
        rs.length
          ? formatNumber(
              quantile(
                rs.map((r) => r.steps),
                0.5,
              ),
              3,
            )
          : '—',
        rs.length
          ? formatNumber(
              quantile(
                rs.map((r) => epochs(section, r)),
                0.5,
              ),
              2,
            )
          : '—',
      ];
    }),
  );
  const ranking = rankingAt(labels, byMethod, section.mainMetric, budget);
  const gridTable = markdownTable(
    ['method', 'ρ', 'γ', 'status', 'outer steps', 'final validation loss', 'test error'],
    gridRuns.map((r) => {
      const last = r.evals.length ? r.evals[r.evals.length - 1] : undefined;
      return [
        ...gridRowHead(section, r, choices),
        last && r.status === 'completed' ? formatNumber(last.outerLoss, 4) : '—',
        last && r.status === 'completed' && last.metrics.testError !== undefined
          ? pct(last.metrics.testError)
          : '—',
      ];
    }),
  );
  return [
    `benchopt's bilevel benchmark (Dagréou, Ablin, Vaiter & Moreau, NeurIPS 2022, and the benchopt \`benchmark_bilevel\` ` +
      'repository) on data hyper-cleaning: a linear multinomial model (softmax regression), g = (1/n)Σσ(xᵢ)·CE + (0.001/2)‖W‖² ' +
      `on ${p.trainSamples.toLocaleString('en-US')} training samples whose labels are 50 % corrupted, f = cross-entropy on ` +
      `${p.validationSamples.toLocaleString('en-US')} clean validation samples, test error on ${p.testSamples.toLocaleString('en-US')} ` +
      `test images — on Fashion-MNIST (the data this machine has; benchopt's published run is on MNIST). Minibatches of ${p.batchSize} ` +
      'for the stochastic methods (SOBA, SABA, AmIGO, StocBiO, F2SA, BOME, ESJ-S); qNBO and AID-CG are deterministic and take ' +
      'full batches. x steps by plain gradient descent (step γ) for every method. The test error is measured at the iterate ' +
      `(x, y) itself every ${formatNumber(section.evalIntervalSeconds, 3)} s of training time (not charged).` +
      (quick ? ' **Quick size: a smoke test, the numbers say nothing.**' : ''),
    '',
    `**Step sizes.** A grid on seed 0 with a ${formatNumber(gridSeconds, 3)} s budget: inner and linear-system step ρ ∈ ` +
      `{${BENCHOPT_GRID.innerSteps.join(', ')}} (methods with gradient inner steps) × outer step γ ∈ {${BENCHOPT_GRID.outerSteps.join(', ')}}; ` +
      'the pair with the lowest final validation loss (the test set is not looked at) is used on every seed. ' +
      `Then every method runs on ${seeds} seeds (each seed draws its own data split, corruption and batches, the same ` +
      `for every method) with ${formatNumber(budget, 3)} s of training time each.`,
    '',
    figure,
    '',
    'Lines: median test error over seeds; shaded bands of the same colour: from the 20 % to the 80 % quantile over seeds.',
    '',
    table,
    '',
    ranking.length
      ? `**Ordering at ${formatNumber(budget, 3)} s** (median test error): ${ranking.map((x) => `${x.l} ${pct(x.v)}`).join(' < ')}. ` +
        "benchopt's published ordering on MNIST (their figure, final test error): SABA 13.6 % ≈ SOBA 13.6 % ≈ AmIGO 13.6 % < " +
        'StocBiO 14.6 %.'
      : '',
    '',
    '**Reading it.** A sample weight σ(xᵢ) changes the model y only through inner steps on a batch that holds sample i ' +
      "after xᵢ moved; the last column counts the passes over the training set made by each method's inner gradients. " +
      'Below about one epoch the stochastic methods have hardly used the weights they learned, and their test error is ' +
      "mostly that of the model fitted so far to the noisy labels (weights 0.5); benchopt's runs last many epochs.",
    '',
    '<details><summary>The step-size grid (seed 0; winners in bold)</summary>',
    '',
    gridTable,
    '',
    '</details>',
    '',
  ].join('\n');
}
