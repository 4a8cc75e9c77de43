import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, createOracles, Random, registry, treeDispose, type TensorTree } from '@bilevel/core';
import { tensorCountGrowth } from '@bilevel/core/testing';
import { HyperRepresentationProblem } from './index';
import { makeHyperRepresentationData, type RegressionSet } from './hyper-representation';
import { finiteDifferenceGradient, gaussianSolve, relativeMaxError } from './test-utils/reference';

const p = 3;
const q = 2;
const d = 2;
const rng = new Random(11);
const set = (count: number): RegressionSet => ({
  inputs: rng.normalArray(count * p),
  targets: rng.normalArray(count),
  count,
});
const data = { inner: set(5), outer: set(4), test: set(3) };
const ridge = 0.2;
const sig = (v: number) => 1 / (1 + Math.exp(-v));

/** Features φ(A) [count, d] in float64 for x given as one flat vector (H, or H₁ then H₂). */
function features(variant: 'linear' | 'deep', x: ArrayLike<number>, s: RegressionSet): Float64Array {
  const out = new Float64Array(s.count * d);
  for (let i = 0; i < s.count; i++) {
    if (variant === 'linear') {
      for (let j = 0; j < d; j++)
        for (let l = 0; l < p; l++) out[i * d + j] += s.inputs[i * p + l] * x[l * d + j];
    } else {
      const hidden = Array.from({ length: q }, (_, m) =>
        sig([0, 1, 2].reduce((acc, l) => acc + s.inputs[i * p + l] * x[l * q + m], 0)),
      );
      for (let j = 0; j < d; j++)
        out[i * d + j] = sig(hidden.reduce((acc, h, m) => acc + h * x[p * q + m * d + j], 0));
    }
  }
  return out;
}
function halfMse(
  variant: 'linear' | 'deep',
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  s: RegressionSet,
): number {
  const z = features(variant, x, s);
  let sum = 0;
  for (let i = 0; i < s.count; i++) sum += (z[i * d] * w[0] + z[i * d + 1] * w[1] - s.targets[i]) ** 2;
  return sum / (2 * s.count);
}
const innerRef = (variant: 'linear' | 'deep', x: ArrayLike<number>, w: ArrayLike<number>) =>
  halfMse(variant, x, w, data.inner) + 0.5 * ridge * (w[0] ** 2 + w[1] ** 2);

function trees(
  variant: 'linear' | 'deep',
  x: ArrayLike<number>,
  w: ArrayLike<number>,
): { x: TensorTree; y: TensorTree } {
  const xf = Float32Array.from(x);
  const xt: TensorTree =
    variant === 'linear'
      ? { representation: tf.tensor2d(xf, [p, d]) }
      : { layer1: tf.tensor2d(xf.slice(0, p * q), [p, q]), layer2: tf.tensor2d(xf.slice(p * q), [q, d]) };
  return { x: xt, y: { head: tf.tensor1d(Float32Array.from(w)) } };
}

for (const variant of ['linear', 'deep'] as const) {
  describe(`hyper-representation (${variant})`, () => {
    const problem = new HyperRepresentationProblem(data, {
      variant,
      inputDimension: p,
      hiddenDimension: q,
      embeddingDimension: d,
      ridge,
    });
    const xv = Float64Array.from(rng.normalArray(variant === 'linear' ? p * d : p * q + q * d));
    const wv = Float64Array.from(rng.normalArray(d));
    afterAll(() => problem.dispose());

    it('losses equal the float64 formulas', () => {
      const { x, y } = trees(variant, xv, wv);
      expect(problem.innerLoss(x, y).dataSync()[0]).toBeCloseTo(innerRef(variant, xv, wv), 4);
      expect(problem.outerLoss(x, y).dataSync()[0]).toBeCloseTo(halfMse(variant, xv, wv, data.outer), 4);
      const m = problem.evaluate(x, y);
      expect(m.testLoss).toBeCloseTo(halfMse(variant, xv, wv, data.test), 4);
      treeDispose(x);
      treeDispose(y);
    });

    it('gradients match finite differences of the float64 losses', () => {
      const oracles = createOracles(problem);
      const { x, y } = trees(variant, xv, wv);
      const flat = (t: TensorTree) =>
        Array.from(
          variant === 'linear'
            ? t.representation.dataSync()
            : [...t.layer1.dataSync(), ...t.layer2.dataSync()],
        );
      const gx = oracles.innerGradX(x, y);
      const gy = oracles.innerGradY(x, y);
      const outer = oracles.outerGrads(x, y);
      expect(
        relativeMaxError(
          flat(gx),
          finiteDifferenceGradient((v) => innerRef(variant, v, wv), xv),
        ),
      ).toBeLessThan(1e-4);
      expect(
        relativeMaxError(
          gy.head.dataSync(),
          finiteDifferenceGradient((w) => innerRef(variant, xv, w), wv),
        ),
      ).toBeLessThan(1e-4);
      expect(
        relativeMaxError(
          flat(outer.gradX),
          finiteDifferenceGradient((v) => halfMse(variant, v, wv, data.outer), xv),
        ),
      ).toBeLessThan(1e-4);
      expect(
        relativeMaxError(
          outer.gradY.head.dataSync(),
          finiteDifferenceGradient((w) => halfMse(variant, xv, w, data.outer), wv),
        ),
      ).toBeLessThan(1e-4);
      tf.dispose([
        ...Object.values(gx),
        ...Object.values(gy),
        outer.value,
        ...Object.values(outer.gradX),
        ...Object.values(outer.gradY),
      ]);
      treeDispose(x);
      treeDispose(y);
    });

    it('the mixed product ∇_x⟨∇_w g, v⟩ matches float64 finite differences (second-order sigmoid path)', () => {
      const vv = rng.normalArray(d);
      const { x, y } = trees(variant, xv, wv);
      const v = { head: tf.tensor1d(vv) };
      const mixed = createOracles(problem).mixedVectorProduct(x, y, v);
      const flat = Array.from(
        variant === 'linear'
          ? mixed.representation.dataSync()
          : [...mixed.layer1.dataSync(), ...mixed.layer2.dataSync()],
      );
      // ⟨∇_w g, v⟩ by finite differences in w (float64), then differentiated in x.
      const dirDeriv = (xx: Float64Array) => {
        const h = 1e-5;
        const plus = Float64Array.from(wv, (w, i) => w + h * vv[i]);
        const minus = Float64Array.from(wv, (w, i) => w - h * vv[i]);
        return (innerRef(variant, xx, plus) - innerRef(variant, xx, minus)) / (2 * h);
      };
      expect(relativeMaxError(flat, finiteDifferenceGradient(dirDeriv, xv, 1e-4))).toBeLessThan(1e-3);
      treeDispose(mixed);
      treeDispose(v);
      treeDispose(x);
      treeDispose(y);
    });

    it('innerLossBatched equals the member-wise losses, also on a minibatch', () => {
      const b = 3;
      const xs: TensorTree =
        variant === 'linear'
          ? { representation: rng.normalTensor([b, p, d]) }
          : { layer1: rng.normalTensor([b, p, q]), layer2: rng.normalTensor([b, q, d]) };
      const ys = { head: rng.normalTensor([b, d]) };
      const batch = tf.tidy(() => {
        const idx = tf.tensor1d([4, 0], 'int32');
        return {
          indices: idx,
          inputs: tf.gather(tf.tensor2d(data.inner.inputs, [5, p]), idx),
          targets: tf.gather(tf.tensor1d(data.inner.targets), idx),
        };
      });
      for (const bt of [undefined, batch]) {
        const all = problem.innerLossBatched(xs, ys, bt).dataSync();
        for (let m = 0; m < b; m++) {
          const single = tf.tidy(() => {
            const xm: TensorTree = {};
            for (const [name, t] of Object.entries(xs))
              (xm as Record<string, tf.Tensor>)[name] = tf.squeeze(tf.slice(t, [m], [1]), [0]);
            return problem
              .innerLoss(xm, { head: tf.squeeze(tf.slice(ys.head, [m], [1]), [0]) }, bt)
              .dataSync()[0];
          });
          expect(all[m]).toBeCloseTo(single, 3);
        }
      }
      // The minibatch loss is the loss of those two samples.
      const { x, y } = trees(variant, xv, wv);
      const sub: RegressionSet = {
        inputs: Float32Array.from([
          ...data.inner.inputs.slice(4 * p, 5 * p),
          ...data.inner.inputs.slice(0, p),
        ]),
        targets: Float32Array.from([data.inner.targets[4], data.inner.targets[0]]),
        count: 2,
      };
      expect(problem.innerLoss(x, y, batch).dataSync()[0]).toBeCloseTo(
        halfMse(variant, xv, wv, sub) + 0.5 * ridge * (wv[0] ** 2 + wv[1] ** 2),
        4,
      );
      treeDispose(x);
      treeDispose(y);
      treeDispose(xs);
      treeDispose(ys);
      treeDispose(batch);
    });
  });
}

describe('hyper-representation closed forms (linear)', () => {
  const problem = new HyperRepresentationProblem(data, {
    variant: 'linear',
    inputDimension: p,
    embeddingDimension: d,
    ridge,
  });
  afterAll(() => problem.dispose());

  /** w*(H) from the normal equations, solved by Gaussian elimination (independent of the problem's Cholesky). */
  const solveRef = (h: ArrayLike<number>) => {
    const z = features('linear', h, data.inner);
    const n = data.inner.count;
    const m = new Float64Array(d * d);
    const r = new Float64Array(d);
    for (let i = 0; i < n; i++) {
      for (let a = 0; a < d; a++) {
        r[a] += (z[i * d + a] * data.inner.targets[i]) / n;
        for (let b = 0; b < d; b++) m[a * d + b] += (z[i * d + a] * z[i * d + b]) / n;
      }
    }
    for (let a = 0; a < d; a++) m[a * d + a] += ridge;
    return gaussianSolve(m, r, d);
  };

  it('innerSolution is the ridge solution and hypergradient is the derivative of Φ(H) = f(H, w*(H))', () => {
    const h = Float64Array.from(rng.normalArray(p * d));
    expect(relativeMaxError(problem.innerSolutionArray(h), solveRef(h))).toBeLessThan(1e-10);
    const phi = (hh: Float64Array) => halfMse('linear', hh, solveRef(hh), data.outer);
    expect(
      relativeMaxError(problem.hypergradientArray(h), finiteDifferenceGradient(phi, h, 1e-6)),
    ).toBeLessThan(1e-6);
    const x = { representation: tf.tensor2d(Float32Array.from(h), [p, d]) };
    const ys = problem.innerSolution?.(x);
    const g = problem.hypergradient?.(x);
    expect(relativeMaxError(ys?.head.dataSync() ?? [], solveRef(h))).toBeLessThan(1e-5);
    expect(g?.representation.shape).toEqual([p, d]);
    treeDispose(x);
    treeDispose(ys);
    treeDispose(g);
  });

  it('the deep variant has no closed forms', () => {
    const deep = new HyperRepresentationProblem(data, {
      variant: 'deep',
      inputDimension: p,
      hiddenDimension: q,
      embeddingDimension: d,
    });
    expect(deep.hypergradient).toBeUndefined();
    expect(deep.ridge).toBe(0.001);
    expect(() => deep.innerSolutionArray(new Float64Array(p * d))).toThrow(/'linear' variant only/);
    deep.dispose();
  });
});

describe('hyper-representation from options', () => {
  it("builds ESJ's linear instance by default and validates options", () => {
    const prob = registry.create('problem', 'hyper-representation', {}) as HyperRepresentationProblem;
    const r = new Random(0);
    const x = prob.initialX(r);
    const y = prob.initialY(r);
    expect(x.representation.shape).toEqual([64, 128]);
    expect(y.head.shape).toEqual([128]);
    expect([prob.ridge, prob.mainMetric]).toEqual([0.1, 'testLoss']);
    const growth = tensorCountGrowth(() => {
      tf.tidy(() => {
        createOracles(prob).innerGradY(x, y);
        createOracles(prob).mixedVectorProduct(x, y, y);
      });
      prob.evaluate(x, y);
    }, 4);
    expect(growth).toEqual([0, 0, 0, 0]);
    treeDispose(x);
    treeDispose(y);
    prob.dispose();
    expect(() => registry.create('problem', 'hyper-representation', { variant: 'wide' })).toThrow(
      /problem\.options\.variant: must be one of 'linear', 'deep'/,
    );
    expect(() => registry.create('problem', 'hyper-representation', { samples: 10, batchSize: 11 })).toThrow(
      ConfigError,
    );
  });

  it('draws inner, outer and test sets from one model with the requested noise', () => {
    const gen = makeHyperRepresentationData({
      variant: 'linear',
      samples: 50,
      testSamples: 0,
      inputDimension: 4,
      hiddenDimension: 3,
      embeddingDimension: 6,
      noise: 0,
      seed: 3,
    });
    expect(gen.test).toBeUndefined();
    // Noise-free targets are linear in the inputs with one shared map: fit it on the inner set, predict the outer set.
    const fit = (s: RegressionSet) => {
      const m = new Float64Array(16);
      const rhs = new Float64Array(4);
      for (let i = 0; i < s.count; i++)
        for (let a = 0; a < 4; a++) {
          rhs[a] += s.inputs[i * 4 + a] * s.targets[i];
          for (let b = 0; b < 4; b++) m[a * 4 + b] += s.inputs[i * 4 + a] * s.inputs[i * 4 + b];
        }
      return gaussianSolve(m, rhs, 4);
    };
    expect(relativeMaxError(fit(gen.inner), fit(gen.outer))).toBeLessThan(1e-4);
  });
});
