/**
 * The speed section of docs/benchmarks.md (and the table printed to the terminal): per workload the median
 * and the fastest step on each side, their ratio, and what both sides computed (so a reader sees that the
 * twins do the same work).
 */
import { markdownTable } from '@bilevel/cli';
import type { SpeedOutcome, SpeedRow } from './section';
import { type SpeedSideResult, median, minimum } from './results';
import { openBlasCoreOf, torchMissingText } from './torch';
import { type SpeedWorkload, microFlops } from './workloads';

/** Milliseconds with 3 significant digits (at least one decimal below 100). */
export function formatMs(v: number): string {
  if (!Number.isFinite(v)) return '—';
  if (v >= 100) return v.toFixed(0);
  if (v >= 1) return v.toPrecision(3);
  if (v >= 0.001) return v.toPrecision(2);
  return v.toExponential(1);
}

function num(v: number | undefined): string {
  if (v === undefined || !Number.isFinite(v)) return '—';
  if (Number.isInteger(v)) return v.toLocaleString('en-US');
  const a = Math.abs(v);
  return a !== 0 && (a < 1e-3 || a >= 1e5) ? v.toExponential(3) : v.toPrecision(4);
}

function sideCell(r: SpeedSideResult | undefined, missing: string): string {
  if (!r) return missing;
  if (r.status !== 'completed') return `${r.status}${r.error ? `: ${r.error}` : ''}`;
  return `${formatMs(median(r.timesMs))} (min ${formatMs(minimum(r.timesMs))})`;
}

/** Bilevel's median over PyTorch's, or — when either side has no time. */
export function ratio(row: SpeedRow): number | undefined {
  if (row.bilevel.status !== 'completed' || row.torch?.status !== 'completed') return undefined;
  const a = median(row.bilevel.timesMs);
  const b = median(row.torch.timesMs);
  return Number.isFinite(a) && Number.isFinite(b) && b > 0 ? a / b : undefined;
}

function ratioText(v: number | undefined): string {
  if (v === undefined) return '—';
  return v >= 10 ? v.toFixed(0) : v.toFixed(2);
}

/** What both sides computed, side by side ("Bilevel vs PyTorch"). */
export function agreementText(
  w: SpeedWorkload,
  bilevel: SpeedSideResult,
  torch: SpeedSideResult | undefined,
): string {
  const both = (key: string, title: string): string | undefined => {
    const a = bilevel.checks[key];
    const b = torch?.checks[key];
    if (a === undefined && b === undefined) return undefined;
    return torch && torch.status === 'completed' ? `${title} ${num(a)} vs ${num(b)}` : `${title} ${num(a)}`;
  };
  const parts: (string | undefined)[] = [];
  const spec = w.spec;
  if (spec.kind === 'micro') {
    const flops = microFlops(spec);
    if (flops !== undefined) {
      const g = (r: SpeedSideResult | undefined) =>
        r && r.status === 'completed' ? (flops / (median(r.timesMs) * 1e-3) / 1e9).toFixed(1) : undefined;
      const a = g(bilevel);
      const b = g(torch);
      if (a !== undefined) parts.push(b !== undefined ? `GFLOP/s ${a} vs ${b}` : `GFLOP/s ${a}`);
    }
  } else if (spec.kind === 'network') {
    parts.push(both('loss', 'loss'), both('gradientNorm', '‖∇‖'));
  } else {
    const last = w.warmup + w.steps;
    if (spec.problem.name === 'quadratic') {
      const warm =
        w.warmup > 0
          ? both('xRelativeErrorWarmup', `‖x − x*‖/‖x*‖ after ${w.warmup} step${w.warmup === 1 ? '' : 's'}`)
          : undefined;
      parts.push(warm, both('xRelativeError', warm ? `after ${last}` : `‖x − x*‖/‖x*‖ after ${last} steps`));
    } else {
      const first = both('outerLossFirst', 'outer loss at step 1');
      parts.push(first, both('outerLoss', first ? `at step ${last}` : `outer loss at step ${last}`));
    }
    parts.push(both('oracleCalls', 'oracle calls'));
  }
  return parts.filter((p): p is string => p !== undefined).join('; ') || '—';
}

/** The section's table. */
export function speedTable(outcome: SpeedOutcome): string {
  const missing = torchMissingText(outcome.torch);
  const rows = outcome.rows.map((r) => [
    r.workload.label,
    sideCell(r.bilevel, '—'),
    sideCell(r.torch, missing),
    ratioText(ratio(r)),
    agreementText(r.workload, r.bilevel, r.torch),
    r.load
      ? [r.load.bilevel, r.load.torch]
          .filter((v): v is number => v !== undefined)
          .map((v) => v.toFixed(1))
          .join(' / ') + (r.interleaved ? ' (interleaved)' : '')
      : '—',
  ]);
  return markdownTable(
    [
      'workload',
      'Bilevel ms (median, min)',
      'PyTorch ms (median, min)',
      'Bilevel ÷ PyTorch',
      'Bilevel vs PyTorch: computed',
      'load',
    ],
    rows,
  );
}

function backendOf(outcome: SpeedOutcome): { name: string; reason: string; threads?: number } | undefined {
  const r = outcome.rows.find((x) => x.bilevel.backend);
  return r?.bilevel.backend ? { ...r.bilevel.backend, threads: r.bilevel.threads } : undefined;
}

/** One line on the backend, threads and PyTorch (also printed to the terminal). */
export function speedEnvironment(outcome: SpeedOutcome): string {
  const b = backendOf(outcome);
  const backend = b
    ? `Bilevel on \`${b.name}\` (${b.reason}), ${b.threads ?? '?'} thread${b.threads === 1 ? '' : 's'}`
    : 'no Bilevel worker started';
  const torch = outcome.torch.found
    ? `PyTorch ${outcome.torch.version} (\`${outcome.torch.python}\`), CPU, float32, torch.set_num_threads(${b?.threads ?? '?'})${
        openBlasCoreOf(b?.reason)
          ? `, OPENBLAS_CORETYPE=${openBlasCoreOf(b?.reason)} (the kernels the Bilevel side ran on)`
          : ''
      }`
    : torchMissingText(outcome.torch);
  const load = (l: readonly number[]) => l.map((v) => v.toFixed(2)).join(' / ');
  return `${backend}; ${torch}. Load average (1 / 5 / 15 min): ${load(outcome.loadAverageStart)} at the start, ${load(outcome.loadAverageEnd)} at the end.`;
}

function failures(outcome: SpeedOutcome): string {
  const lines: string[] = [];
  for (const r of outcome.rows) {
    for (const [side, res] of [
      ['Bilevel', r.bilevel],
      ['PyTorch', r.torch],
    ] as const) {
      if (res && res.status !== 'completed' && res.status !== 'skipped')
        lines.push(`- **${r.workload.label}**, ${side}: ${res.status} — ${res.error ?? 'no message'}`);
    }
  }
  return lines.length ? `${lines.join('\n')}\n` : '';
}

function settingsText(w: SpeedWorkload): string {
  const o = (x: Record<string, unknown>) =>
    Object.entries(x)
      .map(([k, v]) => `${k} ${typeof v === 'object' ? JSON.stringify(v) : String(v)}`)
      .join(', ');
  const s = w.spec;
  const steps = `${w.warmup} warm-up, ${w.steps} timed`;
  if (s.kind === 'pipeline') {
    return (
      `- **${w.label}** (\`${w.id}\`): problem \`${s.problem.name}\` {${o(s.problem.options)}}; inner \`${s.innerSolver.name}\` {${o(s.innerSolver.options)}}; ` +
      `estimator \`${s.estimator.name}\` {${o(s.estimator.options)}}; outer \`${s.outerOptimizer.name}\` {${o(s.outerOptimizer.options)}}; ` +
      `${s.warmStart ? 'warm-started inner solves' : 'every inner solve from the initial y'}; ${steps} outer steps`
    );
  }
  if (s.kind === 'network') {
    return `- **${w.label}** (\`${w.id}\`): backbone \`${s.backbone.name}\`, ${s.images} images ${s.imageSize}×${s.imageSize}×${s.channels}; ${steps} steps`;
  }
  return `- **${w.label}** (\`${w.id}\`): ${s.repeats} calls per sample, ${steps} samples`;
}

/** The whole section (heading number `n`). */
export function speedSection(n: number, outcome: SpeedOutcome, quick: boolean): string {
  return [
    `## ${n}. Speed: Bilevel and PyTorch on the same workloads`,
    '',
    'Each workload runs on Bilevel (a worker process that builds the pipeline with `createPipeline` of `@bilevel/core`, as a ' +
      'user would) and on its PyTorch twin (`tools/bench/torch/*.py`: the same algorithm step for step, with autograd ' +
      'gradients and double-backward Hessian- and mixed-vector products, the same iteration counts, stopping rules and oracle ' +
      'calls), float32 on the CPU with the same number of threads, never both computing at once. For the quadratic, ' +
      'hyper-cleaning and ResNet-12 rows (marked "interleaved" in the load column) both sides are started, build their ' +
      'problem and warm up, then time alternating blocks of steps — Bilevel then PyTorch, then PyTorch then Bilevel, about ' +
      "six rounds, each block after one untimed step — so both sample the same minutes of the machine (a side's median alone " +
      'moved by up to 2× between runs minutes apart); few-shot (its twin replays the tasks drawn while timing) and the ' +
      'micro-kernels run one side after the other (`--speed-sequential` does so for every row). Times are wall clock per outer step ' +
      "(`performance.now()` around `trainer.stepOnce()`; `time.perf_counter()` around the twin's step, which also reads ‖∇Φ‖ " +
      'and the outer loss as the trainer does), after warm-up steps; the network workload times one forward and backward pass; ' +
      'micro-kernels are per call, averaged over a batch of calls per sample. The ratio is of the medians (above 1: Bilevel is ' +
      'slower).' +
      (quick ? ' **Quick mode: smaller sizes and fewer steps (a smoke test, not results).**' : ''),
    '',
    '**Do the twins compute the same thing?** The column "computed" shows what each side ended with. The Bilevel worker hands ' +
      'its data to the twin: for the quadratic A, z₀ and x* (both start from x₀ = y₀ = 0), so the deterministic methods (AID-CG, ' +
      'AID-FP, qNBO) end at the same ‖x − x*‖/‖x*‖ up to float32 rounding, while ESJ draws its own random directions on each ' +
      'side; for hyper-cleaning the same training and validation samples and corrupted labels; for ResNet-12 the same images ' +
      'and parameters (same loss and gradient norm); for few-shot the same initial backbone and the same synthetic tasks, ' +
      'replayed step by step. For the pipelines it also shows the oracle calls each side made (∇_y g, ∇f, Hessian- and ' +
      'mixed-vector products, counted as core counts them); a strong-Wolfe line search may take a different number of trials ' +
      "on the two sides once float32 rounding parts their paths. Where the twin's code differs from the library's: the L-BFGS operator is the textbook two-loop " +
      "recursion (the library's compact form applies the same operator with three matrix products); each Hessian- or " +
      "mixed-vector product differentiates a fresh ∇_y g, as the library's oracles do (keeping one graph across the products " +
      'of a linear solve with `retain_graph` would save a forward and a backward pass per product; it is not done, so both ' +
      'sides do the same work); the few-shot twin runs the backbone once per step on the ' +
      'support and once on the query images and keeps their graphs, where the library caches the features and reruns the ' +
      'forward pass inside each backward pass through the backbone.',
    '',
    "**Shared machine.** The last column gives the 1-minute load average when each side started (interleaved rows: when " +
      "the Bilevel side and the twin were started). PyTorch's OpenMP threads " +
      'slow down sharply when another process holds a core; a row whose ' +
      'load exceeds the number of cores is suspect: compare the fastest steps (min), or rerun it alone with `--workloads`.',
    '',
    speedEnvironment(outcome),
    '',
    speedTable(outcome),
    '',
    failures(outcome),
    '**Settings.**',
    '',
    ...outcome.rows.map((r) => settingsText(r.workload)),
    '',
  ].join('\n');
}
