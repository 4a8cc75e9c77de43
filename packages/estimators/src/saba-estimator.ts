import * as tf from '@tensorflow/tfjs-core';
import {
  ConfigError,
  type Estimate,
  Float32Values,
  type EstimateContext,
  type FixedBatches,
  type HypergradientEstimator,
  type PluginState,
  type Random,
  type TensorTree,
  type TreeSpec,
  parseOptions,
  tidy,
  treeFlatten,
  treeSpec,
  treeUnflatten,
  z,
} from '@bilevel/core';
import { OracleCallMeter } from './oracle-calls';

/** Options of the `saba` estimator. */
export const SabaEstimatorOptionsSchema = z
  .object({
    stepSize: z.number().positive().default(0.1).describe('ρ of the step y ← y − ρ D_y on the inner variable'),
    systemStepSize: z
      .number()
      .positive()
      .optional()
      .describe('ρ_v of the step v ← v − ρ_v D_v on the linear-system variable (default: stepSize)'),
    initialization: z
      .enum(['zero', 'full-pass'])
      .default('zero')
      .describe(
        "'zero': every memory entry starts at 0 (the default of benchopt's SABA); 'full-pass': the first step fills every entry at (x₀, y₀, v₀ = 0), one pass over all batches, charged to that step",
      ),
    maxMemoryFloats: z
      .number()
      .int()
      .positive()
      .default(100_000_000)
      .describe('refuse when the SAGA memory would hold more floats than this (4 bytes each)'),
  })
  .strict();
/** Validated options of {@link SabaEstimator}. */
export type SabaEstimatorOptions = z.output<typeof SabaEstimatorOptionsSchema>;

/** One SAGA table: a memory entry per fixed batch and the weighted average Σ_b w_b m_b. */
interface SagaTable {
  readonly dim: number;
  /** count × dim, row b the last direction seen on batch b. */
  readonly memory: Float32Array;
  /** Σ_b w_b m_b, in float64 (updated incrementally). */
  readonly average: Float64Array;
}

/** The five tables: the inner-batch parts (∇_y g, ∇²_yy g·v, ∇²ₓᵧg·v) and the outer-batch parts (∇_y f, ∇ₓf). */
interface SabaTables {
  readonly gy: SagaTable;
  readonly hv: SagaTable;
  readonly cv: SagaTable;
  readonly fy: SagaTable;
  readonly fx: SagaTable;
}

const TABLES = ['gy', 'hv', 'cv', 'fy', 'fx'] as const;
const INNER_TABLES = new Set<string>(['gy', 'hv', 'cv']);

/** Checkpoint state of {@link SabaEstimator}. */
export interface SabaState {
  /** The linear-system variable v (flattened, y-shaped), or null before the first step. */
  readonly v: Float32Array | null;
  /** Per table (`gy`, `hv`, `cv`, `fy`, `fx`): its memory and weighted average. */
  readonly tables: Record<string, SabaTableState> | null;
}

/** One SAGA table in a {@link SabaState}. */
export interface SabaTableState {
  /** The memory entries, batch after batch (count × dim, the float32 bits). */
  readonly memory: Float32Array;
  /** Σ_b w_b m_b (float64 numbers). */
  readonly average: Float64Array | number[];
}

function newTable(count: number, dim: number): SagaTable {
  return { dim, memory: new Float32Array(count * dim), average: new Float64Array(dim) };
}

/**
 * The SAGA direction of a table for fresh values `g` on batch b of weight w_b (batch drawn with probability
 * w_b): d = g − m_b + Σ_c w_c m_c, then Σ_c w_c m_c += w_b (g − m_b) and m_b = g. Writes d into `out`.
 */
function sagaStep(t: SagaTable, b: number, weight: number, g: Float32Array, offset: number, out: Float64Array): void {
  const row = b * t.dim;
  for (let k = 0; k < t.dim; k++) {
    const diff = g[offset + k] - t.memory[row + k];
    out[k] += diff + t.average[k];
    t.average[k] += weight * diff;
    t.memory[row + k] = g[offset + k];
  }
}

/** Draws an index with probabilities `weights` (they sum to 1). */
function drawWeighted(rng: Random, count: number, weight: (b: number) => number): number {
  const u = rng.uniform();
  let acc = 0;
  for (let b = 0; b < count; b++) {
    acc += weight(b);
    if (u < acc) return b;
  }
  return count - 1;
}

/**
 * SABA (Dagréou, Ablin, Vaiter & Moreau, "A framework for bilevel optimization that enables stochastic and
 * global variance reduction algorithms", NeurIPS 2022): SOBA with SAGA variance reduction of its three
 * directions. With v the linear-system variable (v* = −[∇²_yy g]⁻¹∇_y f), each outer step draws one fixed
 * inner batch i and one fixed outer batch j (probability ∝ their share of the data) and, at the current
 * (x, y, v),
 *
 *     D_y = SAGA[∇_y g_i],   D_v = SAGA[∇²_yy g_i · v] + SAGA[∇_y f_j],   D_x = SAGA[∇²ₓᵧg_i · v] + SAGA[∇ₓf_j],
 *     y ← y − ρ D_y,   v ← v − ρ_v D_v,   x ← x − γ D_x (the outer optimizer, `gd` with learningRate γ as published),
 *
 * where SAGA[h_b] = h_b − m_b + Σ_c w_c m_c and then m_b ← h_b (m_b: the memory of batch b, w_c the batch
 * weights of the problem's {@link FixedBatches}). All three updates use the same (x, y, v). The estimate is
 * D_x; y moves here (`usesBaseSolve: false`, keep the trainer's `warmStart` on), v lives in the estimator.
 *
 * **Memory.** The data is split once into fixed batches (the problem's `fixedBatches()`, e.g. `hyper-cleaning`
 * or `hyperparameter-optimization` with `batchSize`), with one memory entry per batch and direction:
 * N_in × (2 dim y + dim x) + N_out × (dim y + dim x) floats, with N_in = ⌈n_inner / batchSize⌉ and
 * N_out = ⌈n_outer / outerBatchSize⌉ batches (4 bytes each, held on the CPU); the estimator refuses, naming
 * the size, when this exceeds `maxMemoryFloats`. The memories and v are part of the checkpoint state.
 */
export class SabaEstimator implements HypergradientEstimator {
  readonly name = 'saba';
  /** SABA moves y itself (one step per outer step); the trainer makes no base inner solve. */
  readonly usesBaseSolve = false;
  /** The validated options. */
  readonly options: SabaEstimatorOptions;
  private v: tf.Tensor1D | null = null;
  private tables: SabaTables | null = null;
  private pending: SabaState | null = null;

  constructor(options: z.input<typeof SabaEstimatorOptionsSchema> = {}) {
    this.options = parseOptions(SabaEstimatorOptionsSchema, options, 'estimator.options');
  }

  /** SABA draws its own fixed batches; it reads none of the step's inner minibatches. */
  innerBatchCount(): number {
    return 0;
  }

  /** The number of floats the SAGA memory holds for these sizes. */
  static memoryFloats(innerBatches: number, outerBatches: number, dimY: number, dimX: number): number {
    return innerBatches * (2 * dimY + dimX) + outerBatches * (dimY + dimX);
  }

  private fixedBatchesOf(context: Omit<EstimateContext, 'inner'>): FixedBatches {
    const { problem } = context;
    if (typeof problem.fixedBatches !== 'function') {
      throw new ConfigError(
        `estimator 'saba' needs fixed minibatches drawn by index (BilevelProblem.fixedBatches), which problem ` +
          `'${problem.name}' does not provide; SABA keeps one SAGA memory entry per fixed batch (e.g. hyper-cleaning ` +
          'or hyperparameter-optimization with batchSize provide them)',
        'estimator',
      );
    }
    return problem.fixedBatches();
  }

  private ensureTables(fb: FixedBatches, dimY: number, dimX: number): SabaTables {
    if (this.tables) return this.tables;
    const floats = SabaEstimator.memoryFloats(fb.innerCount, fb.outerCount, dimY, dimX);
    if (floats > this.options.maxMemoryFloats) {
      throw new ConfigError(
        `estimator 'saba': the SAGA memory would hold ${floats.toLocaleString('en-US')} floats ` +
          `(${(floats * 4 / 2 ** 20).toFixed(1)} MiB: ${fb.innerCount} inner batches × (2·${dimY} + ${dimX}) + ` +
          `${fb.outerCount} outer batches × (${dimY} + ${dimX})), more than maxMemoryFloats = ` +
          `${this.options.maxMemoryFloats.toLocaleString('en-US')}; use larger batches or raise maxMemoryFloats`,
        'estimator.options.maxMemoryFloats',
      );
    }
    this.tables = {
      gy: newTable(fb.innerCount, dimY),
      hv: newTable(fb.innerCount, dimY),
      cv: newTable(fb.innerCount, dimX),
      fy: newTable(fb.outerCount, dimY),
      fx: newTable(fb.outerCount, dimX),
    };
    return this.tables;
  }

  /** The five directions' fresh values on inner batch i and outer batch j, flattened, in one read. */
  private read(
    context: Omit<EstimateContext, 'inner'>,
    fb: FixedBatches,
    y: TensorTree,
    v: TensorTree,
    i: number | null,
    j: number | null,
  ): Float32Array {
    const { oracles, x } = context;
    return tidy(() => {
      const parts: tf.Tensor[] = [];
      if (i !== null) {
        const bi = fb.innerBatch(i);
        parts.push(
          treeFlatten(oracles.innerGradY(x, y, bi)),
          treeFlatten(oracles.hessianVectorProduct(x, y, v, bi)),
          treeFlatten(oracles.mixedVectorProduct(x, y, v, bi)),
        );
      }
      if (j !== null) {
        const { value, gradX, gradY } = oracles.outerGrads(x, y, fb.outerBatch(j));
        value.dispose();
        parts.push(treeFlatten(gradY), treeFlatten(gradX));
      }
      return tf.concat(parts).dataSync() as Float32Array;
    });
  }

  /** Fills every memory entry at the first iterate (v = 0, so the Hessian and mixed products are 0). */
  private fillMemories(context: Omit<EstimateContext, 'inner'>, fb: FixedBatches, t: SabaTables, y: TensorTree): void {
    const { oracles, x } = context;
    for (let b = 0; b < fb.innerCount; b++) {
      const g = tidy(() => treeFlatten(oracles.innerGradY(x, y, fb.innerBatch(b))).dataSync() as Float32Array);
      t.gy.memory.set(g, b * t.gy.dim);
      const w = fb.innerWeight(b);
      for (let k = 0; k < t.gy.dim; k++) t.gy.average[k] += w * g[k];
    }
    for (let b = 0; b < fb.outerCount; b++) {
      const g = this.read(context, fb, y, y, null, b);
      t.fy.memory.set(g.subarray(0, t.fy.dim), b * t.fy.dim);
      t.fx.memory.set(g.subarray(t.fy.dim), b * t.fx.dim);
      const w = fb.outerWeight(b);
      for (let k = 0; k < t.fy.dim; k++) t.fy.average[k] += w * g[k];
      for (let k = 0; k < t.fx.dim; k++) t.fx.average[k] += w * g[t.fy.dim + k];
    }
  }

  estimate(context: Omit<EstimateContext, 'inner'>): Estimate {
    const { x, rng } = context;
    const y = context.y0;
    const fb = this.fixedBatchesOf(context);
    const ySpec: TreeSpec = treeSpec(y);
    const dimY = ySpec.total;
    const dimX = treeSpec(x).total;
    const fresh = this.tables === null && (this.pending === null || this.pending.tables === null);
    const t = this.ensureTables(fb, dimY, dimX);
    if (this.pending) this.restorePending(dimY);
    const meter = new OracleCallMeter(context.oracles);
    if (fresh && this.options.initialization === 'full-pass') this.fillMemories(context, fb, t, y);
    if (!this.v) this.v = tf.keep(tf.zeros([dimY]) as tf.Tensor1D);
    const i = drawWeighted(rng, fb.innerCount, (b) => fb.innerWeight(b));
    const j = drawWeighted(rng, fb.outerCount, (b) => fb.outerWeight(b));
    const vTree = tidy(() => treeUnflatten(this.v as tf.Tensor1D, ySpec));
    const g = this.read(context, fb, y, vTree, i, j);
    for (const n of Object.keys(vTree)) vTree[n].dispose();
    const dy = new Float64Array(dimY);
    const dv = new Float64Array(dimY);
    const dx = new Float64Array(dimX);
    let offset = 0;
    const out = { gy: dy, hv: dv, cv: dx, fy: dv, fx: dx };
    for (const name of TABLES) {
      const table = t[name];
      const inner = INNER_TABLES.has(name);
      sagaStep(table, inner ? i : j, inner ? fb.innerWeight(i) : fb.outerWeight(j), g, offset, out[name]);
      offset += table.dim;
    }
    const { stepSize: rho } = this.options;
    const rhoV = this.options.systemStepSize ?? rho;
    const result = tidy(() => {
      const dyTree = treeUnflatten(tf.tensor1d(Float32Array.from(dy)), ySpec);
      const yNext: Record<string, tf.Tensor> = {};
      for (const n of Object.keys(y)) yNext[n] = tf.sub(y[n], tf.mul(dyTree[n], rho));
      const vNext = tf.sub(this.v as tf.Tensor1D, tf.mul(tf.tensor1d(Float32Array.from(dv)), rhoV)) as tf.Tensor1D;
      const hypergradient = treeUnflatten(tf.tensor1d(Float32Array.from(dx)), treeSpec(x));
      return { yNext, vNext: tf.keep(vNext) as tf.Tensor1D, hypergradient };
    });
    this.v?.dispose();
    this.v = result.vNext;
    let dyNorm = 0;
    for (let k = 0; k < dimY; k++) dyNorm += dy[k] * dy[k];
    let dvNorm = 0;
    for (let k = 0; k < dimY; k++) dvNorm += dv[k] * dv[k];
    return {
      hypergradient: result.hypergradient,
      diagnostics: {
        innerBatch: i,
        outerBatch: j,
        systemDirectionNorm: Math.sqrt(dvNorm),
        ...meter.diagnostics(),
      },
      inner: { y: result.yNext, iterations: 1, gradientNorm: Math.sqrt(dyNorm), converged: false },
    };
  }

  private restorePending(dimY: number): void {
    const s = this.pending as SabaState;
    this.pending = null;
    const t = this.tables as SabaTables;
    if (s.tables) {
      for (const name of TABLES) {
        const saved = s.tables[name];
        if (!saved || saved.memory.length !== t[name].memory.length || saved.average.length !== t[name].average.length) {
          throw new Error(
            `saba: saved state does not fit this problem (table '${name}' has ${saved?.memory.length ?? 0} memory ` +
              `entries, expected ${t[name].memory.length})`,
          );
        }
        t[name].memory.set(saved.memory);
        t[name].average.set(saved.average);
      }
    }
    if (s.v) {
      if (s.v.length !== dimY) throw new Error(`saba: saved v has ${s.v.length} entries, y has ${dimY}`);
      this.v?.dispose();
      this.v = tf.keep(tf.tensor1d(Float32Array.from(s.v)));
    }
  }

  /** v and the SAGA memories (a resumed run continues exactly). */
  getState(): PluginState {
    if (this.pending) return this.pending;
    const tables = this.tables
      ? Object.fromEntries(
          TABLES.map((n) => [n, { memory: new Float32Values(this.tables![n].memory), average: Array.from(this.tables![n].average) }]),
        )
      : null;
    const state: SabaState = { v: this.v ? new Float32Values(this.v.dataSync()) : null, tables };
    return state;
  }

  /** Restores a state from {@link SabaEstimator.getState} (applied at the next step, when the sizes are known). */
  setState(state: PluginState): void {
    const s = state as Partial<SabaState> | null;
    if (!s || typeof s !== 'object' || !('v' in s) || !('tables' in s)) {
      throw new Error('saba: saved estimator state must be { v, tables }');
    }
    const asF32 = (a: unknown): Float32Array => Float32Array.from(a as ArrayLike<number>);
    const asF64 = (a: unknown): Float64Array => Float64Array.from(a as ArrayLike<number>);
    this.tables = null;
    this.v?.dispose();
    this.v = null;
    this.pending = {
      v: s.v ? asF32(s.v) : null,
      tables: s.tables
        ? Object.fromEntries(Object.entries(s.tables).map(([n, e]) => [n, { memory: asF32(e.memory), average: asF64(e.average) }]))
        : null,
    };
  }

  /** Releases v. */
  dispose(): void {
    this.v?.dispose();
    this.v = null;
  }
}
