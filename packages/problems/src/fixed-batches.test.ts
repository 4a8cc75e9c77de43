import * as tf from '@tensorflow/tfjs-core';
import { type BilevelProblem, Random, registry, treeDispose, type TensorTree } from '@bilevel/core';
import './index';

/** The problems with minibatch samplers, tiny and synthetic, with batch sizes that leave a smaller last batch. */
const CASES: [string, Record<string, unknown>, { inner: number; outer: number }][] = [
  ['hyper-cleaning', { dataset: 'synthetic', trainSamples: 30, validationSamples: 20, testSamples: 0, batchSize: 8, outerBatchSize: 6 }, { inner: 4, outer: 4 }],
  ['hyperparameter-optimization', { dataset: 'synthetic', trainSamples: 30, validationSamples: 20, testSamples: 0, batchSize: 8, outerBatchSize: 6 }, { inner: 4, outer: 4 }],
  ['hyper-representation', { samples: 30, testSamples: 0, inputDimension: 5, embeddingDimension: 3, batchSize: 8, outerBatchSize: 6 }, { inner: 4, outer: 5 }],
];

function perturbed(tree: TensorTree, rng: Random): TensorTree {
  return Object.fromEntries(Object.entries(tree).map(([k, t]) => [k, tf.add(t, tf.tensor(Array.from({ length: t.size }, () => 0.3 * rng.normal()), t.shape))]));
}

describe('fixed batches (BilevelProblem.fixedBatches)', () => {
  it.each(CASES)('%s: the batches split the data once, and the weighted batch losses sum to the whole loss', (name, options, counts) => {
    const problem = registry.create('problem', name, options) as BilevelProblem;
    const fb = problem.fixedBatches!();
    expect(fb.innerCount).toBe(counts.inner);
    const outerN = name === 'hyper-representation' ? 30 : 20;
    expect(fb.outerCount).toBe(Math.ceil(outerN / 6));
    expect(problem.fixedBatches!()).toBe(fb); // one split for the whole run
    const rng = new Random(4);
    const x0 = problem.initialX(rng);
    const y0 = problem.initialY(rng, x0);
    const x = perturbed(x0, rng);
    const y = perturbed(y0, rng);
    for (const [count, weight, batch, n, loss] of [
      [fb.innerCount, fb.innerWeight, fb.innerBatch, 30, (b?: Record<string, tf.Tensor>) => problem.innerLoss(x, y, b)],
      [fb.outerCount, fb.outerWeight, fb.outerBatch, outerN, (b?: Record<string, tf.Tensor>) => problem.outerLoss(x, y, b)],
    ] as const) {
      const seen: number[] = [];
      let sum = 0;
      let weights = 0;
      for (let b = 0; b < count; b++) {
        const bt = batch(b);
        seen.push(...Array.from(bt.indices.dataSync()));
        sum += weight(b) * loss(bt).dataSync()[0];
        weights += weight(b);
        Object.values(bt).forEach((t) => t.dispose());
      }
      // every sample exactly once
      expect(seen.sort((a, b) => a - b)).toEqual(Array.from({ length: n }, (_, i) => i));
      expect(weights).toBeCloseTo(1, 12);
      const whole = loss().dataSync()[0];
      expect(Math.abs(sum - whole)).toBeLessThan(1e-5 * Math.max(1, Math.abs(whole)));
    }
    expect(() => fb.innerBatch(counts.inner)).toThrow(/index \d+ is not in 0\.\./);
    [x0, y0, x, y].forEach(treeDispose);
    problem.dispose?.();
  });

  it('absent without batchSize', () => {
    const problem = registry.create('problem', 'hyper-cleaning', { dataset: 'synthetic', trainSamples: 30, validationSamples: 20, testSamples: 0 }) as BilevelProblem;
    expect(problem.fixedBatches).toBeUndefined();
    problem.dispose?.();
  });
});
