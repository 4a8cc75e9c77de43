import { Random } from '@bilevel/core';

/** Dense labeled data, one sample per row (row-major). */
export interface ClassificationData {
  /** count × dimension features. */
  readonly inputs: Float32Array;
  /** count labels in 0..classes−1. */
  readonly labels: Int32Array;
  /** Number of samples. */
  readonly count: number;
  /** Number of features. */
  readonly dimension: number;
  /** Number of classes. */
  readonly classes: number;
}

/** Dense regression data, one sample per row (row-major). */
export interface RegressionData {
  /** count × dimension inputs. */
  readonly inputs: Float32Array;
  /** count × outputs targets. */
  readonly targets: Float32Array;
  /** Number of samples. */
  readonly count: number;
  /** Number of inputs per sample. */
  readonly dimension: number;
  /** Number of targets per sample. */
  readonly outputs: number;
}

/** Options of {@link makeClassification}. */
export interface ClassificationOptions {
  /** Number of samples. */
  readonly samples: number;
  /** Number of features. */
  readonly features: number;
  /** Number of classes. */
  readonly classes: number;
  /** Seed (default 0). */
  readonly seed?: number;
  /** Distance scale of the class means: μ_c ~ N(0, (separation²/features)·I), so ‖μ_c‖ ≈ separation. */
  readonly separation?: number;
  /** Standard deviation of the within-class Gaussian noise. */
  readonly noise?: number;
}

function checkCount(name: string, v: number, min: number): void {
  if (!Number.isInteger(v) || v < min)
    throw new RangeError(`${name} must be an integer >= ${min} (got ${v})`);
}

/**
 * A seeded Gaussian-mixture classification set: class means μ_c with i.i.d. N(0, separation²/features)
 * entries, labels balanced (sample i has class i mod k, then shuffled) and
 *
 *     a_i = μ_{y_i} + noise · ε_i,    ε_i ~ N(0, I).
 *
 * The same options always give the same data.
 */
export function makeClassification(options: ClassificationOptions): ClassificationData {
  const { samples, features, classes } = options;
  checkCount('samples', samples, 1);
  checkCount('features', features, 1);
  checkCount('classes', classes, 2);
  const separation = options.separation ?? 3;
  const noise = options.noise ?? 1;
  const rng = new Random(options.seed ?? 0);
  const meanScale = separation / Math.sqrt(features);
  const means = Float64Array.from({ length: classes * features }, () => meanScale * rng.normal());
  const order = rng.permutation(samples);
  const labels = new Int32Array(samples);
  for (let i = 0; i < samples; i++) labels[order[i]] = i % classes;
  const inputs = new Float32Array(samples * features);
  for (let i = 0; i < samples; i++) {
    const c = labels[i];
    for (let j = 0; j < features; j++)
      inputs[i * features + j] = means[c * features + j] + noise * rng.normal();
  }
  return { inputs, labels, count: samples, dimension: features, classes };
}

/** Options of {@link makeRegression}. */
export interface RegressionOptions {
  /** Number of samples. */
  readonly samples: number;
  /** Number of inputs per sample. */
  readonly features: number;
  /** Number of targets per sample (default 1). */
  readonly outputs?: number;
  /** Seed (default 0). */
  readonly seed?: number;
  /** Standard deviation of the target noise. */
  readonly noise?: number;
  /** The true weights (features × outputs, row-major); drawn N(0, 1) when absent. */
  readonly weights?: ArrayLike<number>;
}

/**
 * A seeded linear regression set: inputs a_i ~ N(0, I), targets t_i = Wᵀa_i + noise·ε_i with
 * W ~ N(0, 1) entries unless given. Returns the weights used.
 */
export function makeRegression(
  options: RegressionOptions,
): RegressionData & {
  /** The true weights used (features × outputs, row-major). */
  readonly weights: Float64Array;
} {
  const { samples, features } = options;
  const outputs = options.outputs ?? 1;
  checkCount('samples', samples, 1);
  checkCount('features', features, 1);
  checkCount('outputs', outputs, 1);
  const noise = options.noise ?? 0.1;
  const rng = new Random(options.seed ?? 0);
  let weights: Float64Array;
  if (options.weights) {
    if (options.weights.length !== features * outputs) {
      throw new RangeError(
        `weights must hold features × outputs = ${features * outputs} values (got ${options.weights.length})`,
      );
    }
    weights = Float64Array.from(options.weights);
  } else {
    weights = Float64Array.from({ length: features * outputs }, () => rng.normal());
  }
  const inputs = new Float32Array(samples * features);
  for (let i = 0; i < inputs.length; i++) inputs[i] = rng.normal();
  const targets = new Float32Array(samples * outputs);
  for (let i = 0; i < samples; i++) {
    for (let o = 0; o < outputs; o++) {
      let s = 0;
      for (let j = 0; j < features; j++) s += inputs[i * features + j] * weights[j * outputs + o];
      targets[i * outputs + o] = s + noise * rng.normal();
    }
  }
  return { inputs, targets, count: samples, dimension: features, outputs, weights };
}
