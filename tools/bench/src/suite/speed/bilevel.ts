/**
 * The Bilevel side of a speed workload, run in its own worker process: builds the pipeline (or network, or
 * tensors) as a user would, runs the warm-up steps, then times each of the K steps with `performance.now()`
 * around `trainer.stepOnce()` (or the call measured). When asked, it also writes the problem's data for the
 * twin (see data-files.ts), so both sides work on the same numbers.
 */
import * as os from 'os';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend, type BackendChoice } from '@bilevel/backend';
import { type BilevelProblem, DataError, ORACLE_KINDS, Random, createPipeline } from '@bilevel/core';
import '@bilevel/solvers';
import '@bilevel/estimators';
import { QuadraticProblem, loadDenseSplits } from '@bilevel/problems';
import { createBackbone } from '@bilevel/meta-learning';
import { corruptLabels } from '@bilevel/datasets';
import { type ArrayEntry, writeArrays } from './data-files';
import { type BilevelSpeedResult, type Pace, type SpeedTask, runTimed } from './results';
import {
  type MicroWorkload,
  type NetworkWorkload,
  type PipelineWorkload,
  type SpeedWorkload,
  speedWorkloads,
} from './workloads';

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/**
 * Threads the backend computes with, from what `initBackend` says (e.g. `OpenBLAS 0.3.21 (Haswell), 2 threads`);
 * tensorflow uses every processor; the plain JS backend one.
 */
export function backendThreads(name: string, detail: string): number {
  const m = /(\d+) threads?\b/.exec(detail);
  if (m) return Number(m[1]);
  if (name === 'tensorflow' || name === 'cpu-blas') return os.cpus().length;
  return 1;
}

interface Timed {
  readonly timesMs: number[];
  readonly checks: Record<string, number>;
  readonly setupSeconds: number;
}

/** The quadratic's A (float32, as the problem holds it), z₀ and x* (float64) for the twin. */
function quadraticArrays(p: QuadraticProblem): ArrayEntry[] {
  const n = p.dimension;
  return [
    { name: 'A', dtype: 'float32', shape: [n, n], data: Float32Array.from(p.a) },
    { name: 'z0', dtype: 'float32', shape: [n], data: Float32Array.from(p.z0) },
    { name: 'xStar', dtype: 'float64', shape: [n], data: p.optimalXArray() },
  ];
}

/** The hyper-cleaning data exactly as the problem builds it (same split, same corrupted labels). */
function hyperCleaningArrays(options: Record<string, unknown>): ArrayEntry[] {
  const o = options as { trainSamples: number; validationSamples: number; corruptionRate: number; seed: number; innerL2: number };
  const splits = loadDenseSplits({
    dataset: 'fashion-mnist',
    trainSamples: o.trainSamples,
    validationSamples: o.validationSamples,
    testSamples: 0,
    seed: o.seed,
    synthetic: { features: 20, classes: 3, separation: 3, noise: 1 },
  });
  const noisy = corruptLabels(splits.train.labels, splits.train.classes, { rate: o.corruptionRate, seed: o.seed + 7 });
  const t = splits.train;
  const v = splits.validation;
  return [
    { name: 'trainX', dtype: 'float32', shape: [t.count, t.dimension], data: t.inputs },
    { name: 'trainY', dtype: 'int32', shape: [t.count], data: Int32Array.from(noisy.labels) },
    { name: 'validX', dtype: 'float32', shape: [v.count, v.dimension], data: v.inputs },
    { name: 'validY', dtype: 'int32', shape: [v.count], data: Int32Array.from(v.labels) },
  ];
}

/** The tensors of a tree as float32 arrays (copies), named `<prefix><name>`. */
function treeArrays(prefix: string, tree: Readonly<Record<string, tf.Tensor>>): ArrayEntry[] {
  return Object.keys(tree).map((n) => ({
    name: `${prefix}${n}`,
    dtype: 'float32' as const,
    shape: tree[n].shape,
    data: Float32Array.from(tree[n].dataSync()),
  }));
}

/**
 * Keeps (a clone of) every task batch the problem draws, in order, so the twin can replay them. A clone shares
 * the batch's data, so the timed steps do no extra work beyond it.
 */
function recordTasks(problem: BilevelProblem, into: Record<string, tf.Tensor>[]): void {
  const sample = problem.sampleTask?.bind(problem);
  if (!sample) return;
  problem.sampleTask = (rng) => {
    const batch = sample(rng);
    const kept: Record<string, tf.Tensor> = {};
    for (const k of Object.keys(batch)) kept[k] = tf.keep(tf.clone(batch[k]));
    into.push(kept);
    return batch;
  };
}

async function timePipeline(
  w: SpeedWorkload,
  spec: PipelineWorkload,
  twinDataDir: string | undefined,
  pace: Pace | undefined,
): Promise<Timed> {
  const setupStart = performance.now();
  const pipeline = createPipeline({
    problem: spec.problem,
    innerSolver: spec.innerSolver,
    estimator: spec.estimator,
    outerOptimizer: spec.outerOptimizer,
    // No metrics or closed-form comparisons inside the steps: only the method's own work is timed.
    trainer: { steps: 1_000_000, evalEvery: 0, closedFormDiagnostics: false, warmStart: spec.warmStart },
    seed: 0,
  });
  // Few-shot: the twin replays the tasks drawn here, from the same initial backbone.
  const tasks: Record<string, tf.Tensor>[] = [];
  const entries: ArrayEntry[] = [];
  try {
    // The trainer's one-time check of the problem (it draws a task of its own) before anything is recorded.
    pipeline.trainer.preflight();
    if (twinDataDir) {
      if (pipeline.problem instanceof QuadraticProblem) entries.push(...quadraticArrays(pipeline.problem));
      else if (spec.problem.name === 'hyper-cleaning') entries.push(...hyperCleaningArrays(spec.problem.options));
      else if (spec.problem.name === 'few-shot') {
        entries.push(...treeArrays('param:', pipeline.trainer.x));
        recordTasks(pipeline.problem, tasks);
      }
    }
    const setupSeconds = (performance.now() - setupStart) / 1000;
    const trainer = pipeline.trainer;
    const checks: Record<string, number> = {};
    const xError = (): number =>
      pipeline.problem instanceof QuadraticProblem ? pipeline.problem.evaluate(trainer.x, trainer.y).xRelativeError : NaN;
    let outerLoss = NaN;
    const record = (loss: number): void => {
      // The first step's outer loss: both sides at the same x₀ (and, for few-shot, the same task).
      if (trainer.step === 1) checks.outerLossFirst = loss;
      outerLoss = loss;
    };
    for (let i = 0; i < w.warmup; i++) record(trainer.stepOnce().outerLoss);
    // Before the float32 floor: ‖x − x*‖/‖x*‖ after the warm-up steps (not timed).
    if (pipeline.problem instanceof QuadraticProblem) checks.xRelativeErrorWarmup = xError();
    // Interleaved with the twin, which starts once this side is ready: its data must be complete by then
    // (few-shot tasks are drawn while timing, so that family runs side after side).
    if (pace && spec.problem.name === 'few-shot') throw new Error('few-shot workloads cannot run interleaved');
    let written = false;
    if (pace && twinDataDir && entries.length > 0) {
      writeArrays(twinDataDir, entries);
      written = true;
    }
    const timesMs = await runTimed(
      () => {
        const t0 = performance.now();
        const e = trainer.stepOnce();
        const ms = performance.now() - t0;
        record(e.outerLoss);
        return ms;
      },
      w.steps,
      pace,
    );
    checks.outerLoss = outerLoss;
    if (pipeline.problem instanceof QuadraticProblem) checks.xRelativeError = xError();
    checks.oracleCalls = ORACLE_KINDS.reduce((n, k) => n + pipeline.oracles.counts[k], 0);
    tasks.forEach((t, i) => entries.push(...treeArrays(`step${i}:`, t)));
    if (twinDataDir && entries.length > 0 && !written) writeArrays(twinDataDir, entries);
    return { timesMs, checks, setupSeconds };
  } finally {
    for (const t of tasks) tf.dispose(Object.values(t));
    pipeline.dispose();
  }
}

/**
 * Forward in training mode (batch statistics) and backward of ½·mean over images of ‖φ(image)‖², with
 * respect to every parameter; the loss is read back.
 */
async function timeNetwork(
  w: SpeedWorkload,
  spec: NetworkWorkload,
  twinDataDir: string | undefined,
  pace: Pace | undefined,
): Promise<Timed> {
  const setupStart = performance.now();
  const backbone = createBackbone(spec.backbone.name, {
    ...spec.backbone.options,
    imageSize: spec.imageSize,
    channels: spec.channels,
  });
  const rng = new Random(0);
  const params = tf.tidy(() => backbone.initialParameters(rng.fork('parameters')));
  const names = Object.keys(params);
  const list = names.map((n) => params[n]);
  const images = tf.tidy(
    () => rng.fork('images').normalTensor([spec.images, spec.imageSize, spec.imageSize, spec.channels]) as tf.Tensor4D,
  );
  try {
    if (twinDataDir) {
      const entries: ArrayEntry[] = [
        { name: 'images', dtype: 'float32', shape: images.shape, data: images.dataSync() as Float32Array },
      ];
      for (const n of names) entries.push({ name: `param:${n}`, dtype: 'float32', shape: params[n].shape, data: params[n].dataSync() as Float32Array });
      writeArrays(twinDataDir, entries);
    }
    const setupSeconds = (performance.now() - setupStart) / 1000;
    const lossOf = (...ps: tf.Tensor[]): tf.Scalar => {
      const tree: Record<string, tf.Tensor> = {};
      names.forEach((n, i) => (tree[n] = ps[i]));
      const features = backbone.forward(tree, images, { training: true });
      return tf.div(tf.sum(tf.square(features)), 2 * spec.images) as tf.Scalar;
    };
    const step = (): { loss: number; gradNorm: number } => {
      return tf.tidy(() => {
        const { value, grads } = tf.valueAndGrads(lossOf)(list);
        const sq = tf.addN(grads.map((g) => tf.sum(tf.square(g))));
        const [loss, g2] = tf.stack([value, sq]).dataSync();
        return { loss, gradNorm: Math.sqrt(g2) };
      });
    };
    for (let i = 0; i < w.warmup; i++) step();
    let last = { loss: NaN, gradNorm: NaN };
    const timesMs = await runTimed(
      () => {
        const t0 = performance.now();
        last = step();
        return performance.now() - t0;
      },
      w.steps,
      pace,
    );
    return { timesMs, checks: { loss: last.loss, gradientNorm: last.gradNorm }, setupSeconds };
  } finally {
    tf.dispose([...list, images]);
  }
}

/** Per-call milliseconds of one op, timed over `repeats` calls per sample. */
async function timeMicro(w: SpeedWorkload, spec: MicroWorkload, pace: Pace | undefined): Promise<Timed> {
  const rng = new Random(0);
  const n = spec.size;
  const shape = spec.op === 'sgemm' ? [n, n] : [n];
  const a = rng.normalTensor(shape);
  const b = rng.normalTensor(shape);
  let checksum = 0;
  const call =
    spec.op === 'sgemm'
      ? () => tf.matMul(a as tf.Tensor2D, b as tf.Tensor2D).dispose()
      : spec.op === 'add'
        ? () => tf.add(a, b).dispose()
        : () => {
            const d = tf.dot(a as tf.Tensor1D, b as tf.Tensor1D);
            checksum = d.dataSync()[0];
            d.dispose();
          };
  try {
    const sample = (): number => {
      const t0 = performance.now();
      for (let r = 0; r < spec.repeats; r++) call();
      return (performance.now() - t0) / spec.repeats;
    };
    for (let i = 0; i < w.warmup; i++) sample();
    const timesMs = await runTimed(sample, w.steps, pace);
    const checks: Record<string, number> = spec.op === 'dot-read' ? { dot: checksum } : {};
    return { timesMs, checks, setupSeconds: 0 };
  } finally {
    tf.dispose([a, b]);
  }
}

/** Runs one workload's Bilevel side; never throws (a failure is reported). */
export async function runSpeedTask(task: SpeedTask, pace?: Pace): Promise<BilevelSpeedResult> {
  const w = speedWorkloads({ quick: task.quick, steps: task.steps }).find((x) => x.id === task.workload);
  if (!w) return { status: 'failed', error: `unknown workload '${task.workload}'`, timesMs: [], checks: {} };
  let backend: BilevelSpeedResult['backend'];
  let threads: number | undefined;
  try {
    const selection = await initBackend({ backend: task.backend as BackendChoice, log: () => undefined });
    backend = { name: selection.name, reason: selection.reason };
    threads = backendThreads(selection.name, selection.detail);
    pace?.describe?.({ backend, threads });
    // The meta-learning plugins register a backbone kind and the few-shot problem; problems the rest.
    await import('@bilevel/problems');
    await import('@bilevel/meta-learning');
    const spec = w.spec;
    const timed =
      spec.kind === 'pipeline'
        ? await timePipeline(w, spec, task.twinDataDir, pace)
        : spec.kind === 'network'
          ? await timeNetwork(w, spec, task.twinDataDir, pace)
          : await timeMicro(w, spec, pace);
    return {
      status: 'completed',
      ...timed,
      backend,
      threads,
      ...(task.twinDataDir && (spec.kind === 'network' || hasTwinData(spec)) ? { twinData: task.twinDataDir } : {}),
    };
  } catch (e) {
    const status = e instanceof DataError || (e as { cause?: unknown }).cause instanceof DataError ? 'skipped' : 'failed';
    return { status, error: errorText(e), timesMs: [], checks: {}, backend, threads };
  }
}

function hasTwinData(spec: PipelineWorkload | MicroWorkload): boolean {
  return spec.kind === 'pipeline' && ['quadratic', 'hyper-cleaning', 'few-shot'].includes(spec.problem.name);
}
