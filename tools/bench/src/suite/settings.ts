/**
 * The fixed benchmark suite: four settings from the ESJ (Sow, Ji & Liang, NeurIPS 2022) and qNBO (Fang et al.,
 * ICLR 2025) papers, each with its methods, in a full and a `--quick` size. The quick sizes run the same code
 * paths on smaller problems and budgets (a smoke test for CI), so their numbers say little.
 */

export type SectionId =
  'quadratic' | 'hyper-representation' | 'hyper-cleaning' | 'few-shot' | 'benchopt' | 'benchopt-ho';
export const SECTION_IDS: readonly SectionId[] = [
  'quadratic',
  'hyper-representation',
  'hyper-cleaning',
  'few-shot',
  'benchopt',
  'benchopt-ho',
];

/** A plugin by registered name, with options. */
export interface PluginChoice {
  readonly name: string;
  readonly options: Record<string, unknown>;
}

/** The bench's own estimator name for the ∇ₓf-only reference (no implicit term; see partial-gradient.ts). */
export const PARTIAL_GRADIENT = 'partial-gradient';

export interface MethodSetting {
  /** Unique within its section (with the protocol). */
  readonly label: string;
  /** A group of runs within a section (hyper-representation: 'authors' or 'warm'). */
  readonly protocol?: string;
  readonly innerSolver: PluginChoice;
  readonly estimator: PluginChoice;
  readonly outerOptimizer: PluginChoice;
  /** Start every inner solve from the previous y (core's default) or from the initial y. */
  readonly warmStart: boolean;
  /**
   * The initial y is one fixed draw w₀ (from the trainer's seed): with `warmStart: false` every inner solve starts
   * there, as in the ESJ code, instead of at a fresh draw per step; with warm starts only the first one does.
   */
  readonly fixedInitialY?: boolean;
  /** Plot colour (`#rrggbb`). */
  readonly color: string;
  /** Seed of the trainer and of the problem's data (its `seed` option), instead of the section's. */
  readonly seed?: number;
  /** Problem options that replace the section's for this method. */
  readonly problemOptions?: Record<string, unknown>;
  /**
   * A deterministic method on a minibatch section: the problem without `batchSize` and `outerBatchSize` (whole
   * data). A flag rather than `undefined` options, which a settings file written as JSON would lose.
   */
  readonly fullBatch?: boolean;
  /** Training-time budget of this run, instead of the section's. */
  readonly timeLimitSeconds?: number;
  /**
   * A step-size grid run (benchopt section): the label of the method it tunes and the step sizes it tries. The
   * suite runs the grid first and gives the method's other runs the pair with the lowest final validation loss.
   */
  readonly grid?: { readonly method: string; readonly innerStep: number | null; readonly outerStep: number };
  /** The method's runs that take the grid's winner (benchopt section). */
  readonly tuned?: boolean;
}

/** The step sizes a tuned run uses: ρ (inner, linear system; null: the method has none) and γ (outer). */
export interface StepChoice {
  readonly innerStep: number | null;
  readonly outerStep: number;
}

/** A threshold on the main metric: "time to reach it". */
export interface Target {
  readonly value: number;
  readonly label: string;
}

export interface SectionSetting {
  readonly id: SectionId;
  readonly title: string;
  readonly problem: PluginChoice;
  /** Real data the section needs; missing data skips the section ('libsvm': the files given on the command line). */
  readonly data?: 'fashion-mnist' | 'omniglot' | 'libsvm';
  readonly methods: readonly MethodSetting[];
  /** Outer-step cap (the time budget usually stops first). */
  readonly steps: number;
  /** Training-time budget per method (core trainer's `timeLimitSeconds`), if any. */
  readonly timeLimitSeconds?: number;
  /**
   * Metrics are computed at the current x (after an uncharged inner solve there, core's
   * `Trainer.finalEvaluation`) whenever the training time has advanced this much since the last evaluation:
   * 0 means after every step, Infinity only at the start and the end.
   */
  readonly evalIntervalSeconds: number;
  /** Compare each estimate with the closed-form hypergradient (problems that have one; not charged). */
  readonly closedFormDiagnostics: boolean;
  readonly seed: number;
  readonly mainMetric: string;
  readonly mainMetricTitle: string;
  readonly higherIsBetter: boolean;
  readonly targets: readonly Target[];
  /** A worker that runs longer than this is killed and its method reported as timed out. */
  readonly workerTimeoutSeconds: number;
  /**
   * Evaluate the metrics at the trainer's current (x, y) — the iterate itself, as benchopt does — instead of after
   * an uncharged inner solve at x.
   */
  readonly evaluateAtIterate?: boolean;
  /** Builds a tuned method's setting for the chosen step sizes (benchopt section). */
  readonly withSteps?: (m: MethodSetting, steps: StepChoice) => MethodSetting;
  /**
   * Also evaluate the value function h(x) = f(x, y*(x)) as the metric `valueFunction`: y*(x) from this inner
   * solver on full batches, warm-started from the previous evaluation's y* (not charged, not counted).
   */
  readonly valueFunctionSolver?: PluginChoice;
  /** The metric of the final evaluation that picks a grid winner (lowest wins); default the validation loss f. */
  readonly gridMetric?: string;
  /** What the section runs, in a sentence or two: the report shows it when the section is skipped. */
  readonly about?: string;
}

/** LIBSVM files of the benchopt-ho section (`--libsvm-train`, `--libsvm-validation`, `--libsvm-test`). */
export interface LibsvmFiles {
  readonly train: string;
  /** Validation (outer) set; when absent, a share of the training file held out by each seed. */
  readonly validation?: string;
  /** Test set (test error); optional. */
  readonly test?: string;
}

export interface SuiteSizes {
  readonly quick: boolean;
  /** The files of the benchopt-ho section; without them that section is skipped. */
  readonly libsvm?: LibsvmFiles;
}

// Tableau 10, one colour per method across all figures.
const COLOR = {
  qnboBfgs: '#1f77b4',
  qnboSr1: '#17becf',
  esj: '#d62728',
  cg: '#2ca02c',
  neumann: '#ff7f0e',
  fixedPoint: '#9467bd',
  itd: '#8c564b',
  partial: '#7f7f7f',
  esjMemory: '#e377c2',
  esjUnbiased: '#bcbd22',
} as const;

function choice(name: string, options: Record<string, unknown> = {}): PluginChoice {
  return { name, options };
}

/**
 * qNBO's quadratic toy (Fang et al., 2025): g(x, y) = ½yᵀAy − xᵀy, f(x, y) = ½‖x − z₀‖² + ½yᵀAy, A with
 * spectrum in [1, 2], x* in closed form. Every method steps x with gradient descent, learning rate 0.5 ≈
 * 2/(λ_min + λ_max) of ∇²Φ = I + A⁻¹ (spectrum [1.5, 2]), except ESJ, whose estimate has a relative error of
 * about √(d/Q) and needs a much smaller step.
 */
function quadratic({ quick }: SuiteSizes): SectionSetting {
  const dimension = quick ? 300 : 1000;
  const gdInner = choice('gd', { stepSize: 0.6, maxIterations: 20 });
  const outer = choice('gd', { learningRate: 0.5 });
  const m = (
    label: string,
    color: string,
    innerSolver: PluginChoice,
    estimator: PluginChoice,
    outerOptimizer = outer,
  ): MethodSetting => ({
    label,
    innerSolver,
    estimator,
    outerOptimizer,
    warmStart: true,
    color,
  });
  return {
    id: 'quadratic',
    title: `qNBO toy quadratic, d = ${dimension.toLocaleString('en-US')}`,
    problem: choice('quadratic', { dimension, seed: 0 }),
    methods: [
      // Subroutine A: P = 3 gradient warm-up steps, then quasi-Newton steps (two-loop recursion, unit step);
      // subroutine B: Q = 10 passes along ∇_y f.
      m(
        'qNBO (BFGS)',
        COLOR.qnboBfgs,
        choice('lbfgs', {
          maxIterations: 10,
          warmupSteps: 3,
          warmupStepSize: 0.6,
          lineSearch: 'fixed',
          stepSize: 1,
        }),
        choice('qnbo', { update: 'bfgs', passes: 10 }),
      ),
      m(
        'qNBO (SR1)',
        COLOR.qnboSr1,
        choice('sr1', { maxIterations: 10, warmupSteps: 3, warmupStepSize: 0.6 }),
        choice('qnbo', { update: 'sr1', passes: 10 }),
      ),
      m(
        'ESJ',
        COLOR.esj,
        gdInner,
        choice('es', { directions: 20, smoothing: 0.01 }),
        choice('gd', { learningRate: 0.02 }),
      ),
      // ESJ with a Jacobian memory of full rank d: exact (for this linear response) from step d/100 on, so it takes
      // the other methods' learning rate. Hessian-free like ESJ: only perturbed inner solves.
      m(
        'ESJ + memory',
        COLOR.esjMemory,
        gdInner,
        choice('es', { directions: 100, smoothing: 0.01, memory: dimension }),
      ),
      m('∇ₓf only (reference)', COLOR.partial, gdInner, choice(PARTIAL_GRADIENT)),
      m('AID-CG', COLOR.cg, gdInner, choice('cg', { maxIterations: 10 })),
      m('AID-NS', COLOR.neumann, gdInner, choice('neumann', { terms: 10, stepSize: 0.6 })),
      m('AID-FP', COLOR.fixedPoint, gdInner, choice('fixed-point', { maxIterations: 10, stepSize: 0.6 })),
      m('ITD', COLOR.itd, gdInner, choice('itd', { steps: 20, stepSize: 0.6 })),
    ],
    steps: 100_000,
    timeLimitSeconds: quick ? 0.5 : 3,
    evalIntervalSeconds: 0,
    closedFormDiagnostics: true,
    seed: 0,
    mainMetric: 'xRelativeError',
    mainMetricTitle: '‖x − x*‖/‖x*‖',
    higherIsBetter: false,
    targets: [
      { value: 1e-2, label: '1e-2' },
      { value: 1e-5, label: '1e-5' },
    ],
    workerTimeoutSeconds: 300,
  };
}

/** Seeds besides 0 on which the few-shot section reruns every method (full size only): protocol `seed<k>`. */
export const FEW_SHOT_EXTRA_SEEDS: readonly number[] = [1, 2];

/** Seeds besides 0 on which the hyper-representation section reruns the authors' protocol. */
export const HYPER_REPRESENTATION_EXTRA_SEEDS: readonly number[] = [1, 2];

/**
 * ESJ's linear hyper-representation with the authors' notebook settings: n = 500, p = 64, d = 128, ρ = 0.1,
 * 100 outer steps of Adam (0.05) on H, 20 inner gradient steps of 0.001, ESJ with one unit direction per
 * tensor, μ = 0.01 and no dimension scaling; AID-FP 20 fixed-point steps of 0.001 from u = 0; AID-CG 20 CG
 * steps from u = 0. Protocol 'authors': every inner solve (and ESJ's perturbed one) starts from the same w₀;
 * protocol 'warm': inner solves warm-started from the previous step's w (this library's default).
 */
function hyperRepresentation({ quick }: SuiteSizes): SectionSetting {
  const inner = choice('gd', { stepSize: 0.001, maxIterations: 20 });
  const outer = choice('adam', { learningRate: 0.05 });
  const estimators: { label: string; color: string; estimator: PluginChoice }[] = [
    {
      label: 'ESJ',
      color: COLOR.esj,
      estimator: choice('es', {
        directions: 1,
        smoothing: 0.01,
        distribution: 'per-tensor-unit',
        unbiased: false,
      }),
    },
    {
      label: 'AID-FP',
      color: COLOR.fixedPoint,
      estimator: choice('fixed-point', {
        maxIterations: 20,
        stepSize: 0.001,
        tolerance: 0,
        warmStart: false,
      }),
    },
    {
      label: 'AID-CG',
      color: COLOR.cg,
      estimator: choice('cg', { maxIterations: 20, tolerance: 1e-10, warmStart: false }),
    },
    { label: '∇ₓf only (reference)', color: COLOR.partial, estimator: choice(PARTIAL_GRADIENT) },
  ];
  const methods: MethodSetting[] = [];
  for (const protocol of ['authors', 'warm'] as const) {
    for (const e of estimators) {
      methods.push({
        label: e.label,
        protocol,
        innerSolver: inner,
        estimator: e.estimator,
        outerOptimizer: outer,
        warmStart: protocol === 'warm',
        // Both protocols start from the same w₀; 'authors' also restarts every inner solve there.
        fixedInitialY: true,
        color: e.color,
      });
    }
  }
  // The authors' protocol on other draws of the data, H₀ and w₀: does the ordering of the three methods hold?
  for (const seed of HYPER_REPRESENTATION_EXTRA_SEEDS) {
    for (const e of estimators.slice(0, 3)) {
      methods.push({
        label: e.label,
        protocol: `authors-seed${seed}`,
        innerSolver: inner,
        estimator: e.estimator,
        outerOptimizer: outer,
        warmStart: false,
        fixedInitialY: true,
        color: e.color,
        seed,
      });
    }
  }
  return {
    id: 'hyper-representation',
    title: 'ESJ linear hyper-representation (n = 500, p = 64, d = 128, ρ = 0.1)',
    problem: choice('hyper-representation', {
      variant: 'linear',
      samples: 500,
      testSamples: 500,
      inputDimension: 64,
      embeddingDimension: 128,
      ridge: 0.1,
      seed: 0,
    }),
    methods,
    steps: quick ? 10 : 100,
    evalIntervalSeconds: Infinity,
    closedFormDiagnostics: true,
    seed: 0,
    mainMetric: 'testLoss',
    mainMetricTitle: 'test loss',
    higherIsBetter: false,
    targets: [],
    workerTimeoutSeconds: 300,
  };
}

/**
 * Data hyper-cleaning on Fashion-MNIST as in examples/hyper-cleaning-fashion-mnist.yaml, at the papers' sizes
 * (5,000 training samples with half of their labels corrupted, 5,000 clean validation samples, the 10,000 test
 * images) under a training-time budget.
 */
function hyperCleaning({ quick }: SuiteSizes): SectionSetting {
  const sizes = quick
    ? { trainSamples: 500, validationSamples: 500, testSamples: 2000 }
    : { trainSamples: 5000, validationSamples: 5000, testSamples: 10000 };
  return {
    id: 'hyper-cleaning',
    title: `Data hyper-cleaning, Fashion-MNIST (${sizes.trainSamples.toLocaleString('en-US')} training samples, 50 % corrupted)`,
    problem: choice('hyper-cleaning', {
      dataset: 'fashion-mnist',
      ...sizes,
      corruptionRate: 0.5,
      innerL2: 0.001,
      seed: 0,
    }),
    data: 'fashion-mnist',
    methods: [
      {
        label: 'ESJ',
        innerSolver: choice('gd', { stepSize: 0.2, maxIterations: 10 }),
        estimator: choice('es', { directions: 10, smoothing: 0.01 }),
        outerOptimizer: choice('adam', { learningRate: 0.2 }),
        warmStart: true,
        color: COLOR.esj,
      },
      {
        label: 'ESJ + memory',
        innerSolver: choice('gd', { stepSize: 0.2, maxIterations: 10 }),
        estimator: choice('es', { directions: 20, smoothing: 0.01, memory: quick ? 200 : 500 }),
        outerOptimizer: choice('adam', { learningRate: 0.2 }),
        warmStart: true,
        color: COLOR.esjMemory,
      },
      {
        // f does not depend on x here (∇ₓf ≡ 0): x stays at x₀ (all weights 0.5) while the warm-started inner
        // solves keep training y — the accuracy of the unweighted model, under the same budget as the others.
        label: '∇ₓf only (reference)',
        innerSolver: choice('gd', { stepSize: 0.2, maxIterations: 10 }),
        estimator: choice(PARTIAL_GRADIENT),
        outerOptimizer: choice('adam', { learningRate: 0.2 }),
        warmStart: true,
        color: COLOR.partial,
      },
      {
        label: 'qNBO (BFGS)',
        innerSolver: choice('lbfgs', {
          maxIterations: 20,
          tolerance: 1e-4,
          warmupSteps: 2,
          warmupStepSize: 0.5,
        }),
        estimator: choice('qnbo', { update: 'bfgs', passes: 10, maxPasses: 20 }),
        outerOptimizer: choice('adam', { learningRate: 0.3 }),
        warmStart: true,
        color: COLOR.qnboBfgs,
      },
      {
        label: 'AID-CG',
        innerSolver: choice('lbfgs', { maxIterations: 20, tolerance: 1e-4 }),
        estimator: choice('cg', { maxIterations: 20, tolerance: 1e-3 }),
        outerOptimizer: choice('adam', { learningRate: 0.3 }),
        warmStart: true,
        color: COLOR.cg,
      },
    ],
    steps: 100_000,
    timeLimitSeconds: quick ? 3 : 60,
    evalIntervalSeconds: quick ? 0.5 : 3,
    closedFormDiagnostics: false,
    seed: 0,
    mainMetric: 'testAccuracy',
    mainMetricTitle: 'test accuracy',
    higherIsBetter: true,
    targets: [
      { value: 0.78, label: '0.78' },
      { value: 0.8, label: '0.80' },
    ],
    workerTimeoutSeconds: quick ? 240 : 900,
  };
}

/**
 * Few-shot meta-learning, ANIL-style, Conv-4 (32 filters) on Omniglot 5-way 1-shot, as in
 * examples/few-shot-omniglot.yaml, under a training-time budget.
 */
function fewShot({ quick }: SuiteSizes): SectionSetting {
  const inner = choice('gd', { stepSize: 0.05, maxIterations: 20 });
  const outer = choice('adam', { learningRate: 0.003 });
  const m = (label: string, color: string, estimator: PluginChoice): MethodSetting => ({
    label,
    innerSolver: inner,
    estimator,
    outerOptimizer: outer,
    warmStart: false,
    color,
  });
  const methods: MethodSetting[] = [
    // The authors' setting: one unit direction per tensor, unscaled (≈ ∇ₓf plus a term 1/d the size of the true one).
    m(
      'ESJ',
      COLOR.esj,
      choice('es', { directions: 1, smoothing: 0.01, distribution: 'per-tensor-unit', unbiased: false }),
    ),
    // The same directions scaled to be unbiased (each tensor's part times its size).
    m(
      'ESJ (unbiased)',
      COLOR.esjUnbiased,
      choice('es', { directions: 1, smoothing: 0.01, distribution: 'per-tensor-unit', unbiased: true }),
    ),
    m('∇ₓf only (reference)', COLOR.partial, choice(PARTIAL_GRADIENT)),
    m('AID-CG', COLOR.cg, choice('cg', { maxIterations: 10 })),
  ];
  return {
    id: 'few-shot',
    title: 'Few-shot Conv-4 on Omniglot, 5-way 1-shot',
    problem: choice('few-shot', {
      dataset: 'omniglot',
      imageSize: 28,
      // The quick run loads one of the two background subsets only (half the decoding).
      ...(quick
        ? { omniglotSets: ['images_background_small1'], testAlphabets: ['Balinese', 'Early_Aramaic'] }
        : { testAlphabets: ['Balinese', 'Early_Aramaic', 'Tagalog'] }),
      rotations: true,
      ways: 5,
      shots: 1,
      queries: 5,
      metaBatchSize: 4,
      headWeightDecay: 0.01,
      evalEpisodes: quick ? 10 : 100,
      evalQueries: 5,
      evalInnerSteps: 100,
      evalBatchSize: 20,
      backbone: { name: 'conv4', options: { filters: 32 } },
    }),
    data: 'omniglot',
    methods: [
      ...methods,
      ...(quick ? [] : FEW_SHOT_EXTRA_SEEDS).flatMap((seed) =>
        methods.map((m) => ({ ...m, protocol: `seed${seed}`, seed })),
      ),
    ],
    steps: 100_000,
    timeLimitSeconds: quick ? 4 : 90,
    evalIntervalSeconds: quick ? 2 : 10,
    closedFormDiagnostics: false,
    seed: 0,
    mainMetric: 'testAccuracy',
    mainMetricTitle: 'query accuracy (held-out tasks)',
    higherIsBetter: true,
    targets: [
      { value: 0.6, label: '60 %' },
      { value: 0.7, label: '70 %' },
    ],
    workerTimeoutSeconds: quick ? 240 : 900,
  };
}

/** Seeds of the benchopt section's tuned runs (full size; the quick size runs the first one). */
export const BENCHOPT_SEEDS: readonly number[] = [0, 1, 2, 3, 4];
/** The benchopt section's step-size grid: inner / linear-system step ρ and outer step γ (plain gradient steps). */
export const BENCHOPT_GRID = { innerSteps: [0.05, 0.2], outerSteps: [10, 100, 1000, 10000] } as const;

/**
 * The methods of the benchopt section with their step sizes (ρ: inner and linear-system steps; γ: the outer
 * gradient step on x). SOBA, AmIGO, StocBiO are the plugin combinations of `METHOD_RECIPES`; every method
 * steps x by plain gradient descent, as in the papers and in benchopt.
 */
function benchoptMethod(label: string, rho: number | null, gamma: number): MethodSetting {
  const r = rho ?? 0.2;
  const outerOptimizer = choice('gd', { learningRate: gamma });
  const base = { label, outerOptimizer, warmStart: true } as const;
  switch (label) {
    case 'SOBA':
      return {
        ...base,
        color: '#1f77b4',
        innerSolver: choice('gd', { maxIterations: 1, stepSize: r }),
        estimator: choice('fixed-point', {
          maxIterations: 1,
          stepSize: r,
          warmStart: true,
          systemBatches: 'fresh',
        }),
      };
    case 'SABA':
      // the inner solver is unused (SABA moves y itself)
      return {
        ...base,
        color: '#d62728',
        innerSolver: choice('gd', { maxIterations: 1, stepSize: r }),
        estimator: choice('saba', { stepSize: r }),
      };
    case 'AmIGO':
      return {
        ...base,
        color: '#2ca02c',
        innerSolver: choice('gd', { maxIterations: 10, stepSize: r }),
        estimator: choice('fixed-point', {
          maxIterations: 10,
          stepSize: r,
          warmStart: true,
          systemBatches: 'fresh',
        }),
      };
    case 'StocBiO':
      return {
        ...base,
        color: '#ff7f0e',
        innerSolver: choice('gd', { maxIterations: 10, stepSize: r }),
        estimator: choice('neumann', { terms: 10, stepSize: r, systemBatches: 'fresh' }),
      };
    case 'F2SA':
      return {
        ...base,
        color: '#9467bd',
        innerSolver: choice('gd', { maxIterations: 10, stepSize: r }),
        estimator: choice('f2sa', { multiplier: 10, multiplierGrowth: 1, steps: 10, stepSize: r }),
      };
    case 'BOME':
      return {
        ...base,
        color: '#8c564b',
        innerSolver: choice('gd', { maxIterations: 1, stepSize: r }),
        estimator: choice('bome', { steps: 10, stepSize: r, eta: 0.5, yStepSize: r }),
      };
    case 'ESJ-S':
      return {
        ...base,
        color: '#e377c2',
        innerSolver: choice('gd', { maxIterations: 10, stepSize: r }),
        estimator: choice('es', { directions: 10, smoothing: 0.01 }),
      };
    case 'qNBO':
      // deterministic (full batches): quasi-Newton inner solve and subroutine B, as in the hyper-cleaning section
      return {
        ...base,
        color: '#17becf',
        innerSolver: choice('lbfgs', {
          maxIterations: 20,
          tolerance: 1e-4,
          warmupSteps: 2,
          warmupStepSize: 0.5,
        }),
        estimator: choice('qnbo', { update: 'bfgs', passes: 10, maxPasses: 20 }),
        fullBatch: true,
      };
    case 'AID-CG':
      return {
        ...base,
        color: '#7f7f7f',
        innerSolver: choice('lbfgs', { maxIterations: 20, tolerance: 1e-4 }),
        estimator: choice('cg', { maxIterations: 20, tolerance: 1e-3 }),
        fullBatch: true,
      };
    default:
      throw new Error(`benchopt section: unknown method '${label}'`);
  }
}

/** The benchopt methods whose inner step ρ is tuned (qNBO and AID-CG solve with L-BFGS: no ρ). */
const BENCHOPT_METHODS: readonly { label: string; hasInnerStep: boolean }[] = [
  { label: 'SOBA', hasInnerStep: true },
  { label: 'SABA', hasInnerStep: true },
  { label: 'AmIGO', hasInnerStep: true },
  { label: 'StocBiO', hasInnerStep: true },
  { label: 'F2SA', hasInnerStep: true },
  { label: 'BOME', hasInnerStep: true },
  { label: 'ESJ-S', hasInnerStep: true },
  { label: 'qNBO', hasInnerStep: false },
  { label: 'AID-CG', hasInnerStep: false },
];

/**
 * The runs of a benchopt protocol: for every method, a grid run on seed 0 per step pair (ρ, γ) of `grid` (ρ
 * only for methods with inner steps) under `gridSeconds`, then one tuned run per seed (its steps are the grid's
 * winner, filled in by the suite). `quick` keeps one grid point and one seed.
 */
function benchoptProtocolMethods(
  grid: { readonly innerSteps: readonly number[]; readonly outerSteps: readonly number[] },
  quick: boolean,
  gridSeconds: number,
): MethodSetting[] {
  const seeds = quick ? BENCHOPT_SEEDS.slice(0, 1) : BENCHOPT_SEEDS;
  const methods: MethodSetting[] = [];
  for (const m of BENCHOPT_METHODS) {
    const rhos = m.hasInnerStep ? (quick ? [grid.innerSteps[1]] : grid.innerSteps) : [null];
    const gammas = quick ? [grid.outerSteps[2]] : grid.outerSteps;
    for (const rho of rhos) {
      for (const gamma of gammas) {
        methods.push({
          ...benchoptMethod(m.label, rho, gamma),
          protocol: `grid ρ=${rho ?? '–'} γ=${gamma}`,
          grid: { method: m.label, innerStep: rho, outerStep: gamma },
          timeLimitSeconds: gridSeconds,
          seed: 0,
        });
      }
    }
  }
  for (const seed of seeds) {
    for (const m of BENCHOPT_METHODS) {
      methods.push({
        ...benchoptMethod(m.label, null, grid.outerSteps[2]),
        protocol: `seed${seed}`,
        seed,
        tuned: true,
      });
    }
  }
  return methods;
}

/**
 * benchopt's bilevel benchmark protocol for data hyper-cleaning (Dagréou, Ablin, Vaiter & Moreau, 2022; the
 * benchopt `benchmark_bilevel` repository): a linear multinomial model, 20,000 training samples with 50 % of their
 * labels corrupted, 5,000 clean validation samples, test error on the official 10,000 test images — here on
 * Fashion-MNIST (the data this machine has). Minibatches of 64 (the stochastic methods; qNBO and AID-CG are
 * deterministic and take full batches). Step sizes: a grid (BENCHOPT_GRID) on seed 0 under a short budget, the
 * pair with the lowest final validation loss wins; then every method runs on every seed under the full budget.
 */
function benchopt({ quick }: SuiteSizes): SectionSetting {
  const sizes = quick
    ? { trainSamples: 1000, validationSamples: 500, testSamples: 1000 }
    : { trainSamples: 20000, validationSamples: 5000, testSamples: 10000 };
  const methods = benchoptProtocolMethods(BENCHOPT_GRID, quick, quick ? 0.5 : 5);
  return {
    id: 'benchopt',
    title: `benchopt's hyper-cleaning protocol, Fashion-MNIST (${sizes.trainSamples.toLocaleString('en-US')} training samples, 50 % corrupted)`,
    problem: choice('hyper-cleaning', {
      dataset: 'fashion-mnist',
      ...sizes,
      corruptionRate: 0.5,
      innerL2: 0.001,
      batchSize: 64,
      outerBatchSize: 64,
      seed: 0,
    }),
    data: 'fashion-mnist',
    methods,
    steps: 1_000_000,
    timeLimitSeconds: quick ? 1 : 30,
    evalIntervalSeconds: quick ? 0.25 : 0.5,
    closedFormDiagnostics: false,
    seed: 0,
    mainMetric: 'testError',
    mainMetricTitle: 'test error',
    higherIsBetter: false,
    targets: [],
    workerTimeoutSeconds: quick ? 120 : 300,
    evaluateAtIterate: true,
    withSteps: (m, steps) => ({
      ...m,
      ...benchoptMethod(m.label, steps.innerStep, steps.outerStep),
      protocol: m.protocol,
      seed: m.seed,
      tuned: true,
    }),
  };
}

/** The benchopt-ho section's step-size grid: ρ (inner and linear-system step) and γ (outer step on log-penalties). */
export const BENCHOPT_HO_GRID = { innerSteps: [0.1, 0.5], outerSteps: [0.1, 1, 10, 100] } as const;

/** Share of the training file each seed holds out for validation when no validation file is given. */
export const BENCHOPT_HO_VALIDATION_FRACTION = 0.25;

/** How a user gives the benchopt-ho section its data (the skip message without a file). */
export const LIBSVM_HOWTO =
  'no LIBSVM file given: run it with `--libsvm-train FILE` (optionally `--libsvm-validation FILE` and `--libsvm-test FILE`), ' +
  'e.g. `node tools/bench/dist/run.js --only benchopt-ho --libsvm-train ijcnn1.tr --libsvm-validation ijcnn1.t` with the ' +
  'ijcnn1 files from the LIBSVM data sets page.';

/** The methods of the benchopt protocol (both problems), in table order. */
export const BENCHOPT_METHOD_LABELS: readonly string[] = BENCHOPT_METHODS.map((m) => m.label);

/**
 * benchopt's regularization-selection problem (Dagréou, Ablin, Vaiter & Moreau, 2022; benchopt
 * `benchmark_bilevel`, datasets ijcnn1 and covtype) on the LIBSVM files given on the command line: logistic
 * regression (multinomial over the file's labels) with one L2 penalty exp(x_j)/2 per feature, f the unregularized
 * loss on the validation set. The same nine methods, grid-then-seeds protocol and minibatches of 64 as the
 * hyper-cleaning protocol (each seed draws its own hold-out split when no validation file is given, and its own
 * batches); the metric is benchopt's for ijcnn1, the value function h(x) = f(x, y*(x)) with y*(x) from an accurate
 * full-batch L-BFGS solve (uncharged).
 */
function benchoptHo({ quick, libsvm }: SuiteSizes): SectionSetting {
  const methods = benchoptProtocolMethods(BENCHOPT_HO_GRID, quick, quick ? 0.1 : 4);
  const name = libsvm ? `LIBSVM ${libsvm.train.replace(/^.*[\\/]/, '')}` : 'a LIBSVM file';
  return {
    id: 'benchopt-ho',
    title: `benchopt's hyperparameter-optimization protocol (per-feature L2) on ${name}`,
    problem: choice('hyperparameter-optimization', {
      dataset: 'libsvm',
      ...(libsvm
        ? {
            libsvm: {
              train: libsvm.train,
              ...(libsvm.validation !== undefined
                ? { validation: libsvm.validation }
                : { validationFraction: BENCHOPT_HO_VALIDATION_FRACTION }),
              ...(libsvm.test !== undefined ? { test: libsvm.test } : {}),
            },
          }
        : {}),
      batchSize: 64,
      outerBatchSize: 64,
      seed: 0,
    }),
    data: 'libsvm',
    methods,
    steps: 1_000_000,
    timeLimitSeconds: quick ? 0.2 : 12,
    evalIntervalSeconds: quick ? 0.1 : 1,
    closedFormDiagnostics: false,
    seed: 0,
    mainMetric: 'valueFunction',
    mainMetricTitle: 'held-out loss h(x) = f(x, y*(x))',
    higherIsBetter: false,
    targets: [],
    workerTimeoutSeconds: quick ? 120 : 300,
    evaluateAtIterate: true,
    valueFunctionSolver: choice('lbfgs', { maxIterations: 200, tolerance: 1e-5 }),
    gridMetric: 'valueFunction',
    about:
      "benchopt's regularization-selection problem (its ijcnn1 and covtype benchmarks): logistic regression with one L2 " +
      'penalty exp(x_j)/2 per feature on the LIBSVM files given, the nine methods of the benchopt hyper-cleaning section ' +
      `with the same protocol (a ρ × γ grid on seed 0, then ${BENCHOPT_SEEDS.length} seeds, minibatches of 64), and the ` +
      "median of benchopt's ijcnn1 metric, the value function h(x) = f(x, y*(x)), against training time with 20–80 % " +
      'quantile bands over seeds, and a table at fixed times.',
    withSteps: (m, steps) => ({
      ...m,
      ...benchoptMethod(m.label, steps.innerStep, steps.outerStep),
      protocol: m.protocol,
      seed: m.seed,
      tuned: true,
    }),
  };
}

/** The suite's sections, in the order they run. */
export function suiteSettings(sizes: SuiteSizes): SectionSetting[] {
  return [
    quadratic(sizes),
    hyperRepresentation(sizes),
    hyperCleaning(sizes),
    fewShot(sizes),
    benchopt(sizes),
    benchoptHo(sizes),
  ];
}

/** The section and method a worker runs, found again from the suite's settings. */
export function findMethod(
  sizes: SuiteSizes,
  section: SectionId,
  key: string,
): { section: SectionSetting; method: MethodSetting } {
  const s = suiteSettings(sizes).find((x) => x.id === section);
  if (!s) throw new Error(`unknown section '${section}'`);
  const method = s.methods.find((m) => methodKey(m) === key);
  if (!method) throw new Error(`unknown method '${key}' in section '${section}'`);
  return { section: s, method };
}

/** A method's unique name within its section. */
export function methodKey(m: MethodSetting): string {
  return m.protocol ? `${m.protocol}/${m.label}` : m.label;
}
