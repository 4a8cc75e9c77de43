import * as tf from '@tensorflow/tfjs-core';
import {
  ConfigError,
  createOracles,
  Random,
  registry,
  tidy,
  treeDispose,
  type TensorTree,
} from '@bilevel/core';
import { tensorCountGrowth, TemporaryFolders } from '@bilevel/core/testing';
import { csrToDense, denseToCsr } from '@bilevel/datasets';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { denseHyperparameterData, HyperparameterOptimizationProblem } from './index';
import { finiteDifferenceGradient, relativeMaxError, softmaxReference } from './test-utils/reference';

const temps = new TemporaryFolders();
afterAll(() => temps.removeAll());

const d = 4;
const k = 3;
// Sparse-looking dense data: 6 training, 4 validation and 3 test samples.
const trainInputs = [1, 0, 0, 2, 0, 0.5, 0, 0, 0, 0, 1.5, -1, 3, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 2.5];
const trainLabels = [0, 1, 2, 0, 1, 2];
const valInputs = [0, 1, 0, 0, 2, 0, 0, 1, 0, 0, -1, 0, 1, 1, 1, 1];
const valLabels = [1, 0, 2, 1];
const testInputs = [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0];
const testLabels = [0, 1, 2];

const classification = (inputs: number[], labels: number[]) => ({
  inputs: Float32Array.from(inputs),
  labels: Int32Array.from(labels),
  count: labels.length,
  dimension: d,
  classes: k,
});

describe('hyperparameter-optimization (dense)', () => {
  const problem = new HyperparameterOptimizationProblem(
    denseHyperparameterData({
      train: classification(trainInputs, trainLabels),
      validation: classification(valInputs, valLabels),
      test: classification(testInputs, testLabels),
    }),
  );
  const rng = new Random(5);
  const xv = Float64Array.from([0.3, -1, 0.7, -0.2]);
  const wv = Float64Array.from(rng.normalArray(d * k));
  const bv = Float64Array.from(rng.normalArray(k));
  const tensors = (
    x: ArrayLike<number>,
    w: ArrayLike<number>,
    b: ArrayLike<number>,
  ): { x: TensorTree; y: TensorTree } => ({
    x: { logPenalty: tf.tensor1d(Float32Array.from(x)) },
    y: { weights: tf.tensor2d(Float32Array.from(w), [d, k]), bias: tf.tensor1d(Float32Array.from(b)) },
  });
  const innerRef = (x: ArrayLike<number>, w: ArrayLike<number>, b: ArrayLike<number>) => {
    const { ce } = softmaxReference(trainInputs, trainLabels, w, b, 6, d, k);
    let pen = 0;
    for (let j = 0; j < d; j++) for (let c = 0; c < k; c++) pen += 0.5 * Math.exp(x[j]) * w[j * k + c] ** 2;
    return ce.reduce((a, v) => a + v, 0) / 6 + pen;
  };
  const outerRef = (w: ArrayLike<number>, b: ArrayLike<number>) =>
    softmaxReference(valInputs, valLabels, w, b, 4, d, k).ce.reduce((a, v) => a + v, 0) / 4;
  afterAll(() => problem.dispose());

  it('losses equal g = mean CE + ½Σ_j exp(x_j)‖W_j‖² and f = mean validation CE', () => {
    const { x, y } = tensors(xv, wv, bv);
    expect(problem.innerLoss(x, y).dataSync()[0]).toBeCloseTo(innerRef(xv, wv, bv), 5);
    expect(problem.outerLoss(x, y).dataSync()[0]).toBeCloseTo(outerRef(wv, bv), 5);
    treeDispose(x);
    treeDispose(y);
  });

  it('gradients match ∂g/∂x_j = ½exp(x_j)‖W_j‖² and finite differences', () => {
    const oracles = createOracles(problem);
    const { x, y } = tensors(xv, wv, bv);
    const gx = oracles.innerGradX(x, y);
    const ref = Array.from(
      { length: d },
      (_, j) => 0.5 * Math.exp(xv[j]) * [0, 1, 2].reduce((s, c) => s + wv[j * k + c] ** 2, 0),
    );
    expect(relativeMaxError(gx.logPenalty.dataSync(), ref)).toBeLessThan(1e-5);
    const gy = oracles.innerGradY(x, y);
    expect(
      relativeMaxError(
        gy.weights.dataSync(),
        finiteDifferenceGradient((w) => innerRef(xv, w, bv), wv),
      ),
    ).toBeLessThan(1e-5);
    expect(
      relativeMaxError(
        gy.bias.dataSync(),
        finiteDifferenceGradient((b) => innerRef(xv, wv, b), bv),
      ),
    ).toBeLessThan(1e-5);
    const outer = oracles.outerGrads(x, y);
    expect(
      relativeMaxError(
        outer.gradY.bias.dataSync(),
        finiteDifferenceGradient((b) => outerRef(wv, b), bv),
      ),
    ).toBeLessThan(1e-5);
    tf.dispose([
      gx.logPenalty,
      gy.weights,
      gy.bias,
      outer.value,
      outer.gradX.logPenalty,
      outer.gradY.weights,
      outer.gradY.bias,
    ]);
    treeDispose(x);
    treeDispose(y);
  });

  it('the mixed product is exp(x_j)·⟨W_j, V_j⟩ and the Hessian product matches finite differences', () => {
    const { x, y } = tensors(xv, wv, bv);
    const vw = rng.normalArray(d * k);
    const v = { weights: tf.tensor2d(vw, [d, k]), bias: tf.tensor1d(rng.normalArray(k)) };
    const auto = createOracles(problem);
    const fd = createOracles(problem, { secondOrder: 'finite-difference', finiteDifferenceStep: 1e-2 });
    const mixed = auto.mixedVectorProduct(x, y, v);
    const ref = Array.from(
      { length: d },
      (_, j) => Math.exp(xv[j]) * [0, 1, 2].reduce((s, c) => s + wv[j * k + c] * vw[j * k + c], 0),
    );
    expect(relativeMaxError(mixed.logPenalty.dataSync(), ref)).toBeLessThan(1e-5);
    const hA = auto.hessianVectorProduct(x, y, v);
    const hF = fd.hessianVectorProduct(x, y, v);
    expect(relativeMaxError(hA.weights.dataSync(), hF.weights.dataSync())).toBeLessThan(2e-3);
    tf.dispose([mixed.logPenalty, hA.weights, hA.bias, hF.weights, hF.bias]);
    treeDispose(v);
    treeDispose(x);
    treeDispose(y);
  });

  it('innerLossBatched equals the member-wise losses', () => {
    const xs = { logPenalty: rng.normalTensor([3, d]) };
    const ys = { weights: rng.normalTensor([3, d, k]), bias: rng.normalTensor([3, k]) };
    const all = problem.innerLossBatched(xs, ys).dataSync();
    for (let m = 0; m < 3; m++) {
      const single = tf.tidy(
        () =>
          problem
            .innerLoss(
              { logPenalty: xs.logPenalty.slice([m, 0], [1, d]).reshape([d]) },
              {
                weights: ys.weights.slice([m, 0, 0], [1, d, k]).reshape([d, k]),
                bias: ys.bias.slice([m, 0], [1, k]).reshape([k]),
              },
            )
            .dataSync()[0],
      );
      expect(all[m]).toBeCloseTo(single, 4);
    }
    treeDispose(xs);
    treeDispose(ys);
  });

  it('evaluate reports validation and test accuracy', () => {
    // W = I on the first three features predicts argmax of (a_0, a_1, a_2).
    const w = [1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0];
    const { x, y } = tensors(xv, w, [0, 0, 0]);
    const m = problem.evaluate(x, y);
    expect(m.testAccuracy).toBe(1);
    // Validation logits (a_0, a_1, a_2): (0,1,0) → 1, (2,0,0) → 0, (0,−1,0) → 0 (tie), (1,1,1) → 0 (tie);
    // labels [1, 0, 2, 1] → 2 of 4.
    expect(m.validationAccuracy).toBe(0.5);
    expect(m.meanLogPenalty).toBeCloseTo((0.3 - 1 + 0.7 - 0.2) / 4, 6);
    treeDispose(x);
    treeDispose(y);
  });
});

describe('hyperparameter-optimization (sparse LIBSVM)', () => {
  const dir = temps.make('bilevel-hpo-');
  const toLibsvm = (inputs: number[], labels: number[]) => {
    const csr = denseToCsr(inputs, labels.length, d);
    return labels
      .map((l, r) =>
        [
          String(l * 2 - 1),
          ...Array.from(
            csr.indices.subarray(csr.indptr[r], csr.indptr[r + 1]),
            (c, e) => `${c + 1}:${csr.values[csr.indptr[r] + e]}`,
          ),
        ].join(' '),
      )
      .join('\n');
  };
  writeFileSync(join(dir, 'train.svm'), toLibsvm(trainInputs, trainLabels));
  writeFileSync(join(dir, 'val.svm'), toLibsvm(valInputs, valLabels));
  writeFileSync(join(dir, 'test.svm'), toLibsvm(testInputs, testLabels));
  const sparse = registry.create('problem', 'hyperparameter-optimization', {
    dataset: 'libsvm',
    libsvm: { train: join(dir, 'train.svm'), validation: join(dir, 'val.svm'), test: join(dir, 'test.svm') },
    batchSize: 3,
  }) as HyperparameterOptimizationProblem;
  const dense = new HyperparameterOptimizationProblem(
    denseHyperparameterData({
      train: classification(trainInputs, trainLabels),
      validation: classification(valInputs, valLabels),
      test: classification(testInputs, testLabels),
    }),
  );
  afterAll(() => {
    sparse.dispose();
    dense.dispose();
  });

  it('gives the same losses, gradients and second-order products as the dense problem on the same data', () => {
    expect([sparse.features, sparse.classes]).toEqual([d, k]);
    const rng = new Random(8);
    const x = { logPenalty: rng.normalTensor([d]) };
    const y = { weights: rng.normalTensor([d, k]), bias: rng.normalTensor([k]) };
    const v = { weights: rng.normalTensor([d, k]), bias: rng.normalTensor([k]) };
    const os = createOracles(sparse);
    const od = createOracles(dense);
    const pairs = tidy((): [ArrayLike<number>, ArrayLike<number>][] => [
      [sparse.innerLoss(x, y).dataSync(), dense.innerLoss(x, y).dataSync()],
      [sparse.outerLoss(x, y).dataSync(), dense.outerLoss(x, y).dataSync()],
      [os.innerGradY(x, y).weights.dataSync(), od.innerGradY(x, y).weights.dataSync()],
      [
        os.hessianVectorProduct(x, y, v).weights.dataSync(),
        od.hessianVectorProduct(x, y, v).weights.dataSync(),
      ],
      [
        os.mixedVectorProduct(x, y, v).logPenalty.dataSync(),
        od.mixedVectorProduct(x, y, v).logPenalty.dataSync(),
      ],
    ]);
    for (const [a, b] of pairs) expect(relativeMaxError(a, b)).toBeLessThan(1e-5);
    expect(sparse.evaluate(x, y)).toEqual(dense.evaluate(x, y));
    treeDispose(x);
    treeDispose(y);
    treeDispose(v);
  });

  it('minibatches cut the sparse rows they name', () => {
    const rng = new Random(1);
    const x = { logPenalty: rng.normalTensor([d]) };
    const y = { weights: rng.normalTensor([d, k]), bias: rng.normalTensor([k]) };
    const growth = tensorCountGrowth(() => {
      tf.tidy(() => {
        const batch = sparse.sampleInnerBatch?.(rng);
        if (!batch) throw new Error('no sampler');
        const rows = Array.from(batch.indices.dataSync());
        expect(new Set(rows).size).toBe(3);
        const sub = classification(
          rows.flatMap((r) => trainInputs.slice(r * d, r * d + d)),
          rows.map((r) => trainLabels[r]),
        );
        const ref = new HyperparameterOptimizationProblem(
          denseHyperparameterData({ train: sub, validation: sub }),
        );
        expect(sparse.innerLoss(x, y, batch).dataSync()[0]).toBeCloseTo(ref.innerLoss(x, y).dataSync()[0], 5);
        expect(
          Array.from(
            sparse
              .innerLossBatched(
                { logPenalty: x.logPenalty.expandDims(0) },
                { weights: y.weights.expandDims(0), bias: y.bias.expandDims(0) },
                batch,
              )
              .dataSync(),
          )[0],
        ).toBeCloseTo(ref.innerLoss(x, y).dataSync()[0], 5);
        ref.dispose();
      });
    }, 4);
    expect(growth).toEqual([0, 0, 0, 0]);
    treeDispose(x);
    treeDispose(y);
  });

  it('holds out part of the training file when no validation file is given', () => {
    const p = registry.create('problem', 'hyperparameter-optimization', {
      dataset: 'libsvm',
      libsvm: { train: join(dir, 'train.svm'), validationFraction: 0.5 },
    }) as HyperparameterOptimizationProblem;
    expect(p.mainMetric).toBe('validationAccuracy');
    p.dispose();
  });

  it('validates options', () => {
    expect(() => registry.create('problem', 'hyperparameter-optimization', { dataset: 'libsvm' })).toThrow(
      /problem\.options\.libsvm: dataset 'libsvm' needs libsvm\.train/,
    );
    expect(() =>
      registry.create('problem', 'hyperparameter-optimization', {
        dataset: 'synthetic',
        trainSamples: 10,
        batchSize: 11,
      }),
    ).toThrow(ConfigError);
    expect(() =>
      registry.create('problem', 'hyperparameter-optimization', {
        dataset: 'libsvm',
        libsvm: { train: join(dir, 'none.svm') },
      }),
    ).toThrow(/none\.svm: LIBSVM file not found/);
    expect(Array.from(csrToDense(denseToCsr(trainInputs, 6, d)))).toEqual(trainInputs);
  });
});
