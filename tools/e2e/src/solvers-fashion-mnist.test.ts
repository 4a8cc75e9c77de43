import * as tf from '@tensorflow/tfjs-core';
import { type BilevelProblem, createOracles, softmaxCrossEntropy, type TensorTree } from '@bilevel/core';
import { findFashionMnist, loadFashionMnist } from '@bilevel/datasets';
import { GradientDescentSolver, LbfgsSolver } from '@bilevel/solvers';

/**
 * L2-regularized multinomial logistic regression, the inner problem of data hyper-cleaning:
 *
 *     g(λ, W, b) = (1/n) Σᵢ CE(softmax(Wᵀaᵢ + b), cᵢ) + (λ/2)‖W‖²
 *
 * with λ the outer variable (held fixed here).
 */
class LogisticRegression implements BilevelProblem {
  readonly name = 'logistic-regression';
  private readonly a: tf.Tensor2D;
  private readonly c: tf.Tensor2D;

  constructor(
    images: Float32Array,
    labels: Int32Array,
    readonly n: number,
    readonly features: number,
    readonly classes: number,
    readonly l2: number,
  ) {
    this.a = tf.keep(tf.tensor2d(images, [n, features]));
    this.c = tf.keep(tf.oneHot(tf.tensor1d(labels, 'int32'), classes).toFloat() as tf.Tensor2D);
  }

  initialX(): TensorTree {
    return { l2: tf.scalar(this.l2) };
  }

  initialY(): TensorTree {
    return { b: tf.zeros([this.classes]), w: tf.zeros([this.features, this.classes]) };
  }

  innerLoss(x: TensorTree, y: TensorTree): tf.Scalar {
    return tf.tidy(() => {
      const logits = tf.add(tf.matMul(this.a, y.w), y.b) as tf.Tensor2D;
      const ce = softmaxCrossEntropy(logits, this.c) as tf.Scalar;
      return tf.add(ce, tf.mul(tf.mul(x.l2, 0.5), tf.sum(tf.square(y.w)))) as tf.Scalar;
    });
  }

  outerLoss(x: TensorTree, y: TensorTree): tf.Scalar {
    return this.innerLoss(x, y);
  }

  dispose(): void {
    tf.dispose([this.a, this.c]);
  }
}

/** Float64 reference of g at (W, b): the comparison below does not rest on float32 loss values. */
function referenceLoss(
  images: Float32Array,
  labels: Int32Array,
  n: number,
  features: number,
  classes: number,
  l2: number,
  w: Float32Array,
  b: Float32Array,
): number {
  let total = 0;
  const z = new Float64Array(classes);
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < classes; k++) z[k] = b[k];
    for (let j = 0; j < features; j++) {
      const aij = images[i * features + j];
      if (aij === 0) continue;
      for (let k = 0; k < classes; k++) z[k] += aij * w[j * classes + k];
    }
    let m = -Infinity;
    for (let k = 0; k < classes; k++) m = Math.max(m, z[k]);
    let se = 0;
    for (let k = 0; k < classes; k++) se += Math.exp(z[k] - m);
    total += m + Math.log(se) - z[labels[i]];
  }
  let w2 = 0;
  for (let j = 0; j < w.length; j++) w2 += w[j] * w[j];
  return total / n + 0.5 * l2 * w2;
}

/**
 * Lipschitz constant of ∇g: L = ½λmax(ÃᵀÃ/n) + λ with Ã = [A 1] (the softmax cross-entropy Hessian in
 * the logits is at most ½I, Böhning 1992), by float64 power iteration.
 */
function lipschitz(images: Float32Array, n: number, features: number, l2: number): number {
  const d = features + 1;
  let v = new Float64Array(d).fill(1 / Math.sqrt(d));
  let lambda = 0;
  for (let it = 0; it < 50; it++) {
    const av = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      let s = v[features];
      for (let j = 0; j < features; j++) s += images[i * features + j] * v[j];
      av[i] = s;
    }
    const next = new Float64Array(d);
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < features; j++) next[j] += images[i * features + j] * av[i];
      next[features] += av[i];
    }
    let nn = 0;
    for (let j = 0; j < d; j++) nn += next[j] * next[j];
    nn = Math.sqrt(nn);
    lambda = nn / n;
    v = next.map((x) => x / nn);
  }
  return 0.5 * lambda + l2;
}

const folder = findFashionMnist();
if (!folder) {
  console.warn(
    'solvers-fashion-mnist: SKIPPED — Fashion-MNIST was not found (explicit path, BILEVEL_DATA_PATH, ~/.cache/bilevel, ' +
      '/usr/share/datasets); install it with `apt-get install dataset-fashion-mnist`.',
  );
}

(folder ? describe : describe.skip)('L-BFGS against GD on Fashion-MNIST logistic regression', () => {
  it("L-BFGS reaches GD's final loss (relative 1e-4) with fewer gradient evaluations", () => {
    const n = 1000;
    const l2 = 1e-3;
    const data = loadFashionMnist({ split: 'train', limit: n });
    const features = data.rows * data.cols;
    expect(data.count).toBe(n);
    const problem = new LogisticRegression(data.images, data.labels, n, features, data.classes, l2);
    const x = problem.initialX();
    const y0 = problem.initialY();
    const reference = (y: TensorTree) =>
      referenceLoss(
        data.images,
        data.labels,
        n,
        features,
        data.classes,
        l2,
        y.w.dataSync() as Float32Array,
        y.b.dataSync() as Float32Array,
      );

    // GD with the standard safe step 1/L for a fixed budget.
    const gdOracles = createOracles(problem);
    const gdIterations = 50;
    const gd = new GradientDescentSolver({
      stepSize: 1 / lipschitz(data.images, n, features, l2),
      maxIterations: gdIterations,
    }).solve({
      oracles: gdOracles,
      x,
      y0,
    });
    const gdLoss = reference(gd.y);
    const gdEvaluations = gdOracles.counts.innerGradY + gdOracles.counts.innerValue;
    expect(gdEvaluations).toBe(gdIterations);

    // L-BFGS (strong Wolfe) until its loss is within 1e-4 (relative) of GD's.
    const target = gdLoss * (1 + 1e-4);
    const lbfgsOracles = createOracles(problem);
    const lbfgs = new LbfgsSolver({ maxIterations: gdIterations, memory: 10 }).solve({
      oracles: lbfgsOracles,
      x,
      y0,
      onIteration: (e) => e.value <= target,
    });
    const lbfgsLoss = reference(lbfgs.y);
    const lbfgsEvaluations = lbfgsOracles.counts.innerGradY + lbfgsOracles.counts.innerValue;
    console.log(
      `Fashion-MNIST (n = ${n}, λ = ${l2}): GD ${gdIterations} steps → g = ${gdLoss.toFixed(6)} (${gdEvaluations} ` +
        `gradients); L-BFGS ${lbfgs.iterations} steps → g = ${lbfgsLoss.toFixed(6)} (${lbfgsEvaluations} gradients)`,
    );
    expect(lbfgs.stoppedBy).toBe('observer');
    expect(lbfgsLoss).toBeLessThanOrEqual(gdLoss * (1 + 1e-4));
    expect(lbfgsEvaluations).toBeLessThan(gdEvaluations);
    tf.dispose([x.l2, y0.w, y0.b, gd.y.w, gd.y.b, lbfgs.y.w, lbfgs.y.b]);
    lbfgs.curvature.dispose();
    problem.dispose();
  });
});
