/**
 * Turns the suite's results into docs/benchmarks.md and its figures (SVG, Vega-Lite specs of @bilevel/cli's
 * lineChartSpec rendered by vega; PNG too on request, by resvg). Every number and every statement about the numbers in the
 * markdown is computed here from the run's results; the only constants are the values the ESJ authors' code
 * printed, quoted as references.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs-core';
import type { OracleCounts } from '@bilevel/core';
import {
  type AxisScale,
  type ChartSeries,
  formatDuration,
  formatNumber,
  lineChartSpec,
  markdownTable,
  wantsLogScale,
  writeChart,
} from '@bilevel/cli';
import type { EvalPoint, RunResult } from './results';
import { meanCi95, pairedTTest } from './stats';
import { bandSeries, benchoptText } from './benchopt';
import { type LibsvmSummary, benchoptHoText, valueFunctionSeries } from './benchopt-ho';
import { speedSection } from './speed/report';
import type { SpeedOutcome } from './speed/section';
import { HYPER_REPRESENTATION_EXTRA_SEEDS, type MethodSetting, type SectionSetting, methodKey } from './settings';

export interface SectionOutcome {
  readonly setting: SectionSetting;
  /** Why the whole section did not run (missing data, `--only`, unusable data). */
  readonly skipped?: string;
  /** The section did not run because its data was given but cannot be used (a failure, not a skip). */
  readonly failed?: boolean;
  readonly runs: readonly RunResult[];
  /** The LIBSVM files' sizes (benchopt-ho section). */
  readonly libsvm?: LibsvmSummary;
}

export interface SuiteReport {
  readonly quick: boolean;
  readonly startedAt: Date;
  readonly totalSeconds: number;
  /** The command line that produced the report. */
  readonly command: string;
  readonly backendChoice: string;
  readonly loadAverageStart: readonly number[];
  readonly loadAverageEnd: readonly number[];
  readonly sections: readonly SectionOutcome[];
  /** The speed section (Bilevel against PyTorch twins), when it ran. */
  readonly speed?: SpeedOutcome;
}

export interface WriteOptions {
  /** Folder of benchmarks.md; figures go to <outDir>/benchmarks/. */
  readonly outDir: string;
  readonly png: boolean;
  /** Also write <outDir>/benchmarks/results.json (every curve and measurement). */
  readonly json: boolean;
}

/** The final outer losses the ESJ authors' notebook (HyperRepresentation.ipynb) printed at outer step 99. */
export const ESJ_AUTHORS_REFERENCE = {
  initialLoss: 508.638,
  finalLoss: { ESJ: 0.01847, 'AID-FP': 0.07730, 'AID-CG': 0.06650 } as Record<string, number>,
  source: 'sowmaster/esjacobians, HyperRepresentation.ipynb (K = 100 outer steps, T = 20 inner steps)',
};

const KIND_TITLES: Record<keyof OracleCounts, string> = {
  innerValue: 'g',
  innerGradY: '∇_y g',
  innerGradX: '∇ₓg',
  outerValue: 'f',
  outerGrad: '∇f',
  hessianVector: '∇²_yy g·v',
  mixedVector: '∇²ₓᵧg·v',
};
const KINDS = Object.keys(KIND_TITLES) as (keyof OracleCounts)[];

// ————— formatting —————

function int(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

function seconds(s: number | undefined): string {
  if (s === undefined || !Number.isFinite(s)) return '—';
  return s < 10 ? s.toFixed(2) : s < 100 ? s.toFixed(1) : s.toFixed(0);
}

function mb(bytes: number | undefined): string {
  if (bytes === undefined || !Number.isFinite(bytes)) return '—';
  return (bytes / 2 ** 20).toFixed(bytes < 10 * 2 ** 20 ? 1 : 0);
}

function percent(v: number | undefined): string {
  return v === undefined || !Number.isFinite(v) ? '—' : `${(100 * v).toFixed(1)} %`;
}

function duration(s: number): string {
  const m = Math.floor(s / 60);
  const r = Math.round(s - 60 * m);
  return m > 0 ? `${m} min ${r} s` : `${s.toFixed(1)} s`;
}

function metricText(section: SectionSetting, v: number | undefined): string {
  if (v === undefined || Number.isNaN(v)) return '—';
  return section.mainMetric === 'testAccuracy' ? percent(v) : formatNumber(v, 3);
}

function runName(r: RunResult): string {
  return r.label;
}

function statusText(r: RunResult): string {
  if (r.status === 'completed') return `completed (${r.stoppedBy === 'time' ? 'time budget' : r.stoppedBy === 'steps' ? 'step budget' : (r.stoppedBy ?? '?')})`;
  return `**${r.status}**`;
}

// ————— results helpers —————

function finalEval(r: RunResult): EvalPoint | undefined {
  return r.evals.length > 0 ? r.evals[r.evals.length - 1] : undefined;
}

function metricOf(p: EvalPoint | undefined, name: string): number | undefined {
  return p?.metrics[name];
}

/** Training time at which the main metric first reached the target (evaluation points only). */
function timeToTarget(section: SectionSetting, r: RunResult, target: number): number | undefined {
  for (const p of r.evals) {
    const v = p.metrics[section.mainMetric];
    if (v === undefined || !Number.isFinite(v)) continue;
    if (section.higherIsBetter ? v >= target : v <= target) return p.time;
  }
  return undefined;
}

function bestMetric(section: SectionSetting, r: RunResult): number | undefined {
  const vs = r.evals.map((p) => p.metrics[section.mainMetric]).filter((v): v is number => v !== undefined && Number.isFinite(v));
  if (vs.length === 0) return undefined;
  return section.higherIsBetter ? Math.max(...vs) : Math.min(...vs);
}

function methodOf(section: SectionSetting, r: RunResult): MethodSetting | undefined {
  return section.methods.find((m) => methodKey(m) === r.key);
}

function optionsText(o: Record<string, unknown>): string {
  const entries = Object.entries(o);
  if (entries.length === 0) return '';
  return ` ${entries.map(([k, v]) => `${k} ${typeof v === 'object' ? JSON.stringify(v) : String(v)}`).join(', ')}`;
}

// ————— figures —————

interface Figure {
  readonly file: string;
  readonly alt: string;
}

class FigureWriter {
  private readonly pending: Promise<string[]>[] = [];

  constructor(
    private readonly dir: string,
    private readonly png: boolean,
  ) {
    fs.mkdirSync(dir, { recursive: true });
  }

  /** Draws one chart; returns its path relative to benchmarks.md. */
  chart(
    name: string,
    series: readonly ChartSeries[],
    options: { title: string; xLabel: string; yLabel: string; yScale?: AxisScale | 'auto' },
  ): Figure | undefined {
    const drawn = series.filter((s) => s.points.some(([x, y]) => Number.isFinite(x) && Number.isFinite(y)));
    if (drawn.length === 0) return undefined;
    let yScale: AxisScale = 'linear';
    if (options.yScale === 'log') yScale = 'log';
    else if (options.yScale === 'auto' || options.yScale === undefined) {
      yScale = wantsLogScale(drawn.flatMap((s) => s.points.map(([, y]) => y))) ? 'log' : 'linear';
    }
    const spec = lineChartSpec(drawn, {
      title: options.title,
      xLabel: options.xLabel,
      yLabel: yScale === 'log' ? `${options.yLabel} (log scale)` : options.yLabel,
      yScale,
      width: 860,
      height: 480,
    });
    // vega renders asynchronously: the files are written by the time `done()` resolves.
    this.pending.push(writeChart(path.join(this.dir, name), spec, { png: this.png, pixelRatio: 2 }));
    return { file: `benchmarks/${name}.svg`, alt: options.title };
  }

  /** Waits for every chart to be written; returns the files. */
  async done(): Promise<string[]> {
    return (await Promise.all(this.pending)).flat();
  }
}

function image(f: Figure | undefined): string {
  return f ? `![${f.alt}](${f.file})` : '_(no figure: no run produced points)_';
}

/** Main metric against training time, one series per run. */
function metricSeries(section: SectionSetting, runs: readonly RunResult[]): ChartSeries[] {
  return runs.map((r) => ({
    label: runName(r),
    color: methodOf(section, r)?.color ?? '#333333',
    points: r.evals
      .filter((p) => p.metrics[section.mainMetric] !== undefined)
      .map((p) => [p.time, p.metrics[section.mainMetric]] as [number, number]),
  }));
}

/** Outer loss against training time (or outer iterate), per step, the final evaluation appended. */
function lossSeries(section: SectionSetting, runs: readonly RunResult[], axis: 'time' | 'iterate'): ChartSeries[] {
  return runs.map((r) => {
    const pts: [number, number][] = r.curve.map((c) => [axis === 'time' ? c.time : c.iterate, c.outerLoss]);
    const last = finalEval(r);
    if (last && r.status === 'completed') pts.push([axis === 'time' ? last.time : last.iterate, last.outerLoss]);
    return { label: runName(r), color: methodOf(section, r)?.color ?? '#333333', points: pts };
  });
}

// ————— tables shared by all sections —————

function resourceTable(runs: readonly RunResult[]): string {
  const kinds = KINDS.filter((k) => runs.some((r) => (r.oracleCalls?.[k] ?? 0) > 0));
  const header = [
    'method',
    'status',
    'outer steps',
    'training time (s)',
    'wall time (s)',
    ...kinds.map((k) => KIND_TITLES[k]),
    'RSS MB: start → peak (max)',
    'tensor MB: after steps / peak / buffers peak',
  ];
  const rows = runs.map((r) => [
    r.protocol ? `${runName(r)} [${r.protocol}]` : runName(r),
    statusText(r),
    int(r.steps),
    seconds(r.trainSeconds),
    seconds(r.wallSeconds),
    ...kinds.map((k) => (r.oracleCalls ? int(r.oracleCalls[k]) : '—')),
    r.memory ? `${mb(r.memory.rssStart)} → ${mb(r.memory.rssPeak)} (${mb(r.memory.maxRss)})` : '—',
    r.memory
      ? `${mb(r.memory.tensorBytesAtSteps)} / ${mb(r.memory.tensorBytesHighWater)} / ${mb(r.memory.bufferBytesHighWater)}`
      : '—',
  ]);
  return markdownTable(header, rows);
}

function failures(runs: readonly RunResult[]): string {
  const bad = runs.filter((r) => r.status !== 'completed');
  if (bad.length === 0) return '';
  return (
    '\n' +
    bad
      .map((r) => {
        const where = r.steps > 0 ? ` after ${int(r.steps)} outer steps (${seconds(r.trainSeconds)} s of training)` : '';
        return `- **${runName(r)}${r.protocol ? ` [${r.protocol}]` : ''} ${r.status}**${where}: ${r.error ?? 'no message'}`;
      })
      .join('\n') +
    '\n'
  );
}

function settingsList(section: SectionSetting): string {
  return section.methods
    .map((m) => {
      const proto = m.protocol ? ` [${m.protocol}]` : '';
      return (
        `- **${m.label}**${proto}: inner \`${m.innerSolver.name}\`${optionsText(m.innerSolver.options)}; ` +
        `estimator \`${m.estimator.name}\`${optionsText(m.estimator.options)}; outer \`${m.outerOptimizer.name}\`` +
        `${optionsText(m.outerOptimizer.options)}; ${m.warmStart ? (m.fixedInitialY ? 'inner solves warm-started from w₀' : 'warm-started inner solves') : m.fixedInitialY ? 'every inner solve from the same w₀' : 'every inner solve from the initial y'}`
      );
    })
    .join('\n');
}

function mainResultTable(section: SectionSetting, runs: readonly RunResult[]): string {
  const header = [
    'method',
    'at x₀',
    `${section.mainMetricTitle}, final`,
    section.higherIsBetter ? 'best seen' : 'lowest seen',
    ...section.targets.map((t) => `time to ${t.label} (s)`),
    'outer loss, final',
    'training time (s)',
  ];
  const rows = runs.map((r) => {
    const last = finalEval(r);
    const ci = metricOf(last, `${section.mainMetric}Ci95`);
    const main = metricText(section, metricOf(last, section.mainMetric)) + (ci !== undefined ? ` ± ${percent(ci)}` : '');
    return [
      runName(r),
      metricText(section, metricOf(r.evals[0], section.mainMetric)),
      r.status === 'completed' ? main : `${r.status}`,
      metricText(section, bestMetric(section, r)),
      ...section.targets.map((t) => seconds(timeToTarget(section, r, t.value))),
      r.status === 'completed' ? formatNumber(last?.outerLoss, 4) : '—',
      seconds(r.trainSeconds),
    ];
  });
  return markdownTable(header, rows);
}

// ————— sections —————

interface SectionText {
  readonly body: string;
}

function skippedSection(heading: string, o: SectionOutcome): SectionText {
  const about = o.setting.about ? `\n${o.setting.about}\n` : '';
  return { body: `${heading} ${o.setting.title}\n\n**${o.failed ? 'Not run (failed)' : 'Skipped'}:** ${o.skipped}\n${about}` };
}

function rankText(section: SectionSetting, runs: readonly RunResult[]): string {
  const done = runs.filter((r) => r.status === 'completed' && metricOf(finalEval(r), section.mainMetric) !== undefined);
  if (done.length === 0) return 'No method completed.';
  const sorted = [...done].sort((a, b) => {
    const va = metricOf(finalEval(a), section.mainMetric) as number;
    const vb = metricOf(finalEval(b), section.mainMetric) as number;
    return section.higherIsBetter ? vb - va : va - vb;
  });
  return `Final ${section.mainMetricTitle}, best first: ${sorted
    .map((r) => `${runName(r)} ${metricText(section, metricOf(finalEval(r), section.mainMetric))}`)
    .join(', ')}.`;
}

function targetText(section: SectionSetting, runs: readonly RunResult[]): string {
  const parts: string[] = [];
  for (const t of section.targets) {
    const reached = runs
      .map((r) => ({ r, t: timeToTarget(section, r, t.value) }))
      .filter((x): x is { r: RunResult; t: number } => x.t !== undefined)
      .sort((a, b) => a.t - b.t);
    const missed = runs.filter((r) => timeToTarget(section, r, t.value) === undefined).map(runName);
    if (reached.length === 0) parts.push(`No method reached ${t.label}.`);
    else {
      parts.push(
        `First to ${t.label}: ${reached.map((x) => `${runName(x.r)} (${seconds(x.t)} s)`).join(', ')}` +
          (missed.length ? `; not reached within the budget: ${missed.join(', ')}.` : '.'),
      );
    }
  }
  if (parts.length > 0 && section.evalIntervalSeconds > 0 && Number.isFinite(section.evalIntervalSeconds)) {
    parts.push(
      `(A time to a target is that of the first evaluation that reached it, so it is known to within the ` +
        `${seconds(section.evalIntervalSeconds)} s between evaluations.)`,
    );
  }
  return parts.join(' ');
}

/** Why the methods start from different values at the same x₀, when they do. */
function startText(section: SectionSetting, runs: readonly RunResult[]): string {
  const v = runs.map((r) => metricOf(r.evals[0], section.mainMetric)).filter((x): x is number => x !== undefined);
  if (v.length < 2 || Math.max(...v) - Math.min(...v) < 0.01) return '';
  return (
    ' Every method starts from the same x₀; the values there differ because each is measured after that method\'s own ' +
    'inner solve from the initial y (its solver and budget).'
  );
}

function perStepText(runs: readonly RunResult[]): string {
  const done = runs.filter((r) => r.steps > 0);
  if (done.length === 0) return '';
  const per = (r: RunResult): string => {
    const s = r.trainSeconds / r.steps;
    return s >= 1 ? `${s.toFixed(2)} s` : `${formatNumber(1000 * s, 3)} ms`;
  };
  return `Training time per outer step: ${done.map((r) => `${runName(r)} ${per(r)}`).join(', ')}.`;
}

function quadraticSection(n: number, o: SectionOutcome, figs: FigureWriter): SectionText {
  const s = o.setting;
  const runs = o.runs;
  const dim = (s.problem.options as { dimension: number }).dimension;
  const fig = figs.chart(`${s.id}-x-error-vs-time`, metricSeries(s, runs), {
    title: `Quadratic, d = ${dim}: ||x - x*|| / ||x*|| vs training time`,
    xLabel: 'training time (s)',
    yLabel: '||x - x*|| / ||x*||',
    yScale: 'log',
  });
  // Cosine of each estimate with the exact ∇Φ while the iterate is still far from x* (near x*, ∇Φ → 0 and the
  // cosine only measures float32 noise).
  const far = 1e-3;
  const cos = runs.flatMap((r) => {
    const error = new Map(r.evals.map((e) => [e.iterate, e.metrics[s.mainMetric]] as const));
    const cs = r.curve
      .filter((c) => (error.get(c.iterate) ?? 0) > far && c.hypergradientCosine !== undefined && Number.isFinite(c.hypergradientCosine))
      .map((c) => c.hypergradientCosine as number)
      .sort((a, b) => a - b);
    return cs.length ? [`${runName(r)} ${formatNumber(cs[Math.floor(cs.length / 2)], 3)} (${cs.length} steps)`] : [];
  });
  // Runs whose error rose again after reaching the tightest target.
  const tight = s.targets[s.targets.length - 1];
  const relapses = runs.flatMap((r) => {
    const t = timeToTarget(s, r, tight.value);
    if (t === undefined) return [];
    const worst = Math.max(...r.evals.filter((e) => e.time >= t).map((e) => e.metrics[s.mainMetric] ?? 0));
    return worst > tight.value ? [`${runName(r)} (up to ${formatNumber(worst, 2)})`] : [];
  });
  const body = [
    `## ${n}. ${s.title}`,
    '',
    `qNBO's toy problem (Fang et al., ICLR 2025): g(x, y) = ½yᵀAy − xᵀy, f(x, y) = ½‖x − z₀‖² + ½yᵀAy with A = Qᵀdiag(1 + u)Q ` +
      `(spectrum in [1, 2]); x* = (A⁻¹ + I)⁻¹z₀ is known, so the error ‖x − x*‖/‖x*‖ is exact. Every method starts at x = y = 0 ` +
      `and trains for ${seconds(s.timeLimitSeconds)} s of training time (core trainer's \`timeLimitSeconds\`; the error is evaluated ` +
      'after every outer step, outside the budget).',
    '',
    image(fig),
    '',
    mainResultTable(s, runs),
    '',
    `${rankText(s, runs)} ${targetText(s, runs)}`,
    '',
    perStepText(runs) +
      (cos.length
        ? ` Median cosine between an estimate and the exact ∇Φ(x) over the steps where ‖x − x*‖/‖x*‖ > ${far}: ${cos.join(', ')}.`
        : '') +
      (relapses.length
        ? ` After first reaching ${tight.label}, the error rose above it again for ${relapses.join(', ')}.`
        : ` No method's error rose above ${tight.label} again after reaching it.`),
    '',
    'Oracle calls (cumulative, by kind), time and memory:',
    '',
    resourceTable(runs),
    failures(runs),
    '**Settings.** Tuned by hand on this machine, starting from `examples/quadratic.yaml`; the paper does not give every ' +
      'step size. The outer learning rate 0.5 is close to 2/(λ_min + λ_max) of ∇²Φ = I + A⁻¹ (spectrum [1.5, 2]); the inner ' +
      'gradient step 0.6 close to 2/(1 + 2) for A; qNBO follows the paper\'s schedule (P gradient warm-up steps, then ' +
      'quasi-Newton steps; Q passes of subroutine B along ∇_y f). ESJ\'s estimate has a relative error of about √(d/Q), so it ' +
      'needs a far smaller outer step: learning rates 0.01–0.05 with 10–50 directions were tried by hand while tuning, and ' +
      'the setting below is the one used, a compromise between the speed of the descent and the noise floor it settles at. ' +
      'ESJ + memory keeps the responses along every direction it has measured (a Jacobian memory of rank d, see ' +
      '[esj.md](esj.md)); on this problem the response is linear in x, so its estimate is exact once d/Q outer steps ' +
      'have filled the memory, and it takes the exact methods\' learning rate 0.5. The ∇ₓf-only reference drops the ' +
      'implicit term and converges to z₀, not x*.',
    '',
    settingsList(s),
    '',
  ].join('\n');
  return { body };
}

function hyperRepresentationSection(n: number, o: SectionOutcome, figs: FigureWriter, quick: boolean): SectionText {
  const s = o.setting;
  const protocols = ['authors', 'warm'] as const;
  const protocolTitle = { authors: "authors' protocol (every inner solve from the same w₀)", warm: 'warm-started inner solves' };
  const figures = protocols.map((p) =>
    figs.chart(
      `${s.id}-outer-loss-${p}`,
      lossSeries(s, o.runs.filter((r) => r.protocol === p), 'iterate'),
      { title: `Hyper-representation, ${p === 'authors' ? "authors' protocol" : 'warm-started inner solves'}: outer loss`, xLabel: 'outer step', yLabel: 'outer loss f(H, w)', yScale: 'log' },
    ),
  );
  const byKey = (p: string, label: string): RunResult | undefined => o.runs.find((r) => r.protocol === p && r.label === label);
  /** f(H_K−1, w_T(H_K−1)) — what the authors' notebook prints at its last outer step. */
  const lastLoss = (r: RunResult | undefined): number | undefined =>
    r && r.status === 'completed' && r.curve.length > 0 ? r.curve[r.curve.length - 1].outerLoss : undefined;
  const meanCos = (r: RunResult | undefined): number | undefined => {
    const cs = r?.curve.map((c) => c.hypergradientCosine).filter((v): v is number => v !== undefined && Number.isFinite(v)) ?? [];
    return cs.length ? cs.reduce((a, b) => a + b, 0) / cs.length : undefined;
  };
  const labels = ['ESJ', 'AID-FP', 'AID-CG', '∇ₓf only (reference)'];
  const steps = s.steps;
  const header = [
    'method',
    `authors' code, step ${steps - 1}`,
    `this run (seed 0), authors' protocol, step ${steps - 1}`,
    'mean cosine with ∇Φ',
    `this run (seed 0), warm-started, step ${steps - 1}`,
    'mean cosine with ∇Φ',
  ];
  const rows = labels.map((l) => {
    const a = byKey('authors', l);
    const w = byKey('warm', l);
    const ref = ESJ_AUTHORS_REFERENCE.finalLoss[l];
    return [
      l,
      ref !== undefined ? formatNumber(ref, 3) : '—',
      a ? (a.status === 'completed' ? formatNumber(lastLoss(a), 3) : a.status) : '—',
      formatNumber(meanCos(a), 2),
      w ? (w.status === 'completed' ? formatNumber(lastLoss(w), 3) : w.status) : '—',
      formatNumber(meanCos(w), 2),
    ];
  });
  const initial = byKey('authors', 'ESJ')?.curve[0]?.outerLoss;

  // The ordering of the three methods, ours against the authors'.
  const compared = ['ESJ', 'AID-FP', 'AID-CG'];
  const authorsOrder = [...compared].sort((a, b) => ESJ_AUTHORS_REFERENCE.finalLoss[a] - ESJ_AUTHORS_REFERENCE.finalLoss[b]);
  const orderText = (p: string): string => {
    const vals = compared.map((l) => ({ l, v: lastLoss(byKey(p, l)) }));
    if (vals.some((x) => x.v === undefined || !Number.isFinite(x.v))) return `not every method completed, so no ordering for the ${p} protocol`;
    const ours = [...vals].sort((a, b) => (a.v as number) - (b.v as number)).map((x) => x.l);
    const same = ours.every((l, i) => l === authorsOrder[i]);
    return `${protocolTitle[p as 'authors' | 'warm']}: ${ours.join(' < ')} — ${same ? '**matches** the authors\' ordering' : `**differs** from the authors' ${authorsOrder.join(' < ')}`}`;
  };
  const seedOrders = HYPER_REPRESENTATION_EXTRA_SEEDS.map((seed) => {
    const p = `authors-seed${seed}`;
    const vals = compared.map((l) => ({ l, v: lastLoss(byKey(p, l)) }));
    if (vals.some((x) => x.v === undefined || !Number.isFinite(x.v))) return { seed, text: 'not every method completed', same: false };
    const ours = [...vals].sort((a, b) => (a.v as number) - (b.v as number));
    return {
      seed,
      text: ours.map((x) => `${x.l} ${formatNumber(x.v, 3)}`).join(' < '),
      same: ours.every((x, i) => x.l === authorsOrder[i]),
    };
  });
  // Over all draws of the authors' protocol (seed 0 and the others): how often each part of the ordering holds.
  const draws = ['authors', ...HYPER_REPRESENTATION_EXTRA_SEEDS.map((seed) => `authors-seed${seed}`)].map((p) =>
    Object.fromEntries(compared.map((l) => [l, lastLoss(byKey(p, l))])),
  );
  const complete = draws.filter((d) => compared.every((l) => d[l] !== undefined && Number.isFinite(d[l])));
  const esjLowest = complete.filter((d) => compared.every((l) => l === 'ESJ' || (d.ESJ as number) < (d[l] as number))).length;
  const cgBelowFp = complete.filter((d) => (d['AID-CG'] as number) < (d['AID-FP'] as number)).length;
  const seedText = seedOrders.length
    ? ` On other draws of the data, H₀ and w₀ (same protocol and settings): ${seedOrders
        .map((o) => `seed ${o.seed}: ${o.text}${o.same ? ' (matches)' : ''}`)
        .join('; ')}. Over the ${complete.length} draws of the authors' protocol, ESJ ends lowest in ${esjLowest} and ` +
      `AID-CG below AID-FP (the authors' order of the two) in ${cgBelowFp}.`
    : '';
  const esj = lastLoss(byKey('authors', 'ESJ'));
  const ref = lastLoss(byKey('authors', '∇ₓf only (reference)'));
  const gap = esj !== undefined && ref !== undefined ? (100 * Math.abs(esj - ref)) / ref : undefined;
  const esjVsRef =
    gap !== undefined
      ? `In the authors' protocol ESJ ends at ${formatNumber(esj, 3)} against ${formatNumber(ref, 3)} for the ∇ₓf-only reference ` +
        `(${formatNumber(gap, 2)} % apart). `
      : '';
  const follows =
    gap === undefined ? '' : gap < 5 ? ', and the run follows the ∇ₓf-only reference' : `; here the two runs still end ${formatNumber(gap, 2)} % apart`;
  const cosA = compared.map((l) => ({ l, c: meanCos(byKey('authors', l)) }));
  const cosText = cosA.map((x) => `${x.l} ${formatNumber(x.c, 2)}`).join(', ');
  const allLow = cosA.every((x) => x.c !== undefined && x.c < 0.5);
  const cosSentence = allLow
    ? `none of the three estimates points the way of the true ∇Φ (mean cosines with the closed form at w*(H): ${cosText})`
    : `their mean cosines with the closed-form ∇Φ at w*(H) are ${cosText}`;
  const warmLower = compared.filter((l) => {
    const a = lastLoss(byKey('authors', l));
    const w = lastLoss(byKey('warm', l));
    return a !== undefined && w !== undefined && w < a;
  });
  const warmSentence =
    warmLower.length === compared.length
      ? 'every method reaches a lower loss than in the authors\' protocol'
      : `${warmLower.length ? warmLower.join(' and ') : 'no method'} reaches a lower loss than in the authors' protocol`;
  const implicitCos = ['AID-FP', 'AID-CG'].map((l) => ({ l, a: meanCos(byKey('authors', l)), w: meanCos(byKey('warm', l)) }));
  const cosMoves = implicitCos
    .filter((x) => x.a !== undefined && x.w !== undefined)
    .map((x) => `${x.l} ${formatNumber(x.a, 2)} → ${formatNumber(x.w, 2)}`)
    .join(', ');
  const analysis = [
    `**Does the ordering match?** ${orderText('authors')}; ${orderText('warm')}.${seedText}`,
    '',
    `**Analysis.** ${esjVsRef}The authors' ESJ (\`hgvesj\` with p = 1) draws one direction u uniformly on the unit sphere of ` +
      `the ${int(64 * 128)} entries of H and does not rescale it, so its Jacobian term ⟨(w(H + μu) − w(H))/μ, ∇_w f⟩u has mean ` +
      `(∂w/∂H)ᵀ∇_w f / ${int(64 * 128)}: the estimate is ∇ₓf plus a small random term${follows}. (The \`unbiased: true\` option ` +
      'of the `es` estimator scales the term by the dimension, which makes it unbiased and very noisy.) The inner problem is ' +
      'also far from solved: the inner Hessian ZᵀZ/n + 0.1·I (Z = A_in·H, rank ≤ 64 < 128) has 64 eigenvalues equal to 0.1, ' +
      'along which 20 gradient steps of 0.001 shrink the error by (1 − 10⁻⁴)²⁰ ≈ 0.998, so w stays near w₀ there, AID-FP\'s ' +
      '20 steps of 0.001 on ∇²g·u = ∇_w f are as far from converged, and AID-CG\'s 20 CG steps solve the system at a w that ' +
      `is not w*(H); ${cosSentence}. What the table compares is three ways of descending an ill-solved outer loss; our data, H₀ ` +
      'and w₀ come from this library\'s generator, not PyTorch\'s (our initial ' +
      `loss is ${formatNumber(initial, 4)}; the authors start from ${ESJ_AUTHORS_REFERENCE.initialLoss}). With warm-started inner ` +
      `solves w tracks w*(H) across steps: ${warmSentence}` +
      (cosMoves ? `, and the mean cosines of the implicit estimates go ${cosMoves}.` : '.'),
  ].join('\n');
  const body = [
    `## ${n}. ${s.title}`,
    '',
    `The linear hyper-representation of ESJ (Sow, Ji & Liang, NeurIPS 2022), with the settings of the authors' notebook: ` +
      'g(H, w) = (1/2n)‖A_in·H·w − t_in‖² + (0.1/2)‖w‖², f(H, w) = (1/2n)‖A_out·H·w − t_out‖², H ∈ ℝ^{64×128} and w ∈ ℝ^{128} ' +
      `drawn N(0, 1), ${steps} outer steps of Adam (learning rate 0.05), 20 inner gradient steps of 0.001. Two protocols: the ` +
      "authors' (each inner solve, and ESJ's perturbed solve, starts from the same w₀) and warm-started inner solves (this " +
      "library's default; the first solve starts from the same w₀). The value reported is the outer loss at the last iterate the authors print, f(H_" +
      `${steps - 1}, w_20(H_${steps - 1})). The ∇ₓf-only reference drops the implicit term altogether (not a method; see the analysis).` +
      (quick ? ` **Quick mode: ${steps} outer steps instead of 100, so the numbers are not comparable with the authors'.**` : ''),
    '',
    markdownTable(header, rows),
    '',
    `Reference values: ${ESJ_AUTHORS_REFERENCE.source}, from an initial loss of ${ESJ_AUTHORS_REFERENCE.initialLoss}.`,
    '',
    analysis,
    '',
    image(figures[0]),
    '',
    image(figures[1]),
    '',
    'Oracle calls (cumulative, by kind), time and memory:',
    '',
    resourceTable(o.runs),
    failures(o.runs),
    '**Settings.**',
    '',
    settingsList(s),
    '',
  ].join('\n');
  return { body };
}

function timeBudgetSection(
  n: number,
  o: SectionOutcome,
  figs: FigureWriter,
  intro: string,
  shortTitle: string,
  extraFigures: (s: SectionSetting, runs: readonly RunResult[]) => (Figure | undefined)[],
): SectionText {
  const s = o.setting;
  const runs = o.runs;
  const fig = figs.chart(`${s.id}-accuracy-vs-time`, metricSeries(s, runs), {
    title: `${shortTitle}: ${s.mainMetricTitle} vs training time`,
    xLabel: 'training time (s)',
    yLabel: s.mainMetricTitle,
    yScale: 'linear',
  });
  const more = extraFigures(s, runs);
  const body = [
    `## ${n}. ${s.title}`,
    '',
    intro,
    '',
    image(fig),
    '',
    mainResultTable(s, runs),
    '',
    `${rankText(s, runs)} ${targetText(s, runs)}${startText(s, runs)}`,
    '',
    perStepText(runs),
    '',
    ...more.flatMap((f) => [image(f), '']),
    'Oracle calls (cumulative, by kind), time and memory:',
    '',
    resourceTable(runs),
    failures(runs),
    '**Settings.**',
    '',
    settingsList(s),
    '',
  ].join('\n');
  return { body };
}

function hyperCleaningSection(n: number, o: SectionOutcome, figs: FigureWriter): SectionText {
  const s = o.setting;
  const p = s.problem.options as { trainSamples: number; validationSamples: number; testSamples: number };
  const intro =
    'Data hyper-cleaning (as in the ESJ and qNBO papers; settings of `examples/hyper-cleaning-fashion-mnist.yaml`): one weight ' +
    'σ(xᵢ) per training sample in a weighted softmax regression, g = (1/n)Σσ(xᵢ)·CE + (0.001/2)‖W‖², f = cross-entropy on ' +
    `clean validation data. ${int(p.trainSamples)} training samples (half of their labels moved to another class), ` +
    `${int(p.validationSamples)} validation samples, ${int(p.testSamples)} test images; x₀ = 0 (all weights 0.5). Each method ` +
    `trains for ${seconds(s.timeLimitSeconds)} s of training time; test accuracy is evaluated every ${seconds(s.evalIntervalSeconds)} s ` +
    'of training time (after an uncharged inner solve at the current x) and at the end. f does not depend on x, so ' +
    '∇ₓf ≡ 0: the ∇ₓf-only reference keeps x = x₀ (every weight 0.5) and shows the accuracy of the unweighted model.';
  const short = `Hyper-cleaning, n = ${p.trainSamples}`;
  return timeBudgetSection(n, o, figs, intro, short, (sec, runs) => [
    figs.chart(`${sec.id}-validation-loss-vs-time`, lossSeries(sec, runs, 'time'), {
      title: `${short}: validation loss vs training time`,
      xLabel: 'training time (s)',
      yLabel: 'outer (validation) loss',
      yScale: 'auto',
    }),
    figs.chart(
      `${sec.id}-clean-f1-vs-time`,
      runs.map((r) => ({
        label: runName(r),
        color: methodOf(sec, r)?.color ?? '#333333',
        points: r.evals.filter((e) => e.metrics.cleanF1 !== undefined).map((e) => [e.time, e.metrics.cleanF1] as [number, number]),
      })),
      { title: `${short}: F1 of the clean-sample flags`, xLabel: 'training time (s)', yLabel: 'clean F1 (flag: weight > 0.5)', yScale: 'linear' },
    ),
  ]);
}

/**
 * The final main metric of each method over seeds (seed 0: the run without a protocol; seed k: protocol
 * `seed<k>`), with 95 % t-intervals over seeds, and every pair of methods compared by a paired t-test over the
 * seeds both completed (same seed = same class split and held-out tasks).
 */
export function seedComparison(section: SectionSetting, runs: readonly RunResult[]): string {
  const seedOf = (r: RunResult): number | undefined =>
    r.protocol === undefined ? 0 : /^seed(\d+)$/.test(r.protocol) ? Number(r.protocol.slice(4)) : undefined;
  const labels = [...new Set(section.methods.map((m) => m.label))];
  const seeds = [...new Set(runs.map(seedOf).filter((v): v is number => v !== undefined))].sort((a, b) => a - b);
  if (seeds.length < 2) return '';
  const value = (label: string, seed: number): number | undefined => {
    const r = runs.find((x) => x.label === label && seedOf(x) === seed && x.status === 'completed');
    const v = r ? metricOf(finalEval(r), section.mainMetric) : undefined;
    return v !== undefined && Number.isFinite(v) ? v : undefined;
  };
  const rows = labels.map((label) => {
    const vs = seeds.map((sd) => value(label, sd));
    const ok = vs.filter((v): v is number => v !== undefined);
    const m = ok.length ? meanCi95(ok) : undefined;
    return [
      label,
      ...vs.map((v) => metricText(section, v)),
      m ? `${metricText(section, m.mean)}${Number.isFinite(m.half) ? ` ± ${metricText(section, m.half)}` : ''}` : '—',
      String(ok.length),
    ];
  });
  const table = markdownTable(
    ['method', ...seeds.map((sd) => `seed ${sd}`), `mean ± 95 % interval over seeds`, 'seeds'],
    rows,
  );
  const pairs: string[][] = [];
  const significant: string[] = [];
  const notSignificant: string[] = [];
  for (let i = 0; i < labels.length; i++) {
    for (let j = i + 1; j < labels.length; j++) {
      const both = seeds.filter((sd) => value(labels[i], sd) !== undefined && value(labels[j], sd) !== undefined);
      if (both.length < 2) continue;
      const t = pairedTTest(
        both.map((sd) => value(labels[i], sd) as number),
        both.map((sd) => value(labels[j], sd) as number),
      );
      const name = `${labels[i]} − ${labels[j]}`;
      const diff = `${t.meanDifference >= 0 ? '+' : '−'}${metricText(section, Math.abs(t.meanDifference))}`;
      const yes = t.p < 0.05;
      (yes ? significant : notSignificant).push(`${name} (${diff}, p = ${formatNumber(t.p, 2)})`);
      pairs.push([name, diff, Number.isFinite(t.half) ? `± ${metricText(section, t.half)}` : '—', formatNumber(t.p, 2), String(t.n), yes ? '**yes**' : 'no']);
    }
  }
  return [
    `**Over seeds.** Final ${section.mainMetricTitle} of each method on ${seeds.length} seeds (each seed draws its own class ` +
      'split, initial backbone and held-out tasks, the same for every method), with the 95 % Student-t interval over seeds:',
    '',
    table,
    '',
    'Differences between methods, paired by seed (paired t-test, two-sided; with 3 seeds only large, consistent ' +
      'differences can reach significance):',
    '',
    markdownTable(['difference', 'mean', '95 % interval', 'p', 'seeds', 'significant at 5 %'], pairs),
    '',
    `Significant at 5 %: ${significant.length ? significant.join('; ') : 'none'}. Not significant: ${notSignificant.length ? notSignificant.join('; ') : 'none'}.`,
    '',
  ].join('\n');
}

function fewShotSection(n: number, o: SectionOutcome, figs: FigureWriter): SectionText {
  const all = o.runs;
  o = { ...o, runs: all.filter((r) => r.protocol === undefined) };
  const s = o.setting;
  const p = s.problem.options as { evalEpisodes: number; testAlphabets: string[] };
  const intro =
    'Few-shot meta-learning, ANIL-style (the ESJ paper\'s headline experiment, here with Conv-4 on Omniglot; settings of ' +
    '`examples/few-shot-omniglot.yaml`): the backbone is the outer variable, each task\'s linear head the inner one (20 gradient ' +
    'steps of 0.05 from zero), 4 tasks of 5-way 1-shot with 5 queries per class per outer step, Adam (0.003) on the backbone. ' +
    `Query accuracy on ${int(p.evalEpisodes)} fixed held-out tasks (alphabets ${p.testAlphabets.join(', ')} held out; a head fitted ` +
    `on each task's support features), evaluated every ${seconds(s.evalIntervalSeconds)} s of training time and at the end; ± is the ` +
    `95 % confidence half-width over tasks. Each method trains for ${seconds(s.timeLimitSeconds)} s of training time.`;
  const body = timeBudgetSection(n, o, figs, intro, 'Few-shot Conv-4, Omniglot 5-way 1-shot', () => []).body;
  const seedsText = seedComparison(s, all);
  const firstTable = body.indexOf('Oracle calls (cumulative');
  const esjNote =
    'The authors\' ESJ draws one unit direction per tensor and does not rescale it, so in expectation its estimate is ∇ₓf plus ' +
    'the Jacobian term divided by the tensor\'s size: compare it with the ∇ₓf-only row (first-order ANIL). ESJ (unbiased) ' +
    'rescales the same direction by the tensor sizes, which makes it unbiased and very noisy.';
  const extra = `${esjNote}\n\n${seedsText}`;
  return {
    body: firstTable >= 0 ? `${body.slice(0, firstTable)}${extra}\n${body.slice(firstTable)}` : `${body}\n${extra}`,
  };
}

function benchoptSection(heading: string, o: SectionOutcome, figs: FigureWriter, quick: boolean): SectionText {
  const s = o.setting;
  const labels = [...new Set(s.methods.filter((m) => m.tuned).map((m) => m.label))];
  const tuned = o.runs.filter((r) => r.protocol?.startsWith('seed') && r.status === 'completed');
  const byMethod = new Map(labels.map((l) => [l, tuned.filter((r) => r.label === l)]));
  const fig = figs.chart('benchopt-test-error-vs-time', bandSeries(s, byMethod, s.timeLimitSeconds ?? 0), {
    title: 'benchopt hyper-cleaning: test error vs training time (median, 20–80 % quantiles over seeds)',
    xLabel: 'training time (s)',
    yLabel: 'test error',
    yScale: 'linear',
  });
  const body = [
    `${heading} ${s.title}`,
    '',
    benchoptText(s, o.runs, image(fig), quick),
    'Oracle calls (cumulative, by kind), time and memory of the tuned runs:',
    '',
    resourceTable(o.runs.filter((r) => r.protocol?.startsWith('seed'))),
    failures(o.runs),
  ].join('\n');
  return { body };
}

function benchoptHoSection(heading: string, o: SectionOutcome, figs: FigureWriter, quick: boolean): SectionText {
  const s = o.setting;
  if (!o.libsvm) return { body: `${heading} ${s.title}\n\n**Not run:** the LIBSVM files' sizes are missing from the results.\n` };
  const fig = figs.chart('benchopt-ho-value-function-vs-time', valueFunctionSeries(s, o.runs), {
    title: 'Per-feature L2 on a LIBSVM file: h(x) vs training time (median, 20–80 % quantiles over seeds)',
    xLabel: 'training time (s)',
    yLabel: 'h(x) = f(x, y*(x))',
    yScale: 'auto',
  });
  const body = [
    `${heading} ${s.title}`,
    '',
    benchoptHoText(s, o.runs, image(fig), quick, o.libsvm),
    'Oracle calls (cumulative, by kind), time and memory of the tuned runs:',
    '',
    resourceTable(o.runs.filter((r) => r.protocol?.startsWith('seed'))),
    failures(o.runs),
  ].join('\n');
  return { body };
}

/**
 * Sections written between markers: a run of such sections alone (they are long) replaces just their blocks in
 * an existing report, and their own figures (and JSON).
 */
const BLOCKS = {
  benchopt: {
    begin: '<!-- benchopt-section:begin (written by the suite; `--only benchopt` rewrites just this block) -->',
    end: '<!-- benchopt-section:end -->',
    figures: /^benchopt-(?!ho-).*\.(svg|png)$/,
    json: 'benchopt-results.json',
    text: benchoptSection,
  },
  'benchopt-ho': {
    begin: '<!-- benchopt-ho-section:begin (written by the suite; `--only benchopt-ho` rewrites just this block) -->',
    end: '<!-- benchopt-ho-section:end -->',
    figures: /^benchopt-ho-.*\.(svg|png)$/,
    json: 'benchopt-ho-results.json',
    text: benchoptHoSection,
  },
} as const;
type BlockId = keyof typeof BLOCKS;
const isBlock = (id: string): id is BlockId => id in BLOCKS;

/** A block section's text between its markers (a skipped one says why). */
function blockText(id: BlockId, heading: string, o: SectionOutcome, figs: FigureWriter, quick: boolean): string {
  const b = BLOCKS[id];
  const body = o.skipped ? skippedSection(heading, o).body : b.text(heading, o, figs, quick).body;
  return [b.begin, body, b.end, ''].join('\n');
}

/** The run's header in short, for a section written into an existing report on its own. */
function blockHeader(report: SuiteReport): string {
  const backends = new Set<string>();
  for (const sec of report.sections) for (const r of sec.runs) if (r.backend) backends.add(`\`${r.backend.name}\` — ${r.backend.reason}`);
  const load = (l: readonly number[]): string => l.map((v) => v.toFixed(2)).join(' / ');
  return (
    `_This section comes from its own run (\`${report.command}\`), ${report.startedAt.toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC')}, ` +
    `${duration(report.totalSeconds)}; backend ${[...backends].join('; ') || 'none'}; load average (1 / 5 / 15 min) ` +
    `${load(report.loadAverageStart)} at the start, ${load(report.loadAverageEnd)} at the end. The machine (${os.cpus().length} cores) ` +
    'was shared with other jobs during the run, so the time axis is slower than on an idle machine and varies between runs._'
  );
}

// ————— the document —————

function header(report: SuiteReport): string {
  const cpus = os.cpus();
  const model = cpus.length > 0 ? cpus[0].model.trim() : 'unknown CPU';
  const backends = new Map<string, string>();
  for (const sec of report.sections) for (const r of sec.runs) if (r.backend) backends.set(r.backend.name, r.backend.reason);
  for (const r of report.speed?.rows ?? []) if (r.bilevel.backend) backends.set(r.bilevel.backend.name, r.bilevel.backend.reason);
  const backendText =
    backends.size === 0
      ? `none started (every section skipped); requested \`${report.backendChoice}\``
      : [...backends.entries()].map(([name, reason]) => `\`${name}\` — ${reason}`).join('; ') +
        (backends.size > 1 ? ' (**different workers ran different backends**)' : '') +
        ` (requested: \`${report.backendChoice}\`)`;
  const load = (l: readonly number[]): string => l.map((v) => v.toFixed(2)).join(' / ');
  const rows = [
    ['date', `${report.startedAt.toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC')}`],
    [
      'machine',
      `${cpus.length} × ${model}; ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB memory; ${os.type()} ${os.release()} (${os.arch()})`,
    ],
    ['load average (1 / 5 / 15 min)', `${load(report.loadAverageStart)} at the start, ${load(report.loadAverageEnd)} at the end`],
    ['node', process.version],
    ['tfjs', `@tensorflow/tfjs-core ${tf.version_core}`],
    ['backend', backendText],
    ['total suite time', `${duration(report.totalSeconds)} (${formatDuration(report.totalSeconds)})`],
    ['command', `\`${report.command}\`${report.command.endsWith('run.js') ? ' (what `npm run bench` runs)' : ''}`],
    ['mode', report.quick ? '**quick** (smaller problems and budgets; a smoke test, not results)' : 'full'],
  ];
  return [
    '# Benchmarks',
    '',
    'Generated by the benchmark suite in `tools/bench` (see its README); every table, figure and statement below comes from ' +
      'the run described here. Do not edit by hand: rerun the suite.',
    '',
    markdownTable(['', ''], rows),
    '',
    '**How to read it.** Each method of each setting runs in its own process, one after another, on the backend above. ' +
      '*Training time* is the core trainer\'s elapsed time — inner solves, hypergradient estimates and outer updates — and is ' +
      'what the time budgets and the time axes count; evaluations (an inner solve at the current x and the problem\'s metrics, ' +
      'like the trainer\'s own final evaluation) are not charged. *Wall time* is the whole worker, set-up (data loading) and ' +
      'evaluations included. *Oracle calls* are counted by core\'s oracles, by kind: g, ∇_y g, ∇ₓg, f, ∇f (f with ∇ₓf and ∇_y f ' +
      'from one pass), Hessian-vector products ∇²_yy g·v and mixed products ∇²ₓᵧg·v; evaluations are not counted. *RSS* is the ' +
      'worker\'s resident set: at the start of training (problem and data built), the largest value sampled after each outer ' +
      'step, and in parentheses the process\'s high-water mark (set-up and evaluations included). *Tensor MB* comes from the ' +
      'tfjs engine: `tf.memory().numBytes` after the outer steps (data, x, y and plugin state), its high-water mark within the ' +
      'steps (every tensor allocation observed; numBytes counts a reshape or other view of a buffer again), and the ' +
      'high-water mark of the distinct data buffers (views counted once). The machine is shared with other jobs (see the load average), ' +
      'so times are upper bounds and vary between runs; compare methods within a setting.',
    '',
  ].join('\n');
}

/**
 * A run of block sections alone (benchopt, benchopt-ho) into an existing report: replaces each one's block (or
 * appends it) and its figures, leaving the rest of benchmarks.md and the other figures as they are.
 */
async function writeBlocks(report: SuiteReport, outcomes: readonly SectionOutcome[], options: WriteOptions, mdPath: string, figDir: string): Promise<string[]> {
  const figs = new FigureWriter(figDir, options.png);
  let md = fs.readFileSync(mdPath, 'utf8');
  const jsons: string[] = [];
  for (const o of outcomes) {
    const id = o.setting.id as BlockId;
    const b = BLOCKS[id];
    for (const f of fs.readdirSync(figDir)) if (b.figures.test(f)) fs.rmSync(path.join(figDir, f));
    // the run's header for measured numbers (a skipped section has none)
    const text = blockText(id, '##', o, figs, report.quick);
    const block = (o.skipped ? text : text.replace(/^(<!--.*-->\n## .*)\n/, `$1\n\n${blockHeader(report)}\n`)).replace(/\n$/, '');
    const begin = md.indexOf(b.begin);
    const end = md.indexOf(b.end);
    md = begin >= 0 && end > begin ? `${md.slice(0, begin)}${block}${md.slice(end + b.end.length)}` : `${md.replace(/\s*$/, '')}\n\n${block}\n`;
    if (options.json) {
      const json = path.join(figDir, b.json);
      const one = { ...report, sections: [o] };
      fs.writeFileSync(json, JSON.stringify(one, (_k, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? String(v) : v)));
      jsons.push(json);
    }
  }
  fs.writeFileSync(mdPath, md.replace(/\n{3,}/g, '\n\n'));
  const figures = await figs.done();
  return [mdPath, ...figures, ...jsons];
}

/** Writes benchmarks.md and the figures; returns the files written. */
export async function writeReport(report: SuiteReport, options: WriteOptions): Promise<string[]> {
  const figDir = path.join(options.outDir, 'benchmarks');
  const mdPath = path.join(options.outDir, 'benchmarks.md');
  // Only block sections: their blocks go into the existing report (a skipped one says why in its block).
  const blocksOnly = report.sections.length > 0 && !report.speed && report.sections.every((o) => isBlock(o.setting.id));
  if (blocksOnly && fs.existsSync(mdPath)) {
    fs.mkdirSync(figDir, { recursive: true });
    return writeBlocks(report, report.sections, options, mdPath, figDir);
  }
  // Figures of an earlier run that this one does not redraw (a skipped section) must not linger.
  if (fs.existsSync(figDir)) {
    for (const f of fs.readdirSync(figDir)) {
      if (/\.(svg|png)$/.test(f) || f === 'results.json') fs.rmSync(path.join(figDir, f));
    }
  }
  const figs = new FigureWriter(figDir, options.png);
  const parts: string[] = [header(report)];
  const toc: string[] = [];
  report.sections.forEach((o, i) => {
    const n = i + 1;
    toc.push(`${n}. ${o.setting.title}${o.skipped ? ' — skipped' : ''}`);
    const id = o.setting.id;
    if (isBlock(id)) {
      parts.push(blockText(id, `## ${n}.`, o, figs, report.quick));
      return;
    }
    if (o.skipped) {
      parts.push(skippedSection(`## ${n}.`, o).body);
      return;
    }
    switch (id) {
      case 'quadratic':
        parts.push(quadraticSection(n, o, figs).body);
        break;
      case 'hyper-representation':
        parts.push(hyperRepresentationSection(n, o, figs, report.quick).body);
        break;
      case 'hyper-cleaning':
        parts.push(hyperCleaningSection(n, o, figs).body);
        break;
      case 'few-shot':
        parts.push(fewShotSection(n, o, figs).body);
        break;
    }
  });
  if (report.speed) {
    const n = report.sections.length + 1;
    toc.push(`${n}. Speed: Bilevel and PyTorch on the same workloads`);
    parts.push(speedSection(n, report.speed, report.quick));
  }
  parts.splice(1, 0, ['## Contents', '', ...toc, ''].join('\n'));
  const md = parts.join('\n').replace(/\n{3,}/g, '\n\n');
  fs.mkdirSync(options.outDir, { recursive: true });
  const mdFile = path.join(options.outDir, 'benchmarks.md');
  fs.writeFileSync(mdFile, md.endsWith('\n') ? md : `${md}\n`);
  const figures = await figs.done();
  if (!options.json) return [mdFile, ...figures];
  const json = path.join(figDir, 'results.json');
  fs.writeFileSync(json, JSON.stringify(report, (_k, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? String(v) : v)));
  return [mdFile, ...figures, json];
}
