import * as tf from '@tensorflow/tfjs-core';
import {
  ConfigError,
  createOracles,
  DataError,
  Random,
  registry,
  treeDispose,
  type TensorTree,
} from '@bilevel/core';
import { tensorCountGrowth } from '@bilevel/core/testing';
import { findFashionMnist } from '@bilevel/datasets';
import { isBlasAvailable, registerBlasBackend } from '@bilevel/tfjs-blas';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HyperCleaningProblem } from './index';
import { cleaningFlagScores } from './hyper-cleaning';
import { finiteDifferenceGradient, relativeMaxError, softmaxReference } from './test-utils/reference';

const sigma = (v: number) => 1 / (1 + Math.exp(-v));

describe('cleaningFlagScores', () => {
  it('computes precision, recall and F1 of the clean and the corrupted flags on a crafted case', () => {
    // Flagged clean (x > 0): samples 0, 1, 4, 5, 6. Truly clean: 0, 1, 2, 6.
    const s = cleaningFlagScores([2, 1, -1, -3, 0.5, 0.7, 3], [0, 0, 0, 1, 1, 1, 0]);
    expect(s.clean.precision).toBeCloseTo(3 / 5, 12);
    expect(s.clean.recall).toBeCloseTo(3 / 4, 12);
    expect(s.clean.f1).toBeCloseTo((2 * 0.6 * 0.75) / 1.35, 12);
    // Flagged corrupted: 2, 3. Truly corrupted: 3, 4, 5.
    expect(s.corrupted.precision).toBeCloseTo(1 / 2, 12);
    expect(s.corrupted.recall).toBeCloseTo(1 / 3, 12);
    expect(s.corrupted.f1).toBeCloseTo(0.4, 12);
    // σ(0) = 0.5 is not > 0.5: nothing is flagged clean, so precision and F1 are 0.
    expect(cleaningFlagScores([0, 0], [0, 1]).clean).toEqual({ precision: 0, recall: 0, f1: 0 });
    expect(() => cleaningFlagScores([1], [0, 1])).toThrow(/1 weights for 2 samples/);
  });
});

describe('hyper-cleaning', () => {
  // Hand-made data: 5 training samples with 3 features and 3 classes, 3 validation, 4 test samples.
  const d = 3;
  const k = 3;
  const train = {
    inputs: Float32Array.from([1, 0, 0.5, 0, 1, -1, 2, 1, 0, -1, 0.5, 1, 0.3, -0.7, 2]),
    labels: Int32Array.from([0, 1, 2, 1, 0]),
    count: 5,
    dimension: d,
    classes: k,
  };
  const validation = {
    inputs: Float32Array.from([1, 1, 1, 0, -1, 2, 0.5, 0.5, -0.5]),
    labels: Int32Array.from([2, 0, 1]),
    count: 3,
    dimension: d,
    classes: k,
  };
  const test = {
    inputs: Float32Array.from([1, 0, 0, 0, 1, 0, 0, 0, 1, 1, 1, 1]),
    labels: Int32Array.from([0, 1, 2, 0]),
    count: 4,
    dimension: d,
    classes: k,
  };
  const corrupted = Uint8Array.from([0, 1, 0, 0, 1]);
  const lambda = 0.3;
  const problem = new HyperCleaningProblem({ train, corrupted, validation, test }, { innerL2: lambda });
  const rng = new Random(2);
  const xv = Float64Array.from([0.4, -1.2, 0.1, 2, -0.3]);
  const wv = Float64Array.from(rng.normalArray(d * k));
  const bv = Float64Array.from(rng.normalArray(k));
  const tensors = (
    x: ArrayLike<number>,
    w: ArrayLike<number>,
    b: ArrayLike<number>,
  ): { x: TensorTree; y: TensorTree } => ({
    x: { sampleLogits: tf.tensor1d(Float32Array.from(x)) },
    y: { weights: tf.tensor2d(Float32Array.from(w), [d, k]), bias: tf.tensor1d(Float32Array.from(b)) },
  });
  const innerRef = (x: ArrayLike<number>, w: ArrayLike<number>, b: ArrayLike<number>) => {
    const { ce } = softmaxReference(train.inputs, train.labels, w, b, 5, d, k);
    let s = 0;
    for (let i = 0; i < 5; i++) s += sigma(x[i]) * ce[i];
    let reg = 0;
    for (let i = 0; i < d * k; i++) reg += w[i] * w[i];
    return s / 5 + 0.5 * lambda * reg;
  };
  const outerRef = (w: ArrayLike<number>, b: ArrayLike<number>) => {
    const { ce } = softmaxReference(validation.inputs, validation.labels, w, b, 3, d, k);
    return ce.reduce((a, c) => a + c, 0) / 3;
  };
  afterAll(() => problem.dispose());

  it('losses equal the float64 formulas g = Σσ(x_i)CE_i/n + (λ/2)‖W‖² and f = mean validation CE', () => {
    const { x, y } = tensors(xv, wv, bv);
    expect(problem.innerLoss(x, y).dataSync()[0]).toBeCloseTo(innerRef(xv, wv, bv), 5);
    expect(problem.outerLoss(x, y).dataSync()[0]).toBeCloseTo(outerRef(wv, bv), 5);
    treeDispose(x);
    treeDispose(y);
  });

  it('gradients match closed forms and finite differences', () => {
    const oracles = createOracles(problem);
    const { x, y } = tensors(xv, wv, bv);
    const { ce } = softmaxReference(train.inputs, train.labels, wv, bv, 5, d, k);
    // ∂g/∂x_i = σ'(x_i)·CE_i/n.
    const gx = oracles.innerGradX(x, y);
    expect(
      relativeMaxError(
        gx.sampleLogits.dataSync(),
        Array.from(xv, (t, i) => (sigma(t) * (1 - sigma(t)) * ce[i]) / 5),
      ),
    ).toBeLessThan(1e-5);
    const gy = oracles.innerGradY(x, y);
    const fdW = finiteDifferenceGradient((w) => innerRef(xv, w, bv), wv);
    const fdB = finiteDifferenceGradient((b) => innerRef(xv, wv, b), bv);
    expect(relativeMaxError(gy.weights.dataSync(), fdW)).toBeLessThan(1e-5);
    expect(relativeMaxError(gy.bias.dataSync(), fdB)).toBeLessThan(1e-5);
    const outer = oracles.outerGrads(x, y);
    expect(
      relativeMaxError(
        outer.gradY.weights.dataSync(),
        finiteDifferenceGradient((w) => outerRef(w, bv), wv),
      ),
    ).toBeLessThan(1e-5);
    expect(Math.max(...Array.from(outer.gradX.sampleLogits.dataSync(), Math.abs))).toBe(0);
    tf.dispose([
      gx.sampleLogits,
      gy.weights,
      gy.bias,
      outer.value,
      outer.gradX.sampleLogits,
      outer.gradY.weights,
      outer.gradY.bias,
    ]);
    treeDispose(x);
    treeDispose(y);
  });

  it('second-order products: the mixed product has a closed form and the Hessian product matches finite differences', () => {
    const { x, y } = tensors(xv, wv, bv);
    const vw = rng.normalArray(d * k);
    const vb = rng.normalArray(k);
    const v = { weights: tf.tensor2d(vw, [d, k]), bias: tf.tensor1d(vb) };
    const auto = createOracles(problem);
    const fd = createOracles(problem, { secondOrder: 'finite-difference', finiteDifferenceStep: 1e-2 });
    // ∂/∂x_i ⟨∇_y g, v⟩ = σ'(x_i)/n · (p_i − t_i)ᵀ(Vᵀa_i + v_b).
    const { probs } = softmaxReference(train.inputs, train.labels, wv, bv, 5, d, k);
    const mixedRef = Array.from({ length: 5 }, (_, i) => {
      let s = 0;
      for (let c = 0; c < k; c++) {
        let va = vb[c];
        for (let j = 0; j < d; j++) va += vw[j * k + c] * train.inputs[i * d + j];
        s += (probs[i * k + c] - (train.labels[i] === c ? 1 : 0)) * va;
      }
      return (sigma(xv[i]) * (1 - sigma(xv[i])) * s) / 5;
    });
    const mixed = auto.mixedVectorProduct(x, y, v);
    expect(relativeMaxError(mixed.sampleLogits.dataSync(), mixedRef)).toBeLessThan(1e-5);
    const hA = auto.hessianVectorProduct(x, y, v);
    const hF = fd.hessianVectorProduct(x, y, v);
    expect(relativeMaxError(hA.weights.dataSync(), hF.weights.dataSync())).toBeLessThan(2e-3);
    expect(relativeMaxError(hA.bias.dataSync(), hF.bias.dataSync())).toBeLessThan(2e-3);
    tf.dispose([mixed.sampleLogits, hA.weights, hA.bias, hF.weights, hF.bias]);
    treeDispose(v);
    treeDispose(x);
    treeDispose(y);
  });

  it('innerLossBatched equals member-wise losses, on the full set and on a batch', () => {
    const b = 2;
    const xs = { sampleLogits: rng.normalTensor([b, 5]) };
    const ys = { weights: rng.normalTensor([b, d, k]), bias: rng.normalTensor([b, k]) };
    const batch = tf.tidy(() => ({ indices: tf.tensor1d([4, 1, 2], 'int32') }));
    for (const bt of [undefined, batch]) {
      const all = problem.innerLossBatched(xs, ys, bt).dataSync();
      for (let m = 0; m < b; m++) {
        const single = tf.tidy(
          () =>
            problem
              .innerLoss(
                { sampleLogits: xs.sampleLogits.slice([m, 0], [1, 5]).reshape([5]) },
                {
                  weights: ys.weights.slice([m, 0, 0], [1, d, k]).reshape([d, k]),
                  bias: ys.bias.slice([m, 0], [1, k]).reshape([k]),
                },
                bt,
              )
              .dataSync()[0],
        );
        expect(all[m]).toBeCloseTo(single, 5);
      }
    }
    treeDispose(xs);
    treeDispose(ys);
    batch.indices.dispose();
  });

  it('a minibatch loss is the loss on that subset of samples', () => {
    const { x, y } = tensors(xv, wv, bv);
    const batch = { indices: tf.tensor1d([3, 0], 'int32') };
    const { ce } = softmaxReference(train.inputs, train.labels, wv, bv, 5, d, k);
    let reg = 0;
    for (const w of wv) reg += w * w;
    const ref = (sigma(xv[3]) * ce[3] + sigma(xv[0]) * ce[0]) / 2 + 0.5 * lambda * reg;
    expect(problem.innerLoss(x, y, batch).dataSync()[0]).toBeCloseTo(ref, 5);
    const vBatch = { indices: tf.tensor1d([1], 'int32') };
    const vce = softmaxReference(validation.inputs, validation.labels, wv, bv, 3, d, k).ce;
    expect(problem.outerLoss(x, y, vBatch).dataSync()[0]).toBeCloseTo(vce[1], 5);
    tf.dispose([batch.indices, vBatch.indices]);
    treeDispose(x);
    treeDispose(y);
  });

  it('evaluate reports test accuracy and the flag scores against the recorded corruption', () => {
    // W = I picks the largest feature: test predictions 0, 1, 2, 0 (ties go to the first class).
    const { x, y } = tensors([1, -1, 2, 0.5, -0.1], [1, 0, 0, 0, 1, 0, 0, 0, 1], [0, 0, 0]);
    const m = problem.evaluate(x, y);
    expect(m.testAccuracy).toBe(1);
    // Validation: predictions [0 (tie), 2, 0 (tie)] against labels [2, 0, 1] → 0 correct.
    expect(m.validationAccuracy).toBe(0);
    // Flagged clean: 0, 2, 3; truly clean: 0, 2, 3 → perfect.
    expect([m.cleanPrecision, m.cleanRecall, m.cleanF1]).toEqual([1, 1, 1]);
    expect([m.corruptedPrecision, m.corruptedRecall, m.corruptedF1]).toEqual([1, 1, 1]);
    expect(m.meanWeightClean).toBeCloseTo((sigma(1) + sigma(2) + sigma(0.5)) / 3, 6);
    expect(m.meanWeightCorrupted).toBeCloseTo((sigma(-1) + sigma(-0.1)) / 2, 6);
    expect(problem.mainMetric).toBe('testAccuracy');
    treeDispose(x);
    treeDispose(y);
  });

  it('keeps the tensor count flat over oracle calls, minibatches and evaluation', () => {
    const p = HyperCleaningProblem.fromOptions(
      registry.validate('problem', 'hyper-cleaning', {
        dataset: 'synthetic',
        trainSamples: 40,
        validationSamples: 20,
        testSamples: 10,
        batchSize: 8,
      }) as never,
    );
    const oracles = createOracles(p);
    const r = new Random(0);
    const x = p.initialX();
    const y = p.initialY();
    const growth = tensorCountGrowth(() => {
      tf.tidy(() => {
        const b = p.sampleInnerBatch?.(r);
        const ob = p.sampleOuterBatch?.(r);
        oracles.innerGradY(x, y, b);
        oracles.outerGrads(x, y, ob);
        oracles.hessianVectorProduct(x, y, y, b);
        oracles.mixedVectorProduct(x, y, y, b);
      });
      p.evaluate(x, y);
    }, 6);
    expect(growth).toEqual([0, 0, 0, 0, 0, 0]);
    treeDispose(x);
    treeDispose(y);
    p.dispose();
  });
});

describe('hyper-cleaning from options', () => {
  it('corrupts exactly the requested share of synthetic training labels and records it', () => {
    const p = registry.create('problem', 'hyper-cleaning', {
      dataset: 'synthetic',
      trainSamples: 60,
      validationSamples: 30,
      testSamples: 30,
      corruptionRate: 0.25,
      synthetic: { features: 4, classes: 5 },
    }) as HyperCleaningProblem;
    expect(p.corrupted.reduce((a, c) => a + c, 0)).toBe(15);
    expect([p.trainSamples, p.dimension, p.classes]).toEqual([60, 4, 5]);
    const x = p.initialX();
    expect(Array.from(x.sampleLogits.dataSync())).toEqual(new Array(60).fill(0));
    treeDispose(x);
    expect(p.sampleInnerBatch).toBeUndefined();
    p.dispose();
  });

  it('validates options and explains missing data', () => {
    expect(() => registry.create('problem', 'hyper-cleaning', { corruptionRate: 1.5 })).toThrow(
      /problem\.options\.corruptionRate/,
    );
    expect(() => registry.create('problem', 'hyper-cleaning', { synthetic: { classes: 1 } })).toThrow(
      /problem\.options\.synthetic\.classes/,
    );
    expect(() =>
      registry.create('problem', 'hyper-cleaning', { dataset: 'synthetic', trainSamples: 10, batchSize: 20 }),
    ).toThrow(ConfigError);
    expect(() =>
      registry.create('problem', 'hyper-cleaning', { trainSamples: 59000, validationSamples: 5000 }),
    ).toThrow(/exceeds the 60000/);
    const missing = join(tmpdir(), 'bilevel-no-fashion-mnist-here');
    expect(() => registry.create('problem', 'hyper-cleaning', { path: missing })).toThrow(DataError);
    expect(() => registry.create('problem', 'hyper-cleaning', { path: missing })).toThrow(
      /apt-get install dataset-fashion-mnist/,
    );
  });
});

const fashion = findFashionMnist();
if (!fashion) {
  console.warn(
    'SKIPPED: hyper-cleaning on real Fashion-MNIST — data not found (apt-get install dataset-fashion-mnist, or set BILEVEL_DATA_PATH)',
  );
}
(fashion ? describe : describe.skip)('hyper-cleaning on real Fashion-MNIST', () => {
  it('builds the default instance: 5,000 corrupted training, 5,000 validation and 10,000 test images', () => {
    const p = registry.create('problem', 'hyper-cleaning', {}) as HyperCleaningProblem;
    expect([p.trainSamples, p.dimension, p.classes]).toEqual([5000, 784, 10]);
    expect(p.corrupted.reduce((a, c) => a + c, 0)).toBe(2500);
    const x = p.initialX();
    const y = p.initialY();
    const m = p.evaluate(x, y);
    // All-zero weights predict class 0 everywhere; the test set has 1,000 images of each class.
    expect(m.testAccuracy).toBe(0.1);
    expect(m.cleanF1).toBe(0);
    expect(m.corruptedRecall).toBe(1);
    treeDispose(x);
    treeDispose(y);
    p.dispose();
  });
});

// The fused cross-entropy op runs as a kernel registered for each backend it meets: the oracles of the
// hyper-cleaning loss on the native cpu-blas backend against the same on the JS cpu backend (which the tests
// above check against float64 formulas and finite differences).
const blas = isBlasAvailable();
if (!blas) console.warn('SKIPPED: hyper-cleaning oracles on cpu-blas — the native addon is not built');
(blas ? describe : describe.skip)('hyper-cleaning oracles on the cpu-blas backend', () => {
  afterAll(async () => {
    await tf.setBackend('cpu');
  });

  it('values, gradients, Hessian-vector and mixed products, batched gradients and batches agree with cpu', async () => {
    expect(registerBlasBackend()).toBe(true);
    const n = 40;
    const d = 6;
    const k = 4;
    const rng = new Random(31);
    const data = (count: number) => ({
      inputs: rng.normalArray(count * d),
      labels: Int32Array.from({ length: count }, () => rng.int(k)),
      count,
      dimension: d,
      classes: k,
    });
    const train = data(n);
    const validation = data(12);
    const arrays = {
      x: rng.normalArray(n),
      w: rng.normalArray(d * k),
      b: rng.normalArray(k),
      vw: rng.normalArray(d * k),
      vb: rng.normalArray(k),
      xs: rng.normalArray(3 * n),
      ws: rng.normalArray(3 * d * k),
      bs: rng.normalArray(3 * k),
    };
    const indices = Int32Array.from([3, 17, 5, 22, 9, 30]);
    // Everything is made on the backend that computes it (no data moves between backends).
    const results = (): Record<string, Float32Array> => {
      const problem = new HyperCleaningProblem(
        { train, corrupted: new Uint8Array(n), validation },
        { innerL2: 0.05 },
      );
      const out = tf.tidy(() => {
        const x = { sampleLogits: tf.tensor1d(arrays.x) };
        const y = { weights: tf.tensor2d(arrays.w, [d, k]), bias: tf.tensor1d(arrays.b) };
        const v = { weights: tf.tensor2d(arrays.vw, [d, k]), bias: tf.tensor1d(arrays.vb) };
        const xs = { sampleLogits: tf.tensor2d(arrays.xs, [3, n]) };
        const ys = { weights: tf.tensor3d(arrays.ws, [3, d, k]), bias: tf.tensor2d(arrays.bs, [3, k]) };
        const oracles = createOracles(problem);
        const fd = createOracles(problem, { secondOrder: 'finite-difference', finiteDifferenceStep: 1e-2 });
        const batch = { indices: tf.tensor1d(indices, 'int32') };
        const { value, grad } = oracles.innerValueAndGradY(x, y);
        const outer = oracles.outerGrads(x, y);
        const hv = oracles.hessianVectorProduct(x, y, v);
        const read = (t: tf.Tensor) => t.dataSync() as Float32Array;
        return {
          innerValue: read(value),
          innerGradW: read(grad.weights),
          innerGradB: read(grad.bias),
          innerGradX: read(oracles.innerGradX(x, y).sampleLogits),
          outerValue: read(outer.value),
          outerGradW: read(outer.gradY.weights),
          hvpW: read(hv.weights),
          hvpB: read(hv.bias),
          fdHvpW: read(fd.hessianVectorProduct(x, y, v).weights),
          mixed: read(oracles.mixedVectorProduct(x, y, v).sampleLogits),
          batchHvpW: read(oracles.hessianVectorProduct(x, y, v, batch).weights),
          batchedGradW: read(oracles.innerGradYBatched(xs, ys).weights),
          batchedLoss: read(problem.innerLossBatched(xs, ys)),
        };
      });
      problem.dispose();
      return out;
    };
    await tf.setBackend('cpu');
    const onCpu = results();
    await tf.setBackend('cpu-blas');
    const onBlas = results();
    for (const key of Object.keys(onCpu)) {
      const e = relativeMaxError(onBlas[key], onCpu[key]);
      if (!(e < 1e-4)) throw new Error(`${key}: cpu-blas differs from cpu by ${e}`);
    }
    // The Hessian-vector product on cpu-blas also agrees with central differences of its gradients.
    expect(relativeMaxError(onBlas.hvpW, onBlas.fdHvpW)).toBeLessThan(2e-3);
  });
});
