/**
 * The `speed` section: fixed workloads timed on Bilevel and on a PyTorch twin (tools/bench/torch/*.py) that
 * runs the same algorithm step for step. Each workload is one table row. The definitions here are plain data
 * (no tfjs), shared by the suite, the Bilevel worker and the report; the twins receive the same settings as
 * JSON.
 */

/** The workload families; each has one twin script `torch/<script>.py`. */
export type SpeedFamily = 'quadratic' | 'hyper-cleaning' | 'resnet' | 'few-shot' | 'micro';
export const SPEED_FAMILIES: readonly SpeedFamily[] = ['quadratic', 'hyper-cleaning', 'resnet', 'few-shot', 'micro'];

/** A plugin by registered name, with options (as in a pipeline spec). */
export interface SpeedPlugin {
  readonly name: string;
  readonly options: Record<string, unknown>;
}

/** A bilevel pipeline timed per outer step. */
export interface PipelineWorkload {
  readonly kind: 'pipeline';
  readonly problem: SpeedPlugin;
  readonly innerSolver: SpeedPlugin;
  readonly estimator: SpeedPlugin;
  readonly outerOptimizer: SpeedPlugin;
  /** Start each inner solve from the previous y (core's default) or from the problem's initial y. */
  readonly warmStart: boolean;
}

/** ResNet-12 forward and backward on a batch of images. */
export interface NetworkWorkload {
  readonly kind: 'network';
  readonly backbone: SpeedPlugin;
  readonly images: number;
  readonly imageSize: number;
  readonly channels: number;
}

/** One tensor operation, timed per call. */
export interface MicroWorkload {
  readonly kind: 'micro';
  readonly op: 'sgemm' | 'add' | 'dot-read';
  /** Matrix side (sgemm) or vector length. */
  readonly size: number;
  /** Calls per timed sample (the sample's time is divided by it). */
  readonly repeats: number;
}

export type SpeedSpec = PipelineWorkload | NetworkWorkload | MicroWorkload;

export interface SpeedWorkload {
  /** `family/name`, unique; what `--workloads` selects. */
  readonly id: string;
  readonly family: SpeedFamily;
  /** The row title. */
  readonly label: string;
  /** Real data the workload needs (missing data skips it). */
  readonly data?: 'fashion-mnist';
  readonly spec: SpeedSpec;
  /** Untimed steps (or samples) before the timed ones. */
  readonly warmup: number;
  /** Timed steps (or samples). */
  readonly steps: number;
  /** Kill either side after this long. */
  readonly timeoutSeconds: number;
}

export interface SpeedSizes {
  readonly quick: boolean;
  /** Timed steps of every workload (`--speed-steps`), instead of each workload's own. */
  readonly steps?: number;
}

function plugin(name: string, options: Record<string, unknown> = {}): SpeedPlugin {
  return { name, options };
}

function quadraticWorkloads({ quick }: SpeedSizes): SpeedWorkload[] {
  const problem = plugin('quadratic', { dimension: quick ? 300 : 1000, seed: 0 });
  const gd = plugin('gd', { stepSize: 0.6, maxIterations: 10 });
  const outer = plugin('gd', { learningRate: 0.5 });
  const w = (name: string, label: string, innerSolver: SpeedPlugin, estimator: SpeedPlugin, outerOptimizer = outer): SpeedWorkload => ({
    id: `quadratic/${name}`,
    family: 'quadratic',
    label: `quadratic d=${(problem.options.dimension as number).toLocaleString('en-US')}, ${label}`,
    spec: { kind: 'pipeline', problem, innerSolver, estimator, outerOptimizer, warmStart: true },
    // 300 warm-up steps (a few seconds): V8 compiles and re-optimizes the JS of a step (tape, tree algebra,
    // kernels' glue) over its first hundreds of calls — after 20 steps an AID-CG step still took 1.7× its
    // steady time (7.7–8.5 ms against 4.5–4.8 ms after 500 steps, docs/performance.md), and long runs, the
    // common case, see the steady time. The PyTorch twin gets the same warm-up (it needs little).
    warmup: quick ? 2 : 300,
    steps: quick ? 5 : 30,
    timeoutSeconds: quick ? 120 : 300,
  });
  return [
    w('aid-cg', 'AID-CG', gd, plugin('cg', { maxIterations: 10 })),
    w('aid-fp', 'AID-FP', gd, plugin('fixed-point', { maxIterations: 10, stepSize: 0.6 })),
    w(
      'qnbo',
      'qNBO (BFGS)',
      plugin('lbfgs', { maxIterations: 10, warmupSteps: 3, warmupStepSize: 0.6, lineSearch: 'fixed', stepSize: 1 }),
      plugin('qnbo', { update: 'bfgs', passes: 10 }),
    ),
    w('esj', 'ESJ', gd, plugin('es', { directions: 10, smoothing: 0.01 }), plugin('gd', { learningRate: 0.02 })),
  ];
}

function hyperCleaningWorkloads({ quick }: SpeedSizes): SpeedWorkload[] {
  const sizes = quick
    ? { trainSamples: 500, validationSamples: 500, testSamples: 500 }
    : { trainSamples: 5000, validationSamples: 5000, testSamples: 10000 };
  const problem = plugin('hyper-cleaning', {
    dataset: 'fashion-mnist',
    ...sizes,
    corruptionRate: 0.5,
    innerL2: 0.001,
    seed: 0,
  });
  const gd = plugin('gd', { stepSize: 0.2, maxIterations: 50 });
  const outer = plugin('adam', { learningRate: 0.2 });
  const w = (name: string, label: string, innerSolver: SpeedPlugin, estimator: SpeedPlugin): SpeedWorkload => ({
    id: `hyper-cleaning/${name}`,
    family: 'hyper-cleaning',
    label: `hyper-cleaning n=${sizes.trainSamples.toLocaleString('en-US')}, ${label}`,
    data: 'fashion-mnist',
    spec: { kind: 'pipeline', problem, innerSolver, estimator, outerOptimizer: outer, warmStart: true },
    warmup: 2,
    steps: quick ? 3 : 10,
    timeoutSeconds: quick ? 120 : 600,
  });
  return [
    w('esj', 'ESJ', gd, plugin('es', { directions: 10, smoothing: 0.01 })),
    w('aid-cg', 'AID-CG', gd, plugin('cg', { maxIterations: 10 })),
    w(
      'qnbo',
      'qNBO (BFGS)',
      plugin('lbfgs', { maxIterations: 20, tolerance: 1e-4, warmupSteps: 2, warmupStepSize: 0.5 }),
      plugin('qnbo', { update: 'bfgs', passes: 10, maxPasses: 20 }),
    ),
  ];
}

function resnetWorkloads({ quick }: SpeedSizes): SpeedWorkload[] {
  const images = quick ? 2 : 10;
  const imageSize = quick ? 32 : 84;
  return [
    {
      id: 'resnet/forward-backward',
      family: 'resnet',
      label: `ResNet-12 forward + backward, ${images} × ${imageSize}×${imageSize}×3`,
      spec: { kind: 'network', backbone: plugin('resnet12'), images, imageSize, channels: 3 },
      warmup: 1,
      steps: quick ? 2 : 5,
      timeoutSeconds: quick ? 120 : 600,
    },
  ];
}

/**
 * One outer step of the few-shot problem (ANIL-style: the backbone is x, the task heads are y) on synthetic
 * images (the `synthetic` data of the few-shot problem): Conv-4 (32 filters) on 28×28 grey images with the
 * suite's Omniglot episodes (4 tasks of 5-way 1-shot, 5 queries per class); ResNet-12 on 84×84 colour images
 * as for miniImageNet, one task of 5-way 1-shot with 5 queries per class (30 images). AID-CG with 20 inner
 * gradient steps from zero heads, as the suite's few-shot section: of 0.05 for Conv-4, of 0.002 for ResNet-12, whose
 * 640-d features have norms near 30 (the head's gradient has a Lipschitz constant near ½·‖φ‖² ≈ 500: steps of 0.05
 * make the inner loss oscillate and grow, and rounding differences with it). The step size does not change the cost.
 */
function fewShotWorkloads({ quick }: SpeedSizes): SpeedWorkload[] {
  const estimator = plugin('cg', { maxIterations: 10 });
  const outer = plugin('adam', { learningRate: 0.003 });
  const w = (
    name: string,
    backbone: string,
    backboneOptions: Record<string, unknown>,
    imageSize: number,
    channels: number,
    tasks: number,
    queries: number,
  ): SpeedWorkload => ({
    id: `few-shot/${name}`,
    family: 'few-shot',
    label:
      `few-shot ${backbone}, ${imageSize}×${imageSize}×${channels}, ${tasks} task${tasks === 1 ? '' : 's'} ` +
      `5-way 1-shot ${queries} queries, AID-CG`,
    spec: {
      kind: 'pipeline',
      problem: plugin('few-shot', {
        dataset: 'synthetic',
        syntheticClasses: 20,
        syntheticImagesPerClass: 10,
        imageSize,
        channels,
        ways: 5,
        shots: 1,
        queries,
        metaBatchSize: tasks,
        headWeightDecay: 0.01,
        evalEpisodes: 1,
        evalInnerSteps: 1,
        backbone: { name, options: backboneOptions },
        seed: 0,
      }),
      innerSolver: plugin('gd', { stepSize: name === 'resnet12' ? 0.002 : 0.05, maxIterations: 20 }),
      estimator,
      outerOptimizer: outer,
      warmStart: false,
    },
    // Conv-4's step (~100 ms, thousands of small kernels) is still being compiled by V8 after one step: 78–97 ms
    // after 1 warm-up step, 60–68 ms after 10 (docs/performance.md, sixth round); ResNet-12's seconds-long step
    // is not. The twin gets the same warm-up.
    warmup: quick ? 1 : name === 'conv4' ? 10 : 1,
    steps: quick ? 2 : name === 'resnet12' ? 3 : 5,
    timeoutSeconds: quick ? 180 : 900,
  });
  return [
    w('conv4', 'Conv-4 (32 filters)', { filters: 32 }, 28, 1, quick ? 1 : 4, quick ? 2 : 5),
    w('resnet12', 'ResNet-12', {}, quick ? 32 : 84, 3, 1, quick ? 2 : 5),
  ];
}

function microWorkloads({ quick }: SpeedSizes): SpeedWorkload[] {
  const w = (name: string, label: string, spec: MicroWorkload, steps: number): SpeedWorkload => ({
    id: `micro/${name}`,
    family: 'micro',
    label,
    spec,
    warmup: 3,
    steps,
    timeoutSeconds: 120,
  });
  const n = quick ? 256 : 512;
  return [
    w('sgemm', `sgemm ${n}×${n}×${n}`, { kind: 'micro', op: 'sgemm', size: n, repeats: quick ? 2 : 5 }, quick ? 5 : 20),
    w('add-1e6', 'add, 2 × 1e6 floats', { kind: 'micro', op: 'add', size: 1_000_000, repeats: 10 }, quick ? 5 : 30),
    w('add-100', 'add, 2 × 100 floats', { kind: 'micro', op: 'add', size: 100, repeats: 1000 }, quick ? 5 : 30),
    w('dot-read', 'dot of 2 × 100 floats, read back as a number', { kind: 'micro', op: 'dot-read', size: 100, repeats: 1000 }, quick ? 5 : 30),
  ];
}

/** Every workload of the section, in the order they run. */
export function speedWorkloads(sizes: SpeedSizes): SpeedWorkload[] {
  const all = [
    ...quadraticWorkloads(sizes),
    ...hyperCleaningWorkloads(sizes),
    ...resnetWorkloads(sizes),
    ...fewShotWorkloads(sizes),
    ...microWorkloads(sizes),
  ];
  return sizes.steps === undefined ? all : all.map((w) => ({ ...w, steps: sizes.steps as number }));
}

/** Every workload id and family name (what `--workloads` accepts). */
export function speedSelectors(): string[] {
  return [...SPEED_FAMILIES, ...speedWorkloads({ quick: false }).map((w) => w.id)];
}

/**
 * The workloads a selection names: a family name selects its workloads, an id one workload. Undefined
 * selects all. Unknown names throw.
 */
export function selectWorkloads(all: readonly SpeedWorkload[], selection: readonly string[] | undefined): SpeedWorkload[] {
  if (selection === undefined) return [...all];
  const unknown = selection.filter((s) => !(SPEED_FAMILIES as readonly string[]).includes(s) && !all.some((w) => w.id === s));
  if (unknown.length > 0) throw new Error(`unknown workload ${unknown.map((u) => `'${u}'`).join(', ')}`);
  return all.filter((w) => selection.includes(w.family) || selection.includes(w.id));
}

/** The twin script of a family, relative to tools/bench. */
export function twinScript(family: SpeedFamily): string {
  return `torch/${family.replace('-', '_')}.py`;
}

/** Floating-point operations of one call of a micro workload, when meaningful (GFLOP/s). */
export function microFlops(spec: SpeedSpec): number | undefined {
  if (spec.kind !== 'micro') return undefined;
  if (spec.op === 'sgemm') return 2 * spec.size ** 3;
  return undefined;
}
