/**
 * The benchopt-ho section: benchopt's regularization-selection problem (per-feature L2 on logistic regression)
 * on LIBSVM files given on the command line — the files' check and sizes, and the section's text (the figure
 * of the value function against time with quantile bands is drawn by the report from `bandSeries`).
 */
import { DataError } from '@bilevel/core';
import { type ChartSeries, formatNumber, markdownTable } from '@bilevel/cli';
import { labelsToClasses, readLibsvm } from '@bilevel/datasets';
import { bandAt, bandSeries, chooseSteps, epochs, gridRowHead, rankingAt } from './benchopt';
import type { RunResult } from './results';
import {
  BENCHOPT_HO_GRID,
  BENCHOPT_HO_VALIDATION_FRACTION,
  type LibsvmFiles,
  type SectionSetting,
} from './settings';
import { quantile } from './stats';

/** What the files hold, as the section's problem splits them (seed 0's split when validation is held out). */
export interface LibsvmSummary {
  readonly files: LibsvmFiles;
  readonly features: number;
  readonly classes: number;
  readonly trainSamples: number;
  readonly validationSamples: number;
  /** Whether the validation set is held out of the training file (no validation file). */
  readonly heldOut: boolean;
  /** Samples of the test file (absent without one). */
  readonly testSamples?: number;
}

/**
 * Reads the files once (before any worker starts) and says what they hold. A missing or malformed file throws the
 * datasets package's `DataError`, which names the file, line and column; too few labels or samples throw a
 * `DataError` naming the file too.
 */
export function readLibsvmSummary(files: LibsvmFiles): LibsvmSummary {
  const train = readLibsvm(files.train);
  const validation = files.validation !== undefined ? readLibsvm(files.validation) : undefined;
  const test = files.test !== undefined ? readLibsvm(files.test) : undefined;
  const classes = labelsToClasses(train.labels, validation?.labels ?? [], test?.labels ?? []).classes;
  if (classes < 2)
    throw new DataError(
      `${files.train}: the labels take ${classes} distinct value(s); classification needs at least 2`,
      files.train,
    );
  const features = Math.max(train.features.cols, validation?.features.cols ?? 0, test?.features.cols ?? 0);
  const held = validation ? 0 : Math.round(BENCHOPT_HO_VALIDATION_FRACTION * train.features.rows);
  const trainSamples = train.features.rows - held;
  const validationSamples = validation ? validation.features.rows : held;
  for (const [file, n, what] of [
    [files.train, trainSamples, 'training'],
    [files.validation ?? files.train, validationSamples, 'validation'],
  ] as const) {
    if (n < 64) {
      throw new DataError(
        `${file}: ${n} ${what} samples${what === 'validation' && !validation ? ` (${BENCHOPT_HO_VALIDATION_FRACTION * 100} % held out of the training file)` : ''}, ` +
          "fewer than the protocol's minibatch of 64",
        file,
      );
    }
  }
  return {
    files,
    features,
    classes,
    trainSamples,
    validationSamples,
    heldOut: !validation,
    ...(test ? { testSamples: test.features.rows } : {}),
  };
}

const pct = (v: number): string => (Number.isFinite(v) ? `${(100 * v).toFixed(1)} %` : '—');
const num = (v: number): string => (Number.isFinite(v) ? formatNumber(v, 4) : '—');

/** The tuned runs of each method (completed ones only), in the methods' order. */
export function tunedByMethod(section: SectionSetting, runs: readonly RunResult[]): Map<string, RunResult[]> {
  const labels = [...new Set(section.methods.filter((m) => m.tuned).map((m) => m.label))];
  const tuned = runs.filter((r) => r.protocol?.startsWith('seed') && r.status === 'completed');
  return new Map(labels.map((l) => [l, tuned.filter((r) => r.label === l)]));
}

/** The figure's series: per method the median of h(x) over seeds over its 20–80 % quantile band. */
export function valueFunctionSeries(section: SectionSetting, runs: readonly RunResult[]): ChartSeries[] {
  return bandSeries(section, tunedByMethod(section, runs), section.timeLimitSeconds ?? 0);
}

/** The benchopt-ho section's text around its figure. */
export function benchoptHoText(
  section: SectionSetting,
  runs: readonly RunResult[],
  figure: string,
  quick: boolean,
  data: LibsvmSummary,
): string {
  const tuned = runs.filter((r) => r.protocol?.startsWith('seed'));
  const gridRuns = runs.filter((r) => r.protocol?.startsWith('grid'));
  const byMethod = tunedByMethod(section, runs);
  const labels = [...byMethod.keys()];
  const budget = section.timeLimitSeconds ?? 0;
  const seeds = [...new Set(tuned.map((r) => r.protocol))].length;
  const choices = chooseSteps(section, runs);
  const gridSeconds = section.methods.find((m) => m.grid)?.timeLimitSeconds ?? budget;
  const times = [budget / 4, budget / 2, budget];
  const hasTest = data.testSamples !== undefined;
  const table = markdownTable(
    [
      'method',
      'steps ρ / γ (grid winner)',
      'runs',
      ...times.map((t) => `h(x) at ${formatNumber(t, 3)} s: median [20 %, 80 %]`),
      `validation loss at the iterate, ${formatNumber(budget, 3)} s (median)`,
      ...(hasTest ? [`test error at the iterate, ${formatNumber(budget, 3)} s (median)`] : []),
      'outer steps (median)',
      'epochs of inner gradients (median)',
    ],
    labels.map((l) => {
      const rs = byMethod.get(l) ?? [];
      const c = choices.get(l);
      const all = tuned.filter((r) => r.label === l);
      const lastLoss = rs.map((r) => r.evals[r.evals.length - 1]?.outerLoss ?? NaN).filter(Number.isFinite);
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
          return b.n === 0 ? '—' : `${num(b.median)} [${num(b.q20)}, ${num(b.q80)}]`;
        }),
        lastLoss.length ? num(quantile(lastLoss, 0.5)) : '—',
        ...(hasTest
          ? [
              (() => {
                const b = bandAt(rs, 'testError', budget, budget);
                return b.n === 0 ? '—' : pct(b.median);
              })(),
            ]
          : []),
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
                rs.map((r) => epochs(section, r, data.trainSamples)),
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
    ['method', 'ρ', 'γ', 'status', 'outer steps', 'final h(x)', 'final validation loss at the iterate'],
    gridRuns.map((r) => {
      const last = r.evals.length ? r.evals[r.evals.length - 1] : undefined;
      const ok = last && r.status === 'completed';
      return [
        ...gridRowHead(section, r, choices),
        ok && last.metrics.valueFunction !== undefined ? num(last.metrics.valueFunction) : '—',
        ok ? num(last.outerLoss) : '—',
      ];
    }),
  );
  const base = (file: string | undefined): string => (file ?? '').replace(/^.*[\\/]/, '');
  const f = {
    train: base(data.files.train),
    validation: base(data.files.validation),
    test: base(data.files.test),
  };
  const split = data.heldOut
    ? `${data.trainSamples.toLocaleString('en-US')} training and ${data.validationSamples.toLocaleString('en-US')} validation samples ` +
      `(${BENCHOPT_HO_VALIDATION_FRACTION * 100} % of \`${f.train}\` held out, a fresh split per seed)`
    : `${data.trainSamples.toLocaleString('en-US')} training samples (\`${f.train}\`) and ${data.validationSamples.toLocaleString('en-US')} ` +
      `validation samples (\`${f.validation}\`)`;
  const vf = (section.valueFunctionSolver?.options ?? {}) as { maxIterations?: number; tolerance?: number };
  const failedMethods = labels.filter((l) => (byMethod.get(l) ?? []).length === 0);
  return [
    "benchopt's bilevel benchmark (Dagréou, Ablin, Vaiter & Moreau, NeurIPS 2022, and the benchopt `benchmark_bilevel` repository), " +
      'its regularization-selection problem (datasets ijcnn1 and covtype there) on the LIBSVM files given: logistic regression ' +
      `(softmax over the files' ${data.classes} labels) on ${data.features} features, g(x, y) = (1/n)Σ CE(Wa_i + b, y_i) + ½Σ_j exp(x_j)‖W_j‖² ` +
      'with one L2 penalty per feature, f = the unregularized cross-entropy on the validation set; ' +
      `${split}${hasTest ? `, and ${(data.testSamples as number).toLocaleString('en-US')} test samples (\`${f.test}\`)` : ''}. ` +
      'The same nine methods and protocol as the benchopt hyper-cleaning section: minibatches of 64 for the stochastic methods ' +
      '(SOBA, SABA, AmIGO, StocBiO, F2SA, BOME, ESJ-S), full batches for qNBO and AID-CG, x by plain gradient descent (step γ). ' +
      'Every method of the hyper-cleaning protocol has the oracles it needs on this problem (minibatches, the fixed batches ' +
      "SABA's memory needs, the batched inner loss ESJ-S uses), so all nine run; a run that fails is listed below the tables. " +
      "The metric is benchopt's for ijcnn1: the value function h(x) = f(x, y*(x)), y*(x) from a full-batch L-BFGS solve " +
      `(at most ${vf.maxIterations ?? '?'} iterations, ‖∇_y g‖ ≤ ${vf.tolerance ?? '?'}, warm-started from the previous evaluation's y*), every ${formatNumber(section.evalIntervalSeconds, 3)} s ` +
      'of training time and not charged; benchopt plots h(x) − h* on a log axis, here h(x) itself is drawn.' +
      (quick ? ' **Quick size: a smoke test, the numbers say nothing.**' : ''),
    '',
    `**Step sizes.** A grid on seed 0 with a ${formatNumber(gridSeconds, 3)} s budget: ρ ∈ {${BENCHOPT_HO_GRID.innerSteps.join(', ')}} ` +
      `(methods with gradient inner steps) × γ ∈ {${BENCHOPT_HO_GRID.outerSteps.join(', ')}}; the pair with the lowest final h(x) is used ` +
      `on every seed (the test set is not looked at). Then every method runs on ${seeds} seed${seeds === 1 ? '' : 's'} with ` +
      `${formatNumber(budget, 3)} s of training time each.`,
    '',
    figure,
    '',
    'Lines: median h(x) over seeds; shaded bands of the same colour: from the 20 % to the 80 % quantile over seeds.',
    '',
    table,
    '',
    ranking.length
      ? `**Ordering at ${formatNumber(budget, 3)} s** (median h(x)): ${ranking.map((x) => `${x.l} ${num(x.v)}`).join(' < ')}.`
      : '',
    failedMethods.length
      ? `\n**No completed tuned run:** ${failedMethods.join(', ')} (see the failures below).`
      : '',
    '',
    '<details><summary>The step-size grid (seed 0; winners in bold)</summary>',
    '',
    gridTable,
    '',
    '</details>',
    '',
  ].join('\n');
}
