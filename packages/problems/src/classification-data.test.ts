import * as tf from '@tensorflow/tfjs-core';
import { DataError, Random } from '@bilevel/core';
import { tensorCountGrowth } from '@bilevel/core/testing';
import { denseToCsr } from '@bilevel/datasets';
import {
  accuracy,
  batchFromIndices,
  crossEntropyBatched,
  denseLabeledSet,
  disposeLabeledSet,
  featureMatMul,
  linearLogitsBatched,
  memberCrossEntropies,
  resolveBatch,
  restoreSamplers,
  SetSampler,
  sparseLabeledSet,
} from './classification-data';
import { relativeMaxError } from './test-utils/reference';

const data = {
  inputs: Float32Array.from([1, 2, 0, 3, -1, 0]),
  labels: Int32Array.from([1, 0, 1]),
  count: 3,
  dimension: 2,
  classes: 2,
};

describe('labeled sets', () => {
  it('refuse non-finite features and labels out of range with a clear message', () => {
    expect(() =>
      denseLabeledSet('training', { ...data, inputs: Float32Array.from([1, 2, 0, NaN, -1, 0]) }),
    ).toThrow(DataError);
    expect(() =>
      denseLabeledSet('training', { ...data, inputs: Float32Array.from([1, 2, 0, NaN, -1, 0]) }),
    ).toThrow(/training set: feature value NaN at position 3 is not finite/);
    expect(() => denseLabeledSet('validation', { ...data, labels: Int32Array.from([1, 2, 0]) })).toThrow(
      /validation set: label 2 of sample 1 is outside 0\.\.1/,
    );
    expect(() => denseLabeledSet('test', { ...data, count: 4 })).toThrow(
      /6 feature values do not fill 4 rows of 2/,
    );
    expect(() => sparseLabeledSet('s', denseToCsr([1, Infinity], 1, 2), Int32Array.from([0]), 2)).toThrow(
      /feature value Infinity at position 1/,
    );
  });

  it('dense and sparse sets give the same products, batches and accuracy', () => {
    const dense = denseLabeledSet('d', data);
    const sparse = sparseLabeledSet('s', denseToCsr(data.inputs, 3, 2), data.labels, 2);
    const w = tf.tensor2d([1, -1, 0.5, 2], [2, 2]);
    const b = tf.tensor1d([0, 0.25]);
    const growth = tensorCountGrowth(() => {
      tf.tidy(() => {
        expect(Array.from(featureMatMul(sparse.features, w).dataSync())).toEqual(
          Array.from(featureMatMul(dense.features, w).dataSync()),
        );
        for (const set of [dense, sparse]) {
          const batch = batchFromIndices(set, Int32Array.from([2, 0]));
          const r = resolveBatch(set, batch);
          expect(r.count).toBe(2);
          expect(Array.from(r.targets.dataSync())).toEqual([0, 1, 0, 1]);
          // Rows 2 and 0 of A·W: (−1, 0)·W = (−1, 1) and (1, 2)·W = (2, 3).
          expect(Array.from(featureMatMul(r.features, w).dataSync())).toEqual([-1, 1, 2, 3]);
        }
      });
    }, 3);
    expect(growth).toEqual([0, 0, 0]);
    // Logits A·W + b: (2, 3.25), (0, 6.25), (−1, 1.25) → predictions 1, 1, 1 against labels 1, 0, 1.
    expect(accuracy(dense, w, b)).toBeCloseTo(2 / 3, 12);
    expect(accuracy(sparse, w, b)).toBeCloseTo(2 / 3, 12);
    tf.dispose([w, b]);
    disposeLabeledSet(dense);
    disposeLabeledSet(sparse);
  });
});

describe('stacked linear models', () => {
  it('memberCrossEntropies [rows, B] equals the transposed crossEntropyBatched of linearLogitsBatched, dense and sparse', () => {
    const dense = denseLabeledSet('d', data);
    const sparse = sparseLabeledSet('s', denseToCsr(data.inputs, 3, 2), data.labels, 2);
    tf.tidy(() => {
      const rng = new Random(4);
      const w = rng.normalTensor([3, 2, 2]);
      const b = rng.normalTensor([3, 2]);
      const weights = rng.uniformTensor([3, 3], 0.1, 1) as tf.Tensor2D;
      for (const set of [dense, sparse]) {
        const byRow = memberCrossEntropies(set.features, set.oneHot, w, b, {
          weights: tf.transpose(weights),
          scale: 0.5,
        });
        expect(byRow.shape).toEqual([3, 3]);
        const reference = tf.mul(
          crossEntropyBatched(linearLogitsBatched(set.features, w, b), set.oneHot, { weights }),
          0.5,
        );
        expect(relativeMaxError(tf.transpose(byRow).dataSync(), reference.dataSync())).toBeLessThan(1e-6);
        // Gradients with respect to the stacked weights and biases agree too.
        const [gw, gb] = tf.grads(
          (ww: tf.Tensor, bb: tf.Tensor) =>
            tf.sum(
              memberCrossEntropies(set.features, set.oneHot, ww, bb, { weights: tf.transpose(weights) }),
            ) as tf.Scalar,
        )([w, b]);
        const [rw, rb] = tf.grads(
          (ww: tf.Tensor, bb: tf.Tensor) =>
            tf.sum(
              crossEntropyBatched(linearLogitsBatched(set.features, ww, bb), set.oneHot, { weights }),
            ) as tf.Scalar,
        )([w, b]);
        expect(relativeMaxError(gw.dataSync(), rw.dataSync())).toBeLessThan(1e-6);
        expect(relativeMaxError(gb.dataSync(), rb.dataSync())).toBeLessThan(1e-6);
      }
    });
    disposeLabeledSet(dense);
    disposeLabeledSet(sparse);
  });
});

describe('minibatch sampler state (checkpoints)', () => {
  it('a sampler restored from a saved state draws the same batches, across an epoch boundary', () => {
    const set = denseLabeledSet('training', data);
    const a = new SetSampler(set, 2, 7);
    const b = new SetSampler(set, 2, 7);
    const indices = (s: SetSampler): number[] => {
      const batch = s.next();
      const out = Array.from(batch.indices.dataSync());
      tf.dispose(Object.values(batch));
      return out;
    };
    indices(a); // 2 of the 3 samples: the state is saved inside an epoch
    const saved = JSON.parse(JSON.stringify(a.getState()));
    const fromA = [indices(a), indices(a), indices(a)];
    indices(b);
    indices(b);
    b.setState(saved);
    expect([indices(b), indices(b), indices(b)]).toEqual(fromA);
    disposeLabeledSet(set);
  });

  it('restoreSamplers names what does not match', () => {
    const set = denseLabeledSet('training', data);
    const inner = new SetSampler(set, 2, 1);
    expect(() => restoreSamplers('p', { innerSampler: null, outerSampler: null }, { inner })).toThrow(
      'p: saved problem state has no inner minibatch sampler, this problem has one (batch sizes differ?)',
    );
    expect(() => restoreSamplers('p', { rng: 1 }, { inner })).toThrow(
      'p: saved problem state must be { innerSampler, outerSampler }',
    );
    restoreSamplers('p', { innerSampler: inner.getState(), outerSampler: null }, { inner });
    disposeLabeledSet(set);
  });
});
