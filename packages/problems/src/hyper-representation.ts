import {
  type Batch,
  type BilevelProblem,
  ConfigError,
  type FixedBatches,
  Random,
  sigmoid,
  type TensorTree,
  z,
} from '@bilevel/core';
import { MinibatchSampler } from '@bilevel/datasets';
import {
  fixedBatchesOf,
  FixedSplit,
  MinibatchOptionsShape,
  restoreSamplers,
  samplersState,
  type SamplersState,
} from './classification-data';
import * as tf from '@tensorflow/tfjs-core';
import { choleskySolve64, matMul64, matTMul64 } from './float64';

/** Options of the `hyper-representation` problem. */
export const HyperRepresentationOptionsSchema = z
  .object({
    variant: z
      .enum(['linear', 'deep'])
      .default('linear')
      .describe("'linear': x is one p×d map; 'deep': x is a two-layer sigmoid network σ(σ(A·H₁)·H₂)"),
    samples: z
      .number()
      .int()
      .positive()
      .default(500)
      .describe('n, samples of the inner and of the outer set each'),
    testSamples: z.number().int().min(0).default(500).describe('samples of a held-out test set (testLoss)'),
    inputDimension: z.number().int().positive().default(64).describe('p, input dimension'),
    hiddenDimension: z.number().int().positive().default(128).describe("q, hidden width ('deep' only)"),
    embeddingDimension: z
      .number()
      .int()
      .positive()
      .default(128)
      .describe('d, dimension of the representation'),
    ridge: z
      .number()
      .min(0)
      .optional()
      .describe(
        "weight ρ of the inner ridge penalty ½ρ‖w‖² (default 0.1 for 'linear', 0.001 for 'deep', as in ESJ)",
      ),
    noise: z.number().min(0).default(0.1).describe('standard deviation of the target noise'),
    ...MinibatchOptionsShape,
    seed: z.number().int().min(0).default(0).describe('seed of the data'),
  })
  .strict();
/** Validated options of the `hyper-representation` problem. */
export type HyperRepresentationOptions = z.output<typeof HyperRepresentationOptionsSchema>;

/** Regression samples as plain arrays: inputs [count, p] row-major and targets [count]. */
export interface RegressionSet {
  /** Inputs [count, p], row-major. */
  readonly inputs: Float32Array;
  /** Targets [count]. */
  readonly targets: Float32Array;
  /** Number of samples. */
  readonly count: number;
}

/** Data of a hyper-representation instance. */
export interface HyperRepresentationData {
  /** Samples of the inner (training) loss. */
  readonly inner: RegressionSet;
  /** Samples of the outer (validation) loss. */
  readonly outer: RegressionSet;
  /** Held-out samples for `testLoss`, when there are any. */
  readonly test?: RegressionSet;
}

/** Settings of a {@link HyperRepresentationProblem} built from data directly. */
export interface HyperRepresentationSettings {
  /** `linear`: x is one p × d map; `deep`: a two-layer sigmoid network. */
  readonly variant: 'linear' | 'deep';
  /** p, input dimension. */
  readonly inputDimension: number;
  /** q, hidden width (`deep` only). */
  readonly hiddenDimension?: number;
  /** d, embedding dimension (the size of the head w). */
  readonly embeddingDimension: number;
  /** ρ of the inner penalty ½ρ‖w‖² (default 0.1 for `linear`, 0.001 for `deep`). */
  readonly ridge?: number;
  /** Inner minibatch size (the stochastic variant); full batches when absent. */
  readonly batchSize?: number;
  /** Outer minibatch size; defaults to `batchSize`. */
  readonly outerBatchSize?: number;
  /** Seed of the minibatch samplers (default 0). */
  readonly seed?: number;
}

interface SetTensors {
  readonly inputs: tf.Tensor2D;
  readonly targets: tf.Tensor1D;
  readonly count: number;
  readonly source: RegressionSet;
}

function stdSigmoid(v: number): number {
  return 1 / (1 + Math.exp(-v));
}

/**
 * The synthetic regression data of the ESJ hyper-representation experiments (Sow, Ji & Liang, 2022):
 * a ground-truth representation (linear: H* ~ N(0,1)^{p×d}; deep: H₁* ~ N(0,1)^{p×q}, H₂* ~ N(0,1)^{q×d})
 * and head w* ~ N(0,1)^d; inputs a ~ N(0, I_p); targets t = φ*(a)ᵀw* + noise·ε. The inner, outer and test
 * sets are independent draws of the same model.
 */
export function makeHyperRepresentationData(options: HyperRepresentationOptions): HyperRepresentationData {
  const rng = new Random(options.seed);
  const p = options.inputDimension;
  const q = options.hiddenDimension;
  const d = options.embeddingDimension;
  const h1 = Float64Array.from({ length: options.variant === 'linear' ? p * d : p * q }, () => rng.normal());
  const h2 =
    options.variant === 'deep' ? Float64Array.from({ length: q * d }, () => rng.normal()) : undefined;
  const w = Float64Array.from({ length: d }, () => rng.normal());
  const draw = (count: number): RegressionSet => {
    const inputs = new Float32Array(count * p);
    for (let i = 0; i < inputs.length; i++) inputs[i] = rng.normal();
    let features: Float64Array;
    if (options.variant === 'linear') {
      features = matMul64(inputs, h1, count, p, d);
    } else {
      const hidden = matMul64(inputs, h1, count, p, q).map(stdSigmoid);
      features = matMul64(hidden, h2 as Float64Array, count, q, d).map(stdSigmoid);
    }
    const targets = new Float32Array(count);
    for (let i = 0; i < count; i++) {
      let s = 0;
      for (let j = 0; j < d; j++) s += features[i * d + j] * w[j];
      targets[i] = s + options.noise * rng.normal();
    }
    return { inputs, targets, count };
  };
  const inner = draw(options.samples);
  const outer = draw(options.samples);
  const test = options.testSamples > 0 ? draw(options.testSamples) : undefined;
  return { inner, outer, test };
}

/**
 * Hyper-representation learning (Franceschi et al., ICML 2018; the ESJ experiments of Sow, Ji & Liang,
 * 2022). The outer variable x is a representation φ_x of the inputs, the inner variable y = w a ridge
 * regression head on top of it:
 *
 *     g(x, w) = (1/2n) ‖φ_x(A_in) w − t_in‖² + (ρ/2)‖w‖²          (inner set)
 *     f(x, w) = (1/2n) ‖φ_x(A_out) w − t_out‖²                    (outer set)
 *
 * 'linear': φ_x(A) = A·H with H ∈ ℝ^{p×d} (x = {representation}); ESJ's sizes are n = 500, p = 64,
 * d = 128, ρ = 0.1. 'deep': φ_x(A) = σ(σ(A·H₁)·H₂) (x = {layer1, layer2}), with core's second-order-safe
 * sigmoid. The linear variant has closed forms: w*(H) = (ZᵀZ/n + ρI)⁻¹Zᵀt_in/n with Z = A_in·H, and
 * ∇Φ(H) = ∇_H f − ∇²_{Hw} g · (∇²_{ww} g)⁻¹ ∇_w f, evaluated in float64.
 */
export class HyperRepresentationProblem implements BilevelProblem {
  readonly name = 'hyper-representation';
  readonly mainMetric: string;
  readonly mainMetricHigherIsBetter = false;
  /** `linear` or `deep`. */
  readonly variant: 'linear' | 'deep';
  /** ρ of the inner penalty ½ρ‖w‖². */
  readonly ridge: number;
  /** p, input dimension. */
  readonly p: number;
  /** q, hidden width (used by `deep` only). */
  readonly q: number;
  /** d, embedding dimension. */
  readonly d: number;
  private readonly inner: SetTensors;
  private readonly outer: SetTensors;
  private readonly test?: SetTensors;
  private readonly innerSampler?: MinibatchSampler;
  private readonly outerSampler?: MinibatchSampler;
  sampleInnerBatch?: (rng: Random) => Batch;
  sampleOuterBatch?: (rng: Random) => Batch;
  /**
   * With `batchSize`: the inner and outer sets each split once into fixed batches of `batchSize` and
   * `outerBatchSize` (seeded by `seed`; the last batch of each holds the rest). Absent without `batchSize`.
   */
  fixedBatches?: () => FixedBatches;
  innerSolution?: (x: TensorTree) => TensorTree;
  hypergradient?: (x: TensorTree) => TensorTree;

  constructor(data: HyperRepresentationData, settings: HyperRepresentationSettings) {
    this.variant = settings.variant;
    this.p = settings.inputDimension;
    this.q = settings.hiddenDimension ?? 128;
    this.d = settings.embeddingDimension;
    this.ridge = settings.ridge ?? (this.variant === 'linear' ? 0.1 : 0.001);
    if (!(this.ridge >= 0)) throw new Error(`hyper-representation: ridge must be >= 0 (got ${this.ridge})`);
    const keep = (name: string, s: RegressionSet): SetTensors => {
      if (s.inputs.length !== s.count * this.p || s.targets.length !== s.count) {
        throw new Error(
          `hyper-representation: ${name} set needs ${s.count}×${this.p} inputs and ${s.count} targets ` +
            `(got ${s.inputs.length} and ${s.targets.length})`,
        );
      }
      for (let i = 0; i < s.inputs.length; i++) {
        if (!Number.isFinite(s.inputs[i]))
          throw new Error(`hyper-representation: ${name} input ${i} is ${s.inputs[i]}`);
      }
      return {
        inputs: tf.keep(tf.tensor2d(s.inputs, [s.count, this.p])),
        targets: tf.keep(tf.tensor1d(s.targets)),
        count: s.count,
        source: s,
      };
    };
    this.inner = keep('inner', data.inner);
    this.outer = keep('outer', data.outer);
    this.test = data.test ? keep('test', data.test) : undefined;
    this.mainMetric = this.test ? 'testLoss' : 'outerLoss';
    const seed = settings.seed ?? 0;
    const outerBatch = settings.outerBatchSize ?? settings.batchSize;
    if (settings.batchSize !== undefined) {
      const sampler = new MinibatchSampler(this.inner.count, settings.batchSize, seed + 11);
      this.innerSampler = sampler;
      this.sampleInnerBatch = (rng: Random) => this.gatherBatch(this.inner, sampler.next(rng));
    }
    if (outerBatch !== undefined) {
      const sampler = new MinibatchSampler(this.outer.count, outerBatch, seed + 12);
      this.outerSampler = sampler;
      this.sampleOuterBatch = (rng: Random) => this.gatherBatch(this.outer, sampler.next(rng));
    }
    if (settings.batchSize !== undefined) {
      const sizes = { inner: settings.batchSize, outer: outerBatch ?? settings.batchSize };
      let split: FixedBatches | undefined;
      this.fixedBatches = () =>
        (split ??= fixedBatchesOf(
          new FixedSplit('inner', this.inner.count, sizes.inner, seed + 13, (idx) => this.gatherBatch(this.inner, idx)),
          new FixedSplit('outer', this.outer.count, sizes.outer, seed + 14, (idx) => this.gatherBatch(this.outer, idx)),
        ));
    }
    if (this.variant === 'linear') {
      this.innerSolution = (x: TensorTree) => ({
        head: tf.tensor1d(Float32Array.from(this.innerSolutionArray(x.representation.dataSync()))),
      });
      this.hypergradient = (x: TensorTree) => ({
        representation: tf.tensor2d(Float32Array.from(this.hypergradientArray(x.representation.dataSync())), [
          this.p,
          this.d,
        ]),
      });
    }
  }

  /** Builds the data described by the options (seeded synthetic regression) and the problem on it. */
  static fromOptions(options: HyperRepresentationOptions): HyperRepresentationProblem {
    for (const [field, size, limit] of [
      ['batchSize', options.batchSize, options.samples],
      ['outerBatchSize', options.outerBatchSize ?? options.batchSize, options.samples],
    ] as const) {
      if (size !== undefined && size > limit) {
        throw new ConfigError(
          `problem.options.${field} = ${size} exceeds samples = ${limit}`,
          `problem.options.${field}`,
        );
      }
    }
    return new HyperRepresentationProblem(makeHyperRepresentationData(options), options);
  }

  private gatherBatch(set: SetTensors, indices: Int32Array): Batch {
    return tf.tidy((): Record<string, tf.Tensor> => {
      const idx = tf.tensor1d(indices, 'int32');
      return { indices: idx, inputs: tf.gather(set.inputs, idx), targets: tf.gather(set.targets, idx) };
    });
  }

  private data(set: SetTensors, batch?: Batch): { inputs: tf.Tensor2D; targets: tf.Tensor1D; count: number } {
    if (!batch) return set;
    if (!batch.inputs || !batch.targets)
      throw new Error("hyper-representation batch needs 'inputs' and 'targets'");
    return {
      inputs: batch.inputs as tf.Tensor2D,
      targets: batch.targets as tf.Tensor1D,
      count: batch.inputs.shape[0],
    };
  }

  initialX(rng: Random): TensorTree {
    if (this.variant === 'linear') return { representation: rng.normalTensor([this.p, this.d]) };
    return { layer1: rng.normalTensor([this.p, this.q]), layer2: rng.normalTensor([this.q, this.d]) };
  }

  initialY(rng: Random): TensorTree {
    return { head: rng.normalTensor([this.d]) };
  }

  /** Predictions φ_x(A)·w for one model: [count]. */
  private predict(x: TensorTree, w: tf.Tensor, inputs: tf.Tensor2D): tf.Tensor1D {
    const head = tf.reshape(w, [this.d, 1]);
    if (this.variant === 'linear') {
      // A·(H·w) costs O(n·p + p·d) instead of O(n·p·d).
      return tf.reshape(tf.matMul(inputs, tf.matMul(x.representation, head)), [-1]) as tf.Tensor1D;
    }
    const hidden = sigmoid(tf.matMul(inputs, x.layer1));
    const features = sigmoid(tf.matMul(hidden, x.layer2));
    return tf.reshape(tf.matMul(features, head), [-1]) as tf.Tensor1D;
  }

  private halfMeanSquare(pred: tf.Tensor, targets: tf.Tensor, count: number): tf.Scalar {
    return tf.div(tf.sum(tf.square(tf.sub(pred, targets))), 2 * count) as tf.Scalar;
  }

  innerLoss(x: TensorTree, y: TensorTree, batch?: Batch): tf.Scalar {
    return tf.tidy(() => {
      const { inputs, targets, count } = this.data(this.inner, batch);
      const fit = this.halfMeanSquare(this.predict(x, y.head, inputs), targets, count);
      return tf.add(fit, tf.mul(0.5 * this.ridge, tf.sum(tf.square(y.head)))) as tf.Scalar;
    });
  }

  outerLoss(x: TensorTree, y: TensorTree, batch?: Batch): tf.Scalar {
    return tf.tidy(() => {
      const { inputs, targets, count } = this.data(this.outer, batch);
      return this.halfMeanSquare(this.predict(x, y.head, inputs), targets, count);
    });
  }

  /** g for B stacked (x_b, w_b): x tensors and y.head carry a leading axis B; returns [B]. */
  innerLossBatched(xs: TensorTree, ys: TensorTree, batch?: Batch): tf.Tensor1D {
    return tf.tidy(() => {
      const { inputs, targets, count } = this.data(this.inner, batch);
      const members = ys.head.shape[0];
      const heads = tf.reshape(ys.head, [members, this.d, 1]);
      let pred: tf.Tensor2D; // [B, count]
      if (this.variant === 'linear') {
        const v = tf.reshape(tf.matMul(xs.representation, heads), [members, this.p]); // H_b·w_b
        pred = tf.transpose(tf.matMul(inputs, v, false, true)) as tf.Tensor2D;
      } else {
        const hidden = sigmoid(tf.matMul(inputs, xs.layer1)); // broadcast: [count,p]·[B,p,q] → [B,count,q]
        const features = sigmoid(tf.matMul(hidden, xs.layer2));
        pred = tf.reshape(tf.matMul(features, heads), [members, count]) as tf.Tensor2D;
      }
      const fit = tf.div(tf.sum(tf.square(tf.sub(pred, targets)), 1), 2 * count);
      return tf.add(fit, tf.mul(0.5 * this.ridge, tf.sum(tf.square(ys.head), 1))) as tf.Tensor1D;
    });
  }

  /** Z = A·H in float64 for a set and a row-major H [p, d]. */
  private features64(set: SetTensors, h: ArrayLike<number>): Float64Array {
    return matMul64(set.source.inputs, h, set.count, this.p, this.d);
  }

  /** Inner Hessian ∇²_ww g = ZᵀZ/n + ρI (float64, d×d). */
  private innerHessian64(z: Float64Array): Float64Array {
    const s = matTMul64(z, z, this.inner.count, this.d, this.d);
    for (let i = 0; i < s.length; i++) s[i] /= this.inner.count;
    for (let i = 0; i < this.d; i++) s[i * this.d + i] += this.ridge;
    return s;
  }

  /** w*(H) = (ZᵀZ/n + ρI)⁻¹ Zᵀt/n, Z = A_in·H ('linear' only; float64). */
  innerSolutionArray(h: ArrayLike<number>): Float64Array {
    this.requireLinear();
    const z = this.features64(this.inner, h);
    const rhs = matTMul64(z, this.inner.source.targets, this.inner.count, this.d, 1).map(
      (v) => v / this.inner.count,
    );
    return choleskySolve64(this.innerHessian64(z), rhs, this.d);
  }

  /**
   * ∇Φ(H) = ∇_H f − ∇²_{Hw} g · u with u = (∇²_ww g)⁻¹ ∇_w f at w = w*(H) ('linear' only; float64):
   * ∇_H f = A_outᵀ r_out wᵀ / n, ∇_w f = Z_outᵀ r_out / n and
   * ∇²_{Hw} g · u = (A_inᵀ r_in uᵀ + A_inᵀ (A_in H u) wᵀ) / n, where r = A H w − t.
   */
  hypergradientArray(h: ArrayLike<number>): Float64Array {
    this.requireLinear();
    const { p, d } = this;
    const nIn = this.inner.count;
    const nOut = this.outer.count;
    const zIn = this.features64(this.inner, h);
    const w = choleskySolve64(
      this.innerHessian64(zIn),
      matTMul64(zIn, this.inner.source.targets, nIn, d, 1).map((v) => v / nIn),
      d,
    );
    const residual = (z: Float64Array, t: Float32Array, n: number) => {
      const r = matMul64(z, w, n, d, 1);
      for (let i = 0; i < n; i++) r[i] -= t[i];
      return r;
    };
    const zOut = this.features64(this.outer, h);
    const rOut = residual(zOut, this.outer.source.targets, nOut);
    const gradW = matTMul64(zOut, rOut, nOut, d, 1).map((v) => v / nOut);
    const u = choleskySolve64(this.innerHessian64(zIn), gradW, d);
    const rIn = residual(zIn, this.inner.source.targets, nIn);
    const aOutR = matTMul64(this.outer.source.inputs, rOut, nOut, p, 1);
    const aInR = matTMul64(this.inner.source.inputs, rIn, nIn, p, 1);
    const hu = matMul64(h, u, p, d, 1);
    const aInHu = matTMul64(
      this.inner.source.inputs,
      matMul64(this.inner.source.inputs, hu, nIn, p, 1),
      nIn,
      p,
      1,
    );
    const out = new Float64Array(p * d);
    for (let i = 0; i < p; i++) {
      for (let j = 0; j < d; j++) {
        out[i * d + j] = (aOutR[i] * w[j]) / nOut - (aInR[i] * u[j] + aInHu[i] * w[j]) / nIn;
      }
    }
    return out;
  }

  private requireLinear(): void {
    if (this.variant !== 'linear')
      throw new Error("hyper-representation: closed forms exist for the 'linear' variant only");
  }

  /** innerLoss and outerLoss on the whole sets, and testLoss (½ mean squared error) on the test set. */
  evaluate(x: TensorTree, y: TensorTree): Record<string, number> {
    return tf.tidy(() => {
      const out: Record<string, number> = {
        innerLoss: this.innerLoss(x, y).dataSync()[0],
        outerLoss: this.outerLoss(x, y).dataSync()[0],
      };
      if (this.test) {
        out.testLoss = this.halfMeanSquare(
          this.predict(x, y.head, this.test.inputs),
          this.test.targets,
          this.test.count,
        ).dataSync()[0];
      }
      return out;
    });
  }

  /** The minibatch samplers' positions (checkpoints: a resumed run draws the same batches). */
  getState(): SamplersState {
    return samplersState({ inner: this.innerSampler, outer: this.outerSampler });
  }

  setState(state: unknown): void {
    restoreSamplers(this.name, state, { inner: this.innerSampler, outer: this.outerSampler });
  }

  dispose(): void {
    for (const s of [this.inner, this.outer, this.test]) {
      if (!s) continue;
      s.inputs.dispose();
      s.targets.dispose();
    }
  }
}
