import * as tf from '@tensorflow/tfjs-core';
import { BLAS_BACKEND_NAME, blasInfo, broadcastLayout, isBlasAvailable, registerBlasBackend } from './index';
import {
  compareBackends,
  firstMismatch,
  operand,
  randInt,
  runOn,
  seededRandom,
  specialValues,
  type Operand,
} from './test-utils/compare';

describe('broadcastLayout', () => {
  it('drops size-1 dims and merges dims both operands step through as one', () => {
    expect(broadcastLayout([2, 3, 4], [2, 3, 4], [4])).toEqual({
      shape: [6, 4],
      aStrides: [4, 1],
      bStrides: [0, 1],
    });
    expect(broadcastLayout([2, 3, 4], [2, 3, 4], [2, 3, 4])).toEqual({
      shape: [24],
      aStrides: [1],
      bStrides: [1],
    });
    expect(broadcastLayout([5, 10], [5, 10], [5, 1])).toEqual({
      shape: [5, 10],
      aStrides: [10, 1],
      bStrides: [1, 0],
    });
    expect(broadcastLayout([2, 3], [2, 1], [1, 3])).toEqual({
      shape: [2, 3],
      aStrides: [1, 0],
      bStrides: [0, 1],
    });
    expect(broadcastLayout([4, 1, 6], [4, 1, 6], [])).toEqual({ shape: [24], aStrides: [1], bStrides: [0] });
    expect(broadcastLayout([1, 1], [1], [1, 1])).toEqual({ shape: [1], aStrides: [0], bStrides: [0] });
  });
});

const native = isBlasAvailable();
if (!native)
  console.warn(`skipped the native elementwise kernel tests: ${blasInfo().reason} (${blasInfo().hint})`);

/** Pairs of broadcastable shapes: equal, scalar, row, column, two-sided, high rank. */
const SHAPE_PAIRS: [number[], number[]][] = [
  [
    [7, 5],
    [7, 5],
  ],
  [[], [4, 3]],
  [[6, 4], []],
  // single values of different ranks, and an empty tensor with a single value (the flat path's edges)
  [[1], [1, 1]],
  [[1, 1, 1], [1]],
  [
    [5, 3],
    [1, 1],
  ],
  [[1], [2, 3]],
  [[0, 3], []],
  [[1], [0, 4]],
  [[9, 10], [10]],
  [
    [9, 10],
    [9, 1],
  ],
  [
    [1, 10],
    [9, 1],
  ],
  [
    [2, 1, 3],
    [4, 1],
  ],
  [
    [3, 1, 4, 1, 2],
    [2, 1, 5, 1],
  ],
  [
    [2, 3, 4, 5],
    [1, 3, 1, 5],
  ],
];

function specialOperand(rand: () => number, shape: number[]): Operand {
  return {
    values: specialValues(
      rand,
      shape.reduce((a, b) => a * b, 1),
    ),
    shape,
  };
}

(native ? describe : describe.skip)('cpu-blas elementwise kernels against the JS cpu backend', () => {
  beforeAll(() => {
    expect(registerBlasBackend()).toBe(true);
  });
  afterAll(async () => {
    await tf.setBackend('cpu');
  });

  const binaryOps: [string, (a: tf.Tensor, b: tf.Tensor) => tf.Tensor][] = [
    ['add', tf.add],
    ['sub', tf.sub],
    ['mul', tf.mul],
    ['div', tf.div],
    ['maximum', tf.maximum],
    ['minimum', tf.minimum],
    ['squaredDifference', tf.squaredDifference],
    ['equal', tf.equal],
    ['notEqual', tf.notEqual],
    ['less', tf.less],
    ['lessEqual', tf.lessEqual],
    ['greater', tf.greater],
    ['greaterEqual', tf.greaterEqual],
  ];

  it.each(binaryOps)('%s broadcasts like the JS kernel, NaN, ±Infinity and ±0 included', async (name, op) => {
    const rand = seededRandom(name.length * 7919);
    for (const [sa, sb] of SHAPE_PAIRS) {
      const ops = [specialOperand(rand, sa), specialOperand(rand, sb)];
      const [got] = await runOn(BLAS_BACKEND_NAME, ops, (a, b) => op(a, b));
      const [want] = await runOn('cpu', ops, (a, b) => op(a, b));
      expect(got.shape).toEqual(want.shape);
      // Float ops on float32 inputs give the same rounding as JS's double arithmetic rounded to float32;
      // squaredDifference may differ by one unit in the last place.
      const at = firstMismatch(got.values, want.values, 1e-6);
      expect({ shapes: [sa, sb], at }).toEqual({ shapes: [sa, sb], at: -1 });
    }
  });

  it.each(binaryOps)(
    '%s on at most 16 values (computed in JS) equals the addon on 17 (the native path), bit for bit',
    async (name, op) => {
      const rand = seededRandom(name.length * 104729);
      // Values that stress the rounding: ordinary, specials, subnormals, huge (overflow), near-equal pairs.
      const pick = (): number => {
        const u = rand();
        if (u < 0.15) return [NaN, Infinity, -Infinity, 0, -0][Math.floor(rand() * 5)];
        if (u < 0.25) return (rand() - 0.5) * 2e-38 * rand();
        if (u < 0.35) return (rand() - 0.5) * 6e38;
        return (rand() - 0.5) * 10 ** (8 * rand() - 4);
      };
      const same = (x: number, y: number): boolean => Object.is(x, y) || (Number.isNaN(x) && Number.isNaN(y));
      let compared = 0;
      for (let round = 0; round < 40; round++) {
        const a = Float32Array.from({ length: 17 }, pick);
        const b = Float32Array.from({ length: 17 }, (_, i) => (rand() < 0.2 ? a[i] * (1 + 1e-7) : pick()));
        const single: Operand = { values: Float32Array.of(pick()), shape: [] };
        for (const withScalar of [false, true]) {
          const bOf = (n: number): Operand => (withScalar ? single : { values: b.slice(0, n), shape: [n] });
          const [tiny] = await runOn(
            BLAS_BACKEND_NAME,
            [{ values: a.slice(0, 16), shape: [16] }, bOf(16)],
            op,
          );
          const [wide] = await runOn(BLAS_BACKEND_NAME, [{ values: a, shape: [17] }, bOf(17)], op);
          for (let i = 0; i < 16; i++) {
            const at = { round, withScalar, i, a: a[i], b: withScalar ? single.values[0] : b[i] };
            expect({ ...at, same: same(tiny.values[i], wide.values[i]) }).toEqual({ ...at, same: true });
            compared++;
          }
        }
      }
      expect(compared).toBe(40 * 2 * 16);
    },
  );

  it('comparisons give bool tensors and int32 operands use the JS kernels', async () => {
    await tf.setBackend(BLAS_BACKEND_NAME);
    const c = tf.less(tf.tensor1d([1, 5, NaN]), tf.scalar(3));
    expect(c.dtype).toBe('bool');
    expect(Array.from(c.dataSync())).toEqual([1, 0, 0]);
    const i = tf.add(tf.tensor1d([1, 2], 'int32'), tf.scalar(3, 'int32'));
    expect(i.dtype).toBe('int32');
    expect(Array.from(i.dataSync())).toEqual([4, 5]);
    tf.dispose([c, i]);
  });

  const unaryOps: [string, (x: tf.Tensor) => tf.Tensor][] = [
    ['relu', tf.relu],
    ['relu6', tf.relu6],
    ['elu', tf.elu],
    ['neg', tf.neg],
    ['square', tf.square],
    ['sqrt', tf.sqrt],
    ['rsqrt', tf.rsqrt],
    ['exp', tf.exp],
    ['log', tf.log],
    ['abs', tf.abs],
    ['sigmoid', tf.sigmoid],
    ['tanh', tf.tanh],
    ['step', (x) => tf.step(x, 0.25)],
  ];

  it.each(unaryOps)('%s agrees with the JS kernel, special values included', async (name, op) => {
    const rand = seededRandom(name.length * 104729);
    const ops = [specialOperand(rand, [37, 11])];
    const [got] = await runOn(BLAS_BACKEND_NAME, ops, (x) => op(x));
    const [want] = await runOn('cpu', ops, (x) => op(x));
    expect(firstMismatch(got.values, want.values, 1e-6)).toBe(-1);
  });

  it('gradients of a batch-norm + softmax cross-entropy loss agree (broadcast ops backward)', async () => {
    const rand = seededRandom(31);
    const ops = [
      operand(rand, [16, 5, 5, 6]),
      operand(rand, [6]),
      operand(rand, [6]),
      operand(rand, [150, 7]),
    ];
    const loss = (x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, w: tf.Tensor) =>
      tf.grads((g: tf.Tensor, b: tf.Tensor, wv: tf.Tensor) => {
        const { mean, variance } = tf.moments(x, [0, 1, 2]);
        const h = tf.relu(tf.add(tf.mul(tf.div(tf.sub(x, mean), tf.sqrt(tf.add(variance, 1e-5))), g), b));
        const logits = tf.matMul(tf.reshape(h, [16, 150]), wv);
        const lse = tf.add(
          tf.log(tf.sum(tf.exp(tf.sub(logits, tf.max(logits, 1, true))), 1, true)),
          tf.max(logits, 1, true),
        );
        return tf.mean(tf.sub(lse, tf.slice(logits, [0, 0], [16, 1])));
      })([gamma, beta, w]);
    expect(await compareBackends(BLAS_BACKEND_NAME, 'cpu', ops, loss)).toBeLessThan(1e-4);
  });

  it('large tensors (split over the worker threads) agree, contiguous and broadcast, chunks across runs', async () => {
    const rand = seededRandom(77);
    const pairs: [number[], number[]][] = [
      [[70_001], [70_001]],
      [[70, 1001], [1001]],
      [
        [7, 1003, 10],
        [7, 1003, 1],
      ],
      [
        [3, 25_000],
        [3, 1],
      ],
    ];
    for (const [sa, sb] of pairs) {
      const ops = [specialOperand(rand, sa), specialOperand(rand, sb)];
      for (const op of [tf.mul, tf.maximum, tf.greater]) {
        const [got] = await runOn(BLAS_BACKEND_NAME, ops, (a, b) => op(a, b));
        const [want] = await runOn('cpu', ops, (a, b) => op(a, b));
        expect({ sa, sb, op: op.name, at: firstMismatch(got.values, want.values, 1e-6) }).toEqual({
          sa,
          sb,
          op: op.name,
          at: -1,
        });
      }
    }
    for (const op of unaryOps) {
      const ops = [specialOperand(rand, [70_003])];
      const [got] = await runOn(BLAS_BACKEND_NAME, ops, (x) => op[1](x));
      const [want] = await runOn('cpu', ops, (x) => op[1](x));
      expect({ op: op[0], at: firstMismatch(got.values, want.values, 1e-6) }).toEqual({ op: op[0], at: -1 });
    }
  });

  it('exp, log and sigmoid stay within 2 ulp of float64 over the whole float range (subnormals, overflow)', async () => {
    await tf.setBackend(BLAS_BACKEND_NAME);
    // exp over [-110, 90] (underflow to 0 and overflow to Infinity at the ends), log over 1e-44 … 3e38.
    const n = 200_001;
    const xe = Float32Array.from({ length: n }, (_, i) => -110 + (200 * i) / (n - 1));
    const xl = Float32Array.from({ length: n }, (_, i) => Math.exp(-101 + (190 * i) / (n - 1)));
    const outs = tf.tidy(() => [
      tf.exp(tf.tensor1d(xe)),
      tf.log(tf.tensor1d(xl)),
      tf.sigmoid(tf.tensor1d(xe)),
    ]);
    const [e, l, s] = outs.map((t) => t.dataSync());
    tf.dispose(outs);
    // Results below the smallest normal float may be flushed to zero (documented); elsewhere count ulps.
    const SMALLEST_NORMAL = 2 ** -126;
    const ulps = (got: number, want: number) => {
      const w = Math.fround(want);
      if (!Number.isFinite(w)) return got === w ? 0 : Infinity;
      if (Math.abs(want) < SMALLEST_NORMAL) return Math.abs(got) < SMALLEST_NORMAL ? 0 : Infinity;
      return Math.abs(got - want) / (Math.abs(w) * 2 ** -23);
    };
    let worst = { exp: 0, log: 0, sigmoid: 0 };
    for (let i = 0; i < n; i++) {
      worst = {
        exp: Math.max(worst.exp, ulps(e[i], Math.exp(xe[i]))),
        log: Math.max(worst.log, ulps(l[i], Math.log(xl[i]))),
        sigmoid: Math.max(worst.sigmoid, ulps(s[i], 1 / (1 + Math.exp(-xe[i])))),
      };
    }
    expect(worst.exp).toBeLessThanOrEqual(2);
    expect(worst.log).toBeLessThanOrEqual(2);
    expect(worst.sigmoid).toBeLessThanOrEqual(3);
  });

  it('random broadcasts of every rank up to 6 agree', async () => {
    const rand = seededRandom(32);
    for (let trial = 0; trial < 20; trial++) {
      const rank = randInt(rand, 1, 6);
      const out = Array.from({ length: rank }, () => randInt(rand, 1, 4));
      const drop = (s: number[]) => s.slice(randInt(rand, 0, s.length)).map((d) => (rand() < 0.3 ? 1 : d));
      const ops = [operand(rand, drop(out)), operand(rand, out)];
      const err = await compareBackends(BLAS_BACKEND_NAME, 'cpu', ops, (a, b) => [
        tf.mul(a, b),
        tf.sub(b, a),
      ]);
      expect(err).toBeLessThan(1e-6);
    }
  });
});
