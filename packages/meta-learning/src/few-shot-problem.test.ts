import * as tf from '@tensorflow/tfjs-core';
import {
  ConfigError,
  createOracles,
  Random,
  registry,
  type TensorTree,
  tidy,
  treeDispose,
} from '@bilevel/core';
import { tensorCountGrowth, treeRelativeError } from '@bilevel/core/testing';
import { Conv4Backbone, FewShotProblem, syntheticImageSet } from './index';
import { fitHeads, headInnerLoss, prototypeAccuracies } from './head';
import { TASK_KEYS } from './episodes';

const data = syntheticImageSet({ classes: 10, imagesPerClass: 6, imageSize: 16, seed: 3, groups: 2 });
const { train, test } = data.splitByGroups(['group1']);

function makeProblem(settings: Record<string, unknown> = {}): FewShotProblem {
  return new FewShotProblem({
    backbone: new Conv4Backbone({ filters: 4, imageSize: 16 }),
    train,
    test,
    settings: {
      ways: 3,
      shots: 2,
      queries: 2,
      metaBatchSize: 2,
      headWeightDecay: 0.1,
      evalEpisodes: 6,
      evalInnerSteps: 50,
      evalBatchSize: 4,
      ...settings,
    },
  });
}

function randomHeads(rng: Random, tasks: number, ways: number, d: number): TensorTree {
  return {
    weight: rng.normalTensor([tasks, ways, d], 0, 0.5),
    bias: rng.normalTensor([tasks, ways], 0, 0.5),
  };
}

/** Float64 reference of Σ_b [mean_i CE] (+ λ/2 ‖W‖²) from features, labels and heads given as arrays. */
function referenceLoss(
  features: number[][][],
  labels: number[][][],
  w: number[][][],
  b: number[][],
  lambda: number,
  reduce: 'sum' | 'mean',
): number {
  let total = 0;
  features.forEach((F, t) => {
    let ce = 0;
    F.forEach((f, i) => {
      const logits = w[t].map((row, k) => row.reduce((s, v, j) => s + v * f[j], b[t][k]));
      const m = Math.max(...logits);
      const lse = m + Math.log(logits.reduce((s, z) => s + Math.exp(z - m), 0));
      ce += lse - logits.reduce((s, z, k) => s + z * labels[t][i][k], 0);
    });
    total += ce / F.length;
    total += (lambda / 2) * w[t].flat().reduce((s, v) => s + v * v, 0);
  });
  return reduce === 'sum' ? total : total / features.length;
}

describe('few-shot problem: losses', () => {
  it('computes g and f as the head cross-entropies of per-task features (float64 reference)', () => {
    const problem = makeProblem();
    const rng = new Random(1);
    const x = problem.initialX(rng);
    const y = randomHeads(rng, 2, 3, problem.featureDimension);
    tf.tidy(() => {
      const task = problem.sampleTask(new Random(2));
      // Reference features: each task through the backbone on its own (batch statistics of that task).
      const perTask = (images: tf.Tensor): number[][][] =>
        (tf.split(images, 2) as tf.Tensor4D[]).map(
          (img) => problem.backbone.forward(x, img, { training: true }).arraySync() as number[][],
        );
      const w = y.weight.arraySync() as number[][][];
      const b = y.bias.arraySync() as number[][];
      const g = referenceLoss(
        perTask(task[TASK_KEYS.supportImages]),
        task[TASK_KEYS.supportLabels].arraySync() as number[][][],
        w,
        b,
        0.1,
        'sum',
      );
      const f = referenceLoss(
        perTask(task[TASK_KEYS.queryImages]),
        task[TASK_KEYS.queryLabels].arraySync() as number[][][],
        w,
        b,
        0,
        'mean',
      );
      expect(problem.innerLoss(x, y, task).dataSync()[0]).toBeCloseTo(g, 4);
      expect(problem.outerLoss(x, y, task).dataSync()[0]).toBeCloseTo(f, 4);
      // Without a batch, a fixed default task is used.
      const a1 = problem.innerLoss(x, y).dataSync()[0];
      expect(problem.innerLoss(x, y).dataSync()[0]).toBe(a1);
    });
    treeDispose(x);
    treeDispose(y);
    problem.dispose();
  });

  it('starts from zero heads of shape [B, N, D] and rejects heads of the wrong shape', () => {
    const problem = makeProblem();
    const x = problem.initialX(new Random(0));
    const y0 = problem.initialY(new Random(0), x);
    expect(y0.weight.shape).toEqual([2, 3, 4]);
    expect(y0.bias.shape).toEqual([2, 3]);
    expect(tf.tidy(() => tf.sum(tf.abs(y0.weight)).dataSync()[0])).toBe(0);
    const bad = { weight: tf.zeros([2, 3, 5]), bias: tf.zeros([2, 3]) };
    expect(() => tf.tidy(() => problem.innerLoss(x, bad))).toThrow(
      /'weight' has shape \[2, 3, 5\], expected \[2, 3, 4\]/,
    );
    treeDispose(x);
    treeDispose(y0);
    treeDispose(bad);
    problem.dispose();
  });
});

describe('few-shot problem: oracles (cached features) against finite differences and uncached autodiff', () => {
  const problem = makeProblem();
  const plain = makeProblem({ cacheFeatures: false });
  const rng = new Random(7);
  const x = problem.initialX(rng);
  const y = randomHeads(rng, 2, 3, problem.featureDimension);
  const v = randomHeads(rng, 2, 3, problem.featureDimension);
  const task = tf.tidy(() => {
    const t = problem.sampleTask(new Random(8));
    for (const k of Object.keys(t)) tf.keep(t[k]);
    return t;
  });
  afterAll(() => {
    treeDispose(x);
    treeDispose(y);
    treeDispose(v);
    tf.dispose(Object.values(task));
    problem.dispose();
    plain.dispose();
  });

  it('∇²_yy g·v (autodiff through the head) equals the finite-difference strategy', () => {
    const ad = createOracles(problem, { secondOrder: 'autodiff' });
    const fd = createOracles(problem, { secondOrder: 'finite-difference', finiteDifferenceStep: 1e-2 });
    tidy(() => {
      const a = ad.hessianVectorProduct(x, y, v, task);
      const b = fd.hessianVectorProduct(x, y, v, task);
      expect(treeRelativeError(a, b)).toBeLessThan(1e-2);
    });
  });

  it('∇²_xy g·v (one backprop through the backbone) equals the finite-difference strategy', () => {
    const ad = createOracles(problem, { secondOrder: 'autodiff' });
    const fd = createOracles(problem, { secondOrder: 'finite-difference', finiteDifferenceStep: 1e-2 });
    tidy(() => {
      const a = ad.mixedVectorProduct(x, y, v, task);
      const b = fd.mixedVectorProduct(x, y, v, task);
      expect(treeRelativeError(a, b)).toBeLessThan(2e-2);
      // And the uncached problem's autodiff gives the same product.
      const c = createOracles(plain).mixedVectorProduct(x, y, v, task);
      expect(treeRelativeError(a, c)).toBeLessThan(1e-4);
    });
  });

  it('∇ₓg, ∇ₓf and ∇_y f through the cache equal uncached autodiff and a directional finite difference', () => {
    const cached = createOracles(problem);
    const uncached = createOracles(plain);
    tidy(() => {
      const a = cached.outerGrads(x, y, task);
      const b = uncached.outerGrads(x, y, task);
      expect(treeRelativeError(a.gradX, b.gradX)).toBeLessThan(1e-4);
      expect(treeRelativeError(a.gradY, b.gradY)).toBeLessThan(1e-4);
      expect(treeRelativeError(cached.innerGradX(x, y, task), uncached.innerGradX(x, y, task))).toBeLessThan(
        1e-4,
      );
      // ⟨∇ₓf, u⟩ against a central difference of f along a unit direction u of the last block's filter.
      const name = 'block4.conv.filter';
      const u0 = new Random(5).normalTensor(x[name].shape);
      const u = tf.div(u0, tf.norm(u0));
      const eps = 2e-4;
      const at = (s: number) =>
        problem.outerLoss({ ...x, [name]: tf.add(x[name], tf.mul(u, s)) }, y, task).dataSync()[0];
      const fdv = (at(eps) - at(-eps)) / (2 * eps);
      const adv = tf.sum(tf.mul(a.gradX[name], u)).dataSync()[0];
      expect(Math.abs(adv - fdv)).toBeLessThan(2e-2 * Math.abs(fdv) + 1e-3);
    });
  });

  it('a miss inside the outer gradients runs the backbone on the tape once: uncached gradients, then hits', () => {
    const fresh = makeProblem();
    const cache = (fresh as unknown as { cache: { stats: { hits: number; misses: number } } }).cache;
    tidy(() => {
      const a = createOracles(fresh).outerGrads(x, y, task);
      expect(cache.stats).toEqual({ hits: 0, misses: 1 });
      const b = createOracles(plain).outerGrads(x, y, task);
      expect(treeRelativeError(a.gradX, b.gradX)).toBeLessThan(1e-5);
      expect(treeRelativeError(a.gradY, b.gradY)).toBeLessThan(1e-5);
      // The copy kept on the miss serves the next evaluation of f at the same x and task.
      expect(Math.abs(fresh.outerLoss(x, y, task).dataSync()[0] - a.value.dataSync()[0])).toBeLessThan(1e-6);
      expect(cache.stats).toEqual({ hits: 1, misses: 1 });
    });
    fresh.dispose();
  });

  it('reuses the backbone pass across inner-loss calls at the same x and keeps the tensor count flat', () => {
    const oracles = createOracles(problem);
    const before = (problem as unknown as { cache: { stats: { hits: number } } }).cache.stats.hits;
    const growth = tensorCountGrowth(() => {
      tidy(() => {
        oracles.innerGradY(x, y, task);
        oracles.hessianVectorProduct(x, y, v, task);
        oracles.mixedVectorProduct(x, y, v, task);
        oracles.outerGrads(x, y, task);
      });
    }, 6);
    const after = (problem as unknown as { cache: { stats: { hits: number } } }).cache.stats.hits;
    expect(after - before).toBeGreaterThanOrEqual(6 * 3);
    // The cache holds a fixed number of entries: nothing grows after the first call.
    expect(new Set(growth.slice(1)).size).toBe(1);
  });
});

describe('few-shot problem: evaluation', () => {
  it('fits heads that minimize the regularized support loss (autodiff gradient ≈ 0)', () => {
    tf.tidy(() => {
      const rng = new Random(2);
      const features = rng.normalTensor([3, 6, 5]) as tf.Tensor3D;
      const labels = tf
        .oneHot(tf.tensor2d([0, 1, 2, 0, 1, 2, 1, 1, 0, 0, 2, 2, 2, 0, 1, 1, 0, 2], [3, 6], 'int32'), 3)
        .asType('float32') as tf.Tensor3D;
      const heads = fitHeads(features, labels, { lambda: 0.5, steps: 400 });
      const [gw, gb] = tf.grads((w: tf.Tensor, b: tf.Tensor) =>
        headInnerLoss(features, labels, { weight: w, bias: b }, 0.5),
      )([heads.weight, heads.bias]);
      expect(tf.norm(gw).dataSync()[0]).toBeLessThan(1e-3);
      expect(tf.norm(gb).dataSync()[0]).toBeLessThan(1e-3);
    });
  });

  it('nearest-prototype accuracy matches a direct computation', () => {
    tf.tidy(() => {
      const rng = new Random(4);
      const s = rng.normalTensor([2, 4, 3]) as tf.Tensor3D;
      const q = rng.normalTensor([2, 5, 3]) as tf.Tensor3D;
      const sl = tf
        .oneHot(tf.tensor2d([0, 0, 1, 1, 1, 0, 1, 0], [2, 4], 'int32'), 2)
        .asType('float32') as tf.Tensor3D;
      const ql = tf
        .oneHot(tf.tensor2d([0, 1, 1, 0, 1, 1, 0, 0, 1, 0], [2, 5], 'int32'), 2)
        .asType('float32') as tf.Tensor3D;
      const S = s.arraySync();
      const Q = q.arraySync();
      const SL = sl.arraySync();
      const QL = ql.arraySync();
      const expected = [0, 1].map((t) => {
        const protos = [0, 1].map((c) => {
          const rows = S[t].filter((_, i) => SL[t][i][c] === 1);
          return [0, 1, 2].map((j) => rows.reduce((a, r) => a + r[j], 0) / rows.length);
        });
        let hits = 0;
        Q[t].forEach((row, i) => {
          const d = protos.map((p) => p.reduce((a, pj, j) => a + (row[j] - pj) ** 2, 0));
          if ((d[0] <= d[1] ? 0 : 1) === QL[t][i].indexOf(1)) hits++;
        });
        return hits / 5;
      });
      expect(prototypeAccuracies(s, sl, q, ql)).toEqual(expected.map((e) => expect.closeTo(e, 6)));
    });
  });

  it('reports accuracy on fixed held-out episodes, with batch or running statistics', () => {
    const problem = makeProblem();
    const running = makeProblem({ evalBatchNorm: 'running', batchNormCalibrationEpisodes: 3 });
    const x = problem.initialX(new Random(0));
    const a = problem.evaluate(x);
    const b = problem.evaluate(x);
    expect(a).toEqual(b);
    for (const k of ['testAccuracy', 'testPrototypeAccuracy']) {
      expect(a[k]).toBeGreaterThanOrEqual(0);
      expect(a[k]).toBeLessThanOrEqual(1);
    }
    expect(a.testLoss).toBeGreaterThan(0);
    // Accuracies are multiples of 1/(episodes · queries · ways) = 1/36.
    expect(Math.abs(a.testAccuracy * 36 - Math.round(a.testAccuracy * 36))).toBeLessThan(1e-6);
    const r = running.evaluate(x);
    expect(r.testLoss).not.toBeCloseTo(a.testLoss, 6);
    const count = tf.memory().numTensors;
    problem.evaluate(x);
    running.evaluate(x);
    expect(tf.memory().numTensors).toBe(count);
    treeDispose(x);
    problem.dispose();
    running.dispose();
  });
});

describe("the 'few-shot' problem plugin", () => {
  it('builds from options (synthetic data) and validates them, naming the field', () => {
    const problem = registry.create('problem', 'few-shot', {
      dataset: 'synthetic',
      imageSize: 16,
      syntheticClasses: 8,
      syntheticImagesPerClass: 5,
      ways: 2,
      shots: 1,
      queries: 2,
      evalEpisodes: 2,
      backbone: { name: 'conv4', options: { filters: 4 } },
    }) as FewShotProblem;
    expect(problem.featureDimension).toBe(4);
    expect(problem.train.numClasses + problem.test.numClasses).toBe(8);
    problem.dispose();
    const field = (options: unknown): string => {
      try {
        registry.create('problem', 'few-shot', options);
      } catch (e) {
        expect(e).toBeInstanceOf(ConfigError);
        return (e as ConfigError).path;
      }
      throw new Error('expected a ConfigError');
    };
    expect(field({ dataset: 'synthetic', ways: 1 })).toBe('problem.options.ways');
    expect(field({ dataset: 'mnist' })).toBe('problem.options.dataset');
    expect(field({ dataset: 'synthetic', backbone: { name: 'conv4', options: { imageSize: 32 } } })).toBe(
      'problem.options.backbone.options.imageSize',
    );
    expect(field({ dataset: 'synthetic', backbone: { name: 'conv4', options: { filters: -1 } } })).toBe(
      'problem.options.backbone.options.filters',
    );
    // Backbone options are validated with the problem's, before any data is read.
    expect(() =>
      registry.validate('problem', 'few-shot', { backbone: { name: 'resnet12', options: { widths: [1] } } }),
    ).toThrow(/problem\.options\.backbone\.options\.widths: Array must contain exactly 4 element/);
    expect(() => registry.validate('problem', 'few-shot', { backbone: { name: 'vgg' } })).toThrow(
      /problem\.options\.backbone\.name: unknown backbone 'vgg'/,
    );
  });
});
