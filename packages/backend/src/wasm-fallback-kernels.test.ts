import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from './index';

/** Seeded values in [-1, 1) (mulberry32). */
function values(seed: number, size: number): Float32Array {
  let a = seed >>> 0;
  const out = new Float32Array(size);
  for (let i = 0; i < size; i++) {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = (((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1;
  }
  return out;
}

/** Runs `fn` on `backend` with the same input data, returning every output's values. */
async function run(
  backend: string,
  inputs: { shape: number[]; seed: number }[],
  fn: (...t: tf.Tensor[]) => tf.Tensor[],
): Promise<Float32Array[]> {
  await tf.setBackend(backend);
  return tf.tidy(() => {
    const ts = inputs.map((i) =>
      tf.tensor(
        values(
          i.seed,
          i.shape.reduce((a, b) => a * b, 1),
        ),
        i.shape,
      ),
    );
    return fn(...ts).map((t) => t.dataSync() as Float32Array);
  });
}

function relErr(a: Float32Array, b: Float32Array): number {
  let d = 0;
  let s = 0;
  for (let i = 0; i < b.length; i++) {
    d = Math.max(d, Math.abs(a[i] - b[i]));
    s = Math.max(s, Math.abs(b[i]));
  }
  return a.length === b.length ? d / Math.max(s, 1e-30) : Infinity;
}

async function agree(
  inputs: { shape: number[]; seed: number }[],
  fn: (...t: tf.Tensor[]) => tf.Tensor[],
): Promise<number> {
  const got = await run('wasm', inputs, fn);
  const want = await run('cpu', inputs, fn);
  return Math.max(...got.map((g, i) => relErr(g, want[i])));
}

describe('kernels the wasm backend lacks, bridged to the JS kernels', () => {
  beforeAll(async () => {
    await initBackend({ backend: 'wasm', log: () => undefined });
  });
  afterAll(async () => {
    await tf.setBackend('cpu');
  });

  it('are registered for wasm (Conv2DBackpropFilter, UnsortedSegmentSum, depthwise gradients, Einsum)', () => {
    for (const name of [
      'Conv2DBackpropFilter',
      'UnsortedSegmentSum',
      'DepthwiseConv2dNativeBackpropFilter',
      'DepthwiseConv2dNativeBackpropInput',
      'Einsum',
    ]) {
      expect(tf.getKernel(name, 'wasm')).toBeDefined();
    }
  });

  it('conv2d gradients with respect to the filter (and input) agree with cpu', async () => {
    const err = await agree(
      [
        { shape: [2, 9, 9, 3], seed: 1 },
        { shape: [3, 3, 3, 5], seed: 2 },
      ],
      (x, w) =>
        tf.grads((p: tf.Tensor, q: tf.Tensor) =>
          tf.sum(tf.square(tf.conv2d(p as tf.Tensor4D, q as tf.Tensor4D, 2, 'same'))),
        )([x, w]),
    );
    expect(err).toBeLessThan(1e-4);
  });

  it('Conv2DBackpropFilter as a wasm convolution: strides, same/valid/explicit padding, unread rows', async () => {
    const cases: [
      number[],
      number[],
      number,
      'same' | 'valid' | [[number, number], [number, number], [number, number], [number, number]],
    ][] = [
      [[2, 9, 9, 3], [3, 3, 3, 5], 1, 'same'],
      [[2, 9, 9, 3], [3, 3, 3, 5], 2, 'same'],
      [[1, 10, 8, 2], [3, 2, 2, 4], 2, 'valid'],
      [[3, 7, 11, 2], [2, 3, 2, 3], 3, 'valid'],
      [
        [2, 8, 8, 4],
        [3, 3, 4, 2],
        2,
        [
          [0, 0],
          [1, 0],
          [2, 1],
          [0, 0],
        ],
      ],
      [[2, 6, 6, 4], [1, 1, 4, 6], 2, 'valid'],
    ];
    for (const [xShape, wShape, stride, pad] of cases) {
      const info = tf.backend_util.computeConv2DInfo(
        xShape as [number, number, number, number],
        wShape as [number, number, number, number],
        stride,
        1,
        pad,
      );
      const err = await agree(
        [
          { shape: xShape, seed: 11 },
          { shape: info.outShape, seed: 12 },
        ],
        (x, dy) => [
          tf
            .engine()
            .runKernel(
              'Conv2DBackpropFilter',
              { x, dy },
              { strides: stride, pad, dataFormat: 'NHWC', filterShape: wShape },
            ) as tf.Tensor,
        ],
      );
      expect({ xShape, wShape, stride, pad, agrees: err < 1e-4 }).toEqual({
        xShape,
        wShape,
        stride,
        pad,
        agrees: true,
      });
    }
  });

  it('gather gradients (UnsortedSegmentSum) agree with cpu', async () => {
    const err = await agree([{ shape: [6, 4], seed: 3 }], (x) => [
      tf.grad((p: tf.Tensor) => tf.sum(tf.square(tf.gather(p, tf.tensor1d([0, 2, 2, 5, 0], 'int32')))))(x),
    ]);
    expect(err).toBeLessThan(1e-4);
  });

  it('depthwise conv gradients and einsum agree with cpu', async () => {
    const err = await agree(
      [
        { shape: [1, 6, 6, 2], seed: 4 },
        { shape: [3, 3, 2, 2], seed: 5 },
        { shape: [3, 4], seed: 6 },
        { shape: [4, 5], seed: 7 },
      ],
      (x, w, a, b) => [
        ...tf.grads((p: tf.Tensor, q: tf.Tensor) =>
          tf.sum(tf.square(tf.depthwiseConv2d(p as tf.Tensor4D, q as tf.Tensor4D, 1, 'same'))),
        )([x, w]),
        tf.einsum('ij,jk->ik', a, b),
      ],
    );
    expect(err).toBeLessThan(1e-4);
  });

  it('leaves no tensor behind on either side of the bridge', async () => {
    await tf.setBackend('wasm');
    const x = tf.randomNormal([1, 5, 5, 2]) as tf.Tensor4D;
    const w = tf.randomNormal([2, 2, 2, 3]) as tf.Tensor4D;
    const before = tf.memory().numTensors;
    for (let i = 0; i < 20; i++) {
      tf.tidy(() => {
        tf.grad((q: tf.Tensor) => tf.sum(tf.conv2d(x, q as tf.Tensor4D, 1, 'valid')))(w);
        tf.einsum('ij,jk->ik', x.reshape([5, 10]), tf.ones([10, 2]));
      });
    }
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([x, w]);
  });
});
