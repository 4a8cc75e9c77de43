import * as tf from '@tensorflow/tfjs-core';
import {
  type BatchSchedule,
  ConfigError,
  type Estimate,
  type EstimateContext,
  type FlatTreeSpec,
  type HypergradientEstimator,
  type InnerResult,
  type InnerSolver,
  type Oracles,
  type PerturbedSolveExecutor,
  type PerturbedSolveReply,
  type PerturbedSolveRequest,
  type PluginState,
  Random,
  type WorkerPoolOptions,
  type TensorTree,
  type TreeSpec,
  parseOptions,
  tidy,
  treeAdd,
  treeDot,
  treeFlatten,
  treeNames,
  treeSpec,
  treeSub,
  treeUnflatten,
  z,
} from '@bilevel/core';
import { euclideanNorm } from '@bilevel/linalg';
import { outerGradients } from './implicit';
import { JacobianMemory, orthogonalDirections } from './jacobian-memory';
import { OracleCallMeter } from './oracle-calls';

/** How the random directions u_q of the evolution-strategies estimator are drawn. */
export const DIRECTION_DISTRIBUTIONS = ['gaussian', 'sphere', 'per-tensor-unit', 'orthogonal'] as const;
/** How the random directions are drawn: `'gaussian'`, `'sphere'`, `'per-tensor-unit'` or `'orthogonal'`. */
export type DirectionDistribution = (typeof DIRECTION_DISTRIBUTIONS)[number];

/** Options of the `es` estimator (ESJ / ESJ-S). */
export const EvolutionStrategiesEstimatorOptionsSchema = z
  .object({
    directions: z
      .number()
      .int()
      .positive()
      .default(10)
      .describe('Q: random directions per estimate (one perturbed inner solve each; two with antithetic)'),
    smoothing: z.number().positive().default(0.01).describe('μ: perturbation size, solves at x + μu_q'),
    distribution: z
      .enum(DIRECTION_DISTRIBUTIONS)
      .default('gaussian')
      .describe(
        "'gaussian': u ~ N(0, I) (the paper); 'sphere': uniform on the unit sphere scaled by √d (E[uuᵀ] = I); " +
          "'per-tensor-unit': each tensor of the tree a uniform unit vector (the authors' code); " +
          "'orthogonal': blocks of up to d orthonormal directions scaled by √d (Choromanski et al., 2018)",
      ),
    antithetic: z
      .boolean()
      .default(false)
      .describe('use each direction as the pair ±u_q: (1/Q) Σ ⟨(y(x+μu) − y(x−μu))/2μ, ∇_y f⟩ u, 2Q solves'),
    unbiased: z
      .boolean()
      .default(true)
      .describe(
        "scale so that E[D u uᵀ] = I, making the estimate unbiased for the smoothed problem: with 'per-tensor-unit' " +
          "each tensor's part is multiplied by its size (no effect on 'gaussian' and 'sphere', whose E[uuᵀ] = I); " +
          'false reproduces the unscaled estimate of the authors’ code',
      ),
    batchedSolves: z
      .boolean()
      .default(true)
      .describe(
        'run the perturbed solves as one batched solve (stacked along a leading axis) when the solver is ' +
          'elementwise with solveBatched and the problem has innerLossBatched',
      ),
    maxBatchSize: z
      .number()
      .int()
      .positive()
      .optional()
      .describe(
        'largest number of perturbed solves stacked in one batched solve (memory bound); all when absent',
      ),
    memory: z
      .number()
      .int()
      .min(0)
      .default(0)
      .describe(
        'rank cap k of a Jacobian memory kept across outer steps (0: none, the paper’s estimator): the ' +
          'responses J·b along k orthonormal past directions, used for Jᵀ∇_y f on their span, with new ' +
          'directions drawn in the complement; costs k·(dim x + dim y) floats. With `workers`, each step sends ' +
          'its Q directions (Q·dim x floats) and the workers return whole responses (J·dim y floats)',
      ),
    workers: z
      .object({
        queue: z
          .string()
          .regex(/^rediss?:\/\//, 'must be a redis:// or rediss:// URL')
          .describe('the queue of the workers (as given to `bilevel worker --queue`)'),
        timeoutMs: z
          .number()
          .int()
          .positive()
          .default(120_000)
          .describe(
            'longest wait for a step’s perturbed solves; then the step fails naming the missing jobs',
          ),
        blockSize: z
          .number()
          .int()
          .positive()
          .default(4)
          .describe('perturbed solves per job (a step of J solves is ⌈J / blockSize⌉ jobs)'),
      })
      .strict()
      .optional()
      .describe(
        'send the perturbed solves to `bilevel worker` processes (each holds a replica of the problem): per ' +
          'step x, y0, y_N(x) and ∇_y f go out once, each job returns one scalar per solve',
      ),
  })
  .strict()
  .superRefine((o, ctx) => {
    if (o.memory > 0 && (o.distribution === 'sphere' || o.distribution === 'per-tensor-unit')) {
      ctx.addIssue({
        code: z.ZodIssueCode.custom,
        path: ['distribution'],
        message: `memory > 0 draws orthonormal directions in the memory's complement; distribution '${o.distribution}' cannot be used with it (use 'gaussian' or 'orthogonal')`,
      });
    }
    if (o.memory > 0 && o.memory < o.directions) {
      ctx.addIssue({
        code: z.ZodIssueCode.custom,
        path: ['memory'],
        message: `memory (${o.memory}) must be at least directions (${o.directions}): each step adds Q directions`,
      });
    }
  });
/** Validated options of {@link EvolutionStrategiesEstimator}. */
export type EvolutionStrategiesEstimatorOptions = z.output<typeof EvolutionStrategiesEstimatorOptionsSchema>;

/**
 * ESJ / ESJ-S — the evolution-strategies Jacobian estimator of Sow, Ji & Liang, "A Novel Hessian-Free Bilevel
 * Optimizer via Evolution Strategies" (PZOBO / PZOBO-S, NeurIPS 2022). With y_N(x) the inner solver's output
 * from the warm start y0 and Q random directions u_q,
 *
 *     ∂y_N/∂x ≈ (1/Q) Σ_q (y_N(x + μu_q) − y_N(x))/μ · u_qᵀ
 *     ∇Φ(x) ≈ ∇ₓf(x, y_N) + (1/Q) Σ_q ⟨(y_N(x + μu_q) − y_N(x))/μ, ∇_y f(x, y_N)⟩ u_q
 *
 * — no Hessian- or Jacobian-vector product. y_N(x) is the context's base solve (reused, not recomputed);
 * every perturbed solve starts from the same y0, with the same iteration budget, and on stochastic problems
 * (ESJ-S) replays the same inner minibatch sequence `innerBatches`, while ∇f uses the step's outer batch.
 *
 * Antithetic pairs use the central difference, which is the same as averaging the one-sided terms of u and −u:
 *
 *     (1/Q) Σ_q ⟨(y_N(x + μu_q) − y_N(x − μu_q))/(2μ), ∇_y f⟩ u_q        (2Q perturbed solves).
 *
 * It cancels the even-order (curvature) terms of y_N along u_q, which lowers the variance whenever y_N is
 * not linear in x; on a problem whose response y_N(x) is linear it cannot help (at equal solve count it
 * halves the number of directions). With Gaussian directions the expectation is ∇ of the Gaussian-smoothed
 * Φ's Jacobian term; 'sphere' directions scaled by √d are unbiased for the ball-smoothed one of radius μ√d.
 *
 * When the solver is elementwise with `solveBatched` and the problem has `innerLossBatched`, the Q perturbed
 * solves run as one batched solve on x + μU stacked along a leading axis.
 */
export class EvolutionStrategiesEstimator implements HypergradientEstimator {
  readonly name = 'es';
  /** The validated options. */
  readonly options: EvolutionStrategiesEstimatorOptions;

  /** The Jacobian memory (used when `memory > 0`). */
  private readonly jacobian = new JacobianMemory();
  /** The remote executor of the perturbed solves (option `workers`), made at the first estimate. */
  private executor: PerturbedSolveExecutor | null = null;

  /**
   * @param options the estimator's options
   * @param resolveExecutor how an executor for the `workers` option is found (the registry resolves it from
   *   its container; without it, `workers` is a configuration error)
   */
  constructor(
    options: z.input<typeof EvolutionStrategiesEstimatorOptionsSchema> = {},
    private readonly resolveExecutor?: (pool: WorkerPoolOptions) => PerturbedSolveExecutor,
  ) {
    this.options = parseOptions(EvolutionStrategiesEstimatorOptionsSchema, options, 'estimator.options');
  }

  /** With `workers`, the trainer records where each step's inner batches come from (workers replay them). */
  get recordsInnerBatchSource(): boolean {
    return this.options.workers !== undefined;
  }

  /** Rank of the Jacobian memory (0 without one). */
  get memoryRank(): number {
    return this.jacobian.rank;
  }

  /** The Jacobian memory, for checkpoints (empty when `memory` is 0). */
  getState(): PluginState {
    return this.jacobian.getState();
  }

  /** Restores the Jacobian memory from {@link EvolutionStrategiesEstimator.getState}. */
  setState(state: PluginState): void {
    this.jacobian.setState(state);
  }

  /** Releases the Jacobian memory and the remote executor's connections. */
  dispose(): void {
    this.jacobian.dispose();
    this.executor?.dispose();
    this.executor = null;
  }

  /** Whether the perturbed solves of `context` run batched. */
  usesBatchedSolves(context: EstimateContext): boolean {
    return canBatch(context.solver, context.oracles, this.options.batchedSolves);
  }

  /** The perturbed solves replay the base solve's N batches; nothing else is read. */
  innerBatchCount(budget: number): number {
    return budget;
  }

  estimate(context: EstimateContext): Estimate {
    if (this.options.memory > 0) return this.estimateWithMemory(context);
    const meter = new OracleCallMeter(context.oracles);
    const { directions: Q, smoothing: mu, antithetic } = this.options;
    const batched = this.usesBatchedSolves(context);
    const maxIterations = perturbedIterationBudget(context.inner);
    const remote = this.options.workers ? this.remoteExecutor(context) : null;
    const remoteStats = { sent: 0, received: 0 };
    const { hypergradient, diagnostics } = tidy(() => {
      const { gradX, gradY } = outerGradients(context);
      const xSpec = treeSpec(context.x);
      // The directions' seed: a remote worker draws the same U from it.
      const seed = context.rng.getState();
      // U: [Q, d] directions (flat); the perturbed points are x + μ·offset for the rows u_q (and −u_q).
      const U = sampleDirections(this.options.distribution, Q, xSpec, context.rng);
      const offsets = antithetic ? (tf.concat([U, tf.neg(U)]) as tf.Tensor2D) : U;
      // c_j = ⟨y_N(x + μ·offset_j) − y_N(x), ∇_y f⟩ for every perturbed solve j.
      let c: tf.Tensor;
      let iterations: number;
      if (remote) {
        const reply = this.solveRemotely(
          remote,
          context,
          this.remoteRequest(context, xSpec, gradY, seed, maxIterations),
          remoteStats,
        );
        c = tf.tensor1d(reply.values);
        iterations = reply.iterations / offsets.shape[0];
      } else {
        const solve = batched ? solveBatched : solveOneByOne;
        ({ values: c, iterations } = solve(
          setupOf(context),
          offsets,
          xSpec,
          gradY,
          maxIterations,
          false,
          this.options,
        ));
      }
      // Coefficient of u_q: one-sided c_q/μ, or central (c_q⁺ − c_q⁻)/(2μ).
      const coef = antithetic
        ? tf.div(tf.sub(tf.slice(c, [0], [Q]), tf.slice(c, [Q], [Q])), 2 * mu)
        : tf.div(c, mu);
      let term = tf.reshape(tf.matMul(tf.reshape(coef, [1, Q]), U), [xSpec.total]);
      term = tf.div(term, Q);
      if (this.options.unbiased && this.options.distribution === 'per-tensor-unit') {
        term = tf.mul(term, sizeScale(xSpec));
      }
      return {
        hypergradient: treeAdd(gradX, treeUnflatten(term, xSpec)),
        diagnostics: {
          directions: Q,
          perturbedSolves: antithetic ? 2 * Q : Q,
          batchedSolves: remote ? 0 : batched ? 1 : 0,
          perturbedIterations: iterations,
          ...(remote ? { bytesSent: remoteStats.sent, bytesReceived: remoteStats.received } : {}),
        },
      };
    });
    return { hypergradient, diagnostics: { ...diagnostics, ...meter.diagnostics() } };
  }

  /**
   * A step's perturbed solves on the workers: their oracle calls charged to this run as if they had run here,
   * the bytes moved recorded in `stats`.
   */
  private solveRemotely(
    remote: PerturbedSolveExecutor,
    context: EstimateContext,
    request: PerturbedSolveRequest,
    stats: { sent: number; received: number },
  ): PerturbedSolveReply {
    const reply = remote.solve(request);
    const counts: Record<string, number> = { ...context.oracles.counts };
    for (const [k, v] of Object.entries(reply.oracleCalls)) counts[k] = (counts[k] ?? 0) + (v ?? 0);
    context.oracles.restoreCounts(counts as unknown as typeof context.oracles.counts);
    stats.sent = reply.bytes.sent;
    stats.received = reply.bytes.received;
    return reply;
  }

  /** The executor of the `workers` option (made once). */
  private remoteExecutor(context: EstimateContext): PerturbedSolveExecutor {
    if (this.executor) return this.executor;
    const workers = this.options.workers!;
    if (!this.resolveExecutor) {
      throw new ConfigError(
        'estimator.options.workers: this estimator was created without a container to find a perturbed-solve executor in (create it through the plugin registry)',
        'estimator.options.workers',
      );
    }
    if (context.innerBatches && !context.innerBatchSource) {
      throw new ConfigError(
        'estimator.options.workers: the problem samples tasks; its inner batches cannot be replayed on a worker from a seed',
        'estimator.options.workers',
      );
    }
    this.executor = this.resolveExecutor({
      queue: workers.queue,
      timeoutMs: workers.timeoutMs,
      blockSize: workers.blockSize,
    });
    return this.executor;
  }

  /** What the workers need for this step: x, y0, y_N(x), ∇_y f (flat float32), the seeds and settings. */
  private remoteRequest(
    context: EstimateContext,
    xSpec: TreeSpec,
    gradY: TensorTree,
    seed: PerturbedSolveRequest['seed'],
    maxIterations: number | undefined,
    memory?: { directionRows: Float32Array },
  ): PerturbedSolveRequest {
    const flat = (t: TensorTree): Float32Array => treeFlatten(t).dataSync() as Float32Array;
    const o = this.options;
    return {
      step: context.step,
      x: flat(context.x),
      xSpec: flatSpec(xSpec),
      y0: flat(context.y0),
      yBase: flat(context.inner.y),
      gradY: flat(gradY),
      ySpec: flatSpec(treeSpec(context.inner.y)),
      seed,
      directions: {
        distribution: o.distribution,
        count: o.directions,
        antithetic: o.antithetic,
        smoothing: o.smoothing,
        batchedSolves: o.batchedSolves,
        maxBatchSize: o.maxBatchSize,
      },
      maxIterations,
      innerBatchSource: context.innerBatchSource,
      ...(memory ? { directionRows: memory.directionRows, responses: true } : {}),
    };
  }

  /**
   * The estimate with a Jacobian memory (option `memory` = k > 0). With B ([r, d], orthonormal rows) the kept
   * directions and A = JBᵀ their responses, m = d − r the dimension of span(B)'s complement and V ([Q, d]) a
   * uniformly random orthonormal Q-frame in that complement (perturbations x + μ√d·v_q),
   *
   *     ∇Φ ≈ ∇ₓf + Bᵀ(A ∇_y f) + (m/Q) Σ_q ⟨J v_q, ∇_y f⟩ v_q,
   *
   * where J v_q is the finite difference (y_N(x + μ√d v_q) − y_N(x))/(μ√d) (central with `antithetic`). The
   * last term is the paper's estimator restricted to the complement: E[(m/Q) VᵀV] is the projector on it, so
   * it is unbiased there, with a variance that falls with m; with m = Q it is exact. Then (V, JVᵀ) join the
   * memory. When r + Q would pass min(k, d) the oldest rows are dropped first, so a full memory re-measures
   * its oldest Q directions every step (each direction is refreshed every k/Q steps). The memory part is
   * exact for a response that is linear in x (constant J, e.g. a quadratic inner problem with a fixed number
   * of gradient steps) and otherwise carries the bias of responses measured at earlier x; with k = d and a
   * constant J the estimate is exact (to finite-difference rounding) from step d/Q on. This is a control
   * variate in the sense of the ES literature: the remembered Jacobian carries the known part and random
   * directions only the unknown one (Broyden, 1965; Gower & Richtárik, 2017; see {@link JacobianMemory}).
   */
  private estimateWithMemory(context: EstimateContext): Estimate {
    const meter = new OracleCallMeter(context.oracles);
    const { directions: Q, smoothing: mu, antithetic, memory } = this.options;
    const batched = this.usesBatchedSolves(context);
    const maxIterations = perturbedIterationBudget(context.inner);
    const remote = this.options.workers ? this.remoteExecutor(context) : null;
    const remoteStats = { sent: 0, received: 0 };
    const { hypergradient, diagnostics } = tidy(() => {
      const { gradX, gradY } = outerGradients(context);
      const xSpec = treeSpec(context.x);
      const d = xSpec.total;
      const dy = treeSpec(context.inner.y).total;
      if (Q > d) {
        throw new Error(`es: directions (${Q}) must not exceed the dimension of x (${d}) when memory > 0`);
      }
      this.jacobian.matching(d, dy);
      this.jacobian.truncate(Math.min(memory, d) - Q);
      const r = this.jacobian.rank;
      const m = d - r;
      // The directions' seed (the jobs carry it, though with a memory the directions travel themselves).
      const seed = context.rng.getState();
      const V = this.jacobian.complementFrame(Q, d, (n) => context.rng.normalArray(n));
      const scale = Math.sqrt(d);
      const U = tf.mul(V, scale) as tf.Tensor2D;
      const offsets = antithetic ? (tf.concat([U, tf.neg(U)]) as tf.Tensor2D) : U;
      let diffs: tf.Tensor;
      let iterations: number;
      if (remote) {
        // The directions depend on the memory, which only this process holds: they go out with the step
        // (Q·dim x floats), and the whole responses come back (J·dim y floats), not only the c_j.
        const request = this.remoteRequest(context, xSpec, gradY, seed, maxIterations, {
          directionRows: U.dataSync() as Float32Array,
        });
        const reply = this.solveRemotely(remote, context, request, remoteStats);
        const J = offsets.shape[0];
        if (!reply.responses || reply.responses.length !== J * dy) {
          throw new Error(
            `es: the workers returned ${reply.responses?.length ?? 0} response values for ${J} solves of dim y ${dy}`,
          );
        }
        diffs = tf.tensor2d(reply.responses, [J, dy]);
        iterations = reply.iterations / J;
      } else {
        const solve = batched ? solveBatched : solveOneByOne;
        ({ values: diffs, iterations } = solve(
          setupOf(context),
          offsets,
          xSpec,
          gradY,
          maxIterations,
          true,
          this.options,
        ));
      }
      // Responses J v_q (rows, flat y-space).
      const responses = (
        antithetic
          ? tf.div(tf.sub(tf.slice(diffs, [0, 0], [Q, dy]), tf.slice(diffs, [Q, 0], [Q, dy])), 2 * mu * scale)
          : tf.div(diffs, mu * scale)
      ) as tf.Tensor2D;
      const w = treeFlatten(gradY);
      const coef = tf.matMul(responses, tf.reshape(w, [dy, 1]));
      let term = tf.mul(tf.reshape(tf.matMul(V, coef, true, false), [d]), m / Q) as tf.Tensor1D;
      const remembered = this.jacobian.transposeProduct(w);
      if (remembered) term = tf.add(term, remembered);
      this.jacobian.append(V, responses);
      return {
        hypergradient: treeAdd(gradX, treeUnflatten(term, xSpec)),
        diagnostics: {
          directions: Q,
          perturbedSolves: antithetic ? 2 * Q : Q,
          batchedSolves: remote ? 0 : batched ? 1 : 0,
          perturbedIterations: iterations,
          memoryRank: r,
          ...(remote ? { bytesSent: remoteStats.sent, bytesReceived: remoteStats.received } : {}),
        },
      };
    });
    return { hypergradient, diagnostics: { ...diagnostics, ...meter.diagnostics() } };
  }
}

/**
 * What perturbed solves need from a step: the solver and oracles, x, the warm start, the base solve's y_N(x)
 * and the inner batches to replay (an {@link EstimateContext}'s parts, or a worker's replica of them).
 */
interface PerturbedSetup {
  /** The inner solver. */
  readonly solver: InnerSolver;
  /** The (counted) oracles. */
  readonly oracles: Oracles;
  /** The unperturbed x. */
  readonly x: TensorTree;
  /** The warm start of every solve. */
  readonly y0: TensorTree;
  /** y_N(x), the base solve's output. */
  readonly yBase: TensorTree;
  /** The step's inner batches (stochastic problems). */
  readonly innerBatches?: BatchSchedule;
}

function setupOf(context: EstimateContext): PerturbedSetup {
  return {
    solver: context.solver,
    oracles: context.oracles,
    x: context.x,
    y0: context.y0,
    yBase: context.inner.y,
    innerBatches: context.innerBatches,
  };
}

/** The perturbed solves' settings used by {@link solveOneByOne} and {@link solveBatched}. */
type SolveSettings = Pick<EvolutionStrategiesEstimatorOptions, 'smoothing' | 'maxBatchSize'>;

/** Whether perturbed solves with this solver and these oracles can run batched. */
function canBatch(solver: InnerSolver, oracles: Oracles, wanted: boolean): boolean {
  return (
    wanted && solver.elementwise && typeof solver.solveBatched === 'function' && oracles.supportsBatchedX
  );
}

/**
 * The perturbed solves one by one and the summed iteration count over J (mean); per solve j either
 * c_j = ⟨y_j − y, ∇_y f⟩ (a [J] tensor) or, with `diffs`, the flat difference y_j − y (a [J, dim y] tensor).
 */
function solveOneByOne(
  setup: PerturbedSetup,
  offsets: tf.Tensor2D,
  xSpec: TreeSpec,
  gradY: TensorTree,
  maxIterations: number | undefined,
  diffs: boolean,
  settings: SolveSettings,
): { values: tf.Tensor; iterations: number } {
  const J = offsets.shape[0];
  const mu = settings.smoothing;
  const xFlat = treeFlatten(setup.x);
  const rows = tf.unstack(offsets);
  const cs: tf.Tensor[] = [];
  let iterations = 0;
  for (let j = 0; j < J; j++) {
    const { cj, its } = tidy(() => {
      const xj = treeUnflatten(tf.add(xFlat, tf.mul(rows[j], mu)), xSpec);
      const res = setup.solver.solve({
        oracles: setup.oracles,
        x: xj,
        y0: setup.y0,
        maxIterations,
        batches: setup.innerBatches,
      });
      const delta = treeSub(res.y, setup.yBase);
      const cj = diffs ? treeFlatten(delta) : treeDot(delta, gradY);
      res.curvature?.dispose();
      return { cj, its: res.iterations };
    });
    cs.push(cj);
    iterations += its;
  }
  return { values: tf.stack(cs), iterations: iterations / J };
}

/**
 * The perturbed solves as batched solves of at most `maxBatchSize` stacked members each; values as in
 * {@link solveOneByOne}.
 */
function solveBatched(
  setup: PerturbedSetup,
  offsets: tf.Tensor2D,
  xSpec: TreeSpec,
  gradY: TensorTree,
  maxIterations: number | undefined,
  diffs: boolean,
  settings: SolveSettings,
): { values: tf.Tensor; iterations: number } {
  const J = offsets.shape[0];
  const chunk = Math.min(J, settings.maxBatchSize ?? J);
  const solveBatchedFn = setup.solver.solveBatched;
  if (!solveBatchedFn) throw new Error(`solver '${setup.solver.name}' has no solveBatched`);
  const parts: tf.Tensor[] = [];
  let iterations = 0;
  for (let start = 0; start < J; start += chunk) {
    const B = Math.min(chunk, J - start);
    const { cPart, its } = tidy(() => {
      const rows = tf.slice(offsets, [start, 0], [B, xSpec.total]);
      const xs = stackedPerturbation(setup.x, xSpec, rows, settings.smoothing);
      const y0s = stackedCopies(setup.y0, B);
      const res = solveBatchedFn.call(setup.solver, {
        oracles: setup.oracles,
        x: xs,
        y0: y0s,
        maxIterations,
        batches: setup.innerBatches,
      });
      const cPart = diffs ? stackedDiff(res.y, setup.yBase, B) : stackedDot(res.y, setup.yBase, gradY, B);
      res.curvature?.dispose();
      return { cPart, its: res.iterations };
    });
    parts.push(cPart);
    iterations += its * B;
  }
  return { values: parts.length === 1 ? parts[0] : tf.concat(parts), iterations: iterations / J };
}

function flatSpec(spec: TreeSpec): FlatTreeSpec {
  return { names: [...spec.names], shapes: spec.shapes.map((s) => [...s]) };
}

/** A tree from a flat float32 vector and its layout. */
function treeOf(flat: Float32Array, spec: FlatTreeSpec): TensorTree {
  const out: Record<string, tf.Tensor> = {};
  let o = 0;
  spec.names.forEach((n, i) => {
    const shape = spec.shapes[i] as number[];
    const size = shape.reduce((a, b) => a * b, 1);
    out[n] = tf.tensor(flat.subarray(o, o + size), shape);
    o += size;
  });
  if (o !== flat.length)
    throw new Error(`a flat tree of ${flat.length} values does not match its layout (${o})`);
  return out;
}

/** What {@link perturbedSolveBlock} returns. */
export interface PerturbedBlockResult {
  /** c_j = ⟨y_N(x + μ·offset_j) − y_N(x), ∇_y f⟩ for j = from … to − 1. */
  readonly values: Float32Array;
  /** The block's summed inner iteration counts. */
  readonly iterations: number;
  /**
   * With the request's `responses`: y_N(x + μ·offset_j) − y_N(x) for j = from … to − 1, row-major
   * [to − from, dim y].
   */
  readonly responses?: Float32Array;
}

/**
 * The perturbed solves j = from … to − 1 of a step's request, run on a worker's replica (`solver`, `oracles`,
 * the inner batches replayed from the request's seed): the directions are drawn again from the request's seed
 * exactly as {@link EvolutionStrategiesEstimator.estimate} draws them (or taken from the request's
 * `directionRows`, as the Jacobian memory sends them), so c_j equals the local c_j (batched or not, to float32
 * rounding). Returns the c_j, their summed iteration counts and, when the request asks for them, the responses.
 */
export function perturbedSolveBlock(
  replica: { readonly solver: InnerSolver; readonly oracles: Oracles; readonly innerBatches?: BatchSchedule },
  request: PerturbedSolveRequest,
  from: number,
  to: number,
): PerturbedBlockResult {
  const dirs = request.directions;
  const J = dirs.antithetic ? 2 * dirs.count : dirs.count;
  if (!(Number.isInteger(from) && Number.isInteger(to) && 0 <= from && from < to && to <= J)) {
    throw new Error(`perturbed-solve block [${from}, ${to}) is outside the step's ${J} solves`);
  }
  if (!(DIRECTION_DISTRIBUTIONS as readonly string[]).includes(dirs.distribution)) {
    throw new Error(`unknown direction distribution '${dirs.distribution}'`);
  }
  return tidy(() => {
    const x = treeOf(request.x, request.xSpec);
    const xSpec = treeSpec(x);
    let U: tf.Tensor2D;
    if (request.directionRows) {
      if (request.directionRows.length !== dirs.count * xSpec.total) {
        throw new Error(
          `the step's ${request.directionRows.length} direction values are not ${dirs.count} directions of dim x ${xSpec.total}`,
        );
      }
      U = tf.tensor2d(request.directionRows, [dirs.count, xSpec.total]);
    } else {
      U = sampleDirections(
        dirs.distribution as DirectionDistribution,
        dirs.count,
        xSpec,
        new Random(request.seed),
      );
    }
    const offsets = dirs.antithetic ? (tf.concat([U, tf.neg(U)]) as tf.Tensor2D) : U;
    const block = tf.slice(offsets, [from, 0], [to - from, xSpec.total]) as tf.Tensor2D;
    const setup: PerturbedSetup = {
      solver: replica.solver,
      oracles: replica.oracles,
      x,
      y0: treeOf(request.y0, request.ySpec),
      yBase: treeOf(request.yBase, request.ySpec),
      innerBatches: replica.innerBatches,
    };
    const gradY = treeOf(request.gradY, request.ySpec);
    const solve = canBatch(setup.solver, setup.oracles, dirs.batchedSolves) ? solveBatched : solveOneByOne;
    const responses = request.responses === true;
    const { values, iterations } = solve(setup, block, xSpec, gradY, request.maxIterations, responses, {
      smoothing: dirs.smoothing,
      maxBatchSize: dirs.maxBatchSize,
    });
    if (!responses)
      return { values: values.dataSync() as Float32Array, iterations: iterations * (to - from) };
    // The c_j from the responses, as the coordinator would form them.
    const c = tf.reshape(tf.matMul(values as tf.Tensor2D, tf.reshape(treeFlatten(gradY), [-1, 1])), [-1]);
    return {
      values: c.dataSync() as Float32Array,
      iterations: iterations * (to - from),
      responses: values.dataSync() as Float32Array,
    };
  });
}

/**
 * Iteration budget of the perturbed solves, so that they run the same N as the base solve: the base
 * solve's iteration count when it stopped on its budget; the solver's own budget (and tolerance) when it
 * converged early.
 */
export function perturbedIterationBudget(inner: InnerResult): number | undefined {
  return inner.converged ? undefined : inner.iterations;
}

/**
 * Q directions in x-space as a [Q, d] matrix, from the context's seeded random source:
 * - 'gaussian': i.i.d. N(0, 1) entries;
 * - 'sphere': each row uniform on the unit sphere (a normalized Gaussian), times √d, so E[uuᵀ] = I;
 * - 'per-tensor-unit': within each row, each tensor's block is a uniform unit vector (E[uuᵀ] = blockdiag(I/dᵢ));
 * - 'orthogonal': blocks of min(Q, d) Haar-random orthonormal rows times √d (E[uuᵀ] = I; Choromanski et al.,
 *   2018), orthonormalized on the CPU in float64 (O(Q·d·min(Q, d)) work).
 */
export function sampleDirections(
  distribution: DirectionDistribution,
  Q: number,
  spec: TreeSpec,
  rng: { normalArray(n: number): Float32Array },
): tf.Tensor2D {
  return tf.tidy(() => {
    const d = spec.total;
    if (distribution === 'orthogonal') return orthogonalDirections(Q, d, (n) => rng.normalArray(n));
    const g = tf.tensor2d(rng.normalArray(Q * d), [Q, d]);
    if (distribution === 'gaussian') return g;
    if (distribution === 'sphere') {
      return tf.mul(tf.div(g, euclideanNorm(g, 1, true)), Math.sqrt(d)) as tf.Tensor2D;
    }
    const blocks = spec.names.length === 1 ? [g] : tf.split(g, spec.sizes.slice(), 1);
    const unit = blocks.map((b) => tf.div(b, euclideanNorm(b, 1, true)));
    return (unit.length === 1 ? unit[0] : tf.concat(unit, 1)) as tf.Tensor2D;
  });
}

/** The factor dᵢ (size of tensor i) on each entry of tensor i's block: D with E[D u uᵀ] = I for unit blocks. */
function sizeScale(spec: TreeSpec): tf.Tensor1D {
  const out = new Float32Array(spec.total);
  let o = 0;
  spec.sizes.forEach((s) => {
    out.fill(s, o, o + s);
    o += s;
  });
  return tf.tensor1d(out);
}

/** x + μ·rows stacked along a new leading axis: a tree whose tensors have shape [B, …shape]. */
function stackedPerturbation(x: TensorTree, spec: TreeSpec, rows: tf.Tensor2D, mu: number): TensorTree {
  const B = rows.shape[0];
  const blocks = spec.names.length === 1 ? [rows] : tf.split(rows, spec.sizes.slice(), 1);
  const out: Record<string, tf.Tensor> = {};
  spec.names.forEach((n, i) => {
    const shaped = tf.reshape(blocks[i], [B, ...spec.shapes[i]]);
    out[n] = tf.add(tf.expandDims(x[n], 0), tf.mul(shaped, mu));
  });
  return out;
}

/** B copies of a tree stacked along a new leading axis. */
function stackedCopies(y: TensorTree, B: number): TensorTree {
  const out: Record<string, tf.Tensor> = {};
  for (const n of treeNames(y)) out[n] = tf.broadcastTo(tf.expandDims(y[n], 0), [B, ...y[n].shape]);
  return out;
}

/** ⟨Y_b − y, w⟩ for every member b of the stacked tree Y, as a [B] vector. */
function stackedDot(ys: TensorTree, y: TensorTree, w: TensorTree, B: number): tf.Tensor1D {
  const parts = treeNames(y).map((n) => {
    if (ys[n].shape[0] !== B) {
      throw new Error(
        `batched inner solve returned '${n}' with leading size ${ys[n].shape[0]}, expected ${B}`,
      );
    }
    const diff = tf.reshape(tf.sub(ys[n], tf.expandDims(y[n], 0)), [B, -1]);
    return tf.sum(tf.mul(diff, tf.reshape(w[n], [1, -1])), 1);
  });
  return (parts.length === 1 ? parts[0] : tf.addN(parts)) as tf.Tensor1D;
}

/** The flat differences Y_b − y for every member b of the stacked tree Y, as a [B, dim y] matrix. */
function stackedDiff(ys: TensorTree, y: TensorTree, B: number): tf.Tensor2D {
  const parts = treeNames(y).map((n) => {
    if (ys[n].shape[0] !== B) {
      throw new Error(
        `batched inner solve returned '${n}' with leading size ${ys[n].shape[0]}, expected ${B}`,
      );
    }
    return tf.reshape(tf.sub(ys[n], tf.expandDims(y[n], 0)), [B, -1]);
  });
  return (parts.length === 1 ? parts[0] : tf.concat(parts, 1)) as tf.Tensor2D;
}
