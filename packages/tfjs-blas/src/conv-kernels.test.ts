import * as tf from '@tensorflow/tfjs-core';
import { BLAS_BACKEND_NAME, blasInfo, isBlasAvailable, registerBlasBackend, setBlasThreads } from './index';
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

const TOL = 1e-4;

const native = isBlasAvailable();
if (!native) {
  console.warn(`skipped the native convolution kernel tests: ${blasInfo().reason} (${blasInfo().hint})`);
}

type Pad = 'same' | 'valid' | [[number, number], [number, number], [number, number], [number, number]];

interface ConvCase {
  batch: number;
  height: number;
  width: number;
  inC: number;
  outC: number;
  fh: number;
  fw: number;
  strides: [number, number];
  dilations: [number, number];
  pad: Pad;
}

function describeCase(c: ConvCase): string {
  const pad = typeof c.pad === 'string' ? c.pad : JSON.stringify(c.pad);
  return (
    `x [${c.batch}, ${c.height}, ${c.width}, ${c.inC}] w [${c.fh}, ${c.fw}, ${c.inC}, ${c.outC}] ` +
    `strides ${c.strides} dilations ${c.dilations} pad ${pad}`
  );
}

/** Random convolutions: 'same', 'valid' and explicit padding, strides 1–3, dilations 1–2 (forward only). */
function randomCases(seed: number, count: number, withDilation: boolean): ConvCase[] {
  const rand = seededRandom(seed);
  const cases: ConvCase[] = [];
  for (let i = 0; i < count; i++) {
    const fh = randInt(rand, 1, 4);
    const fw = randInt(rand, 1, 4);
    const dilations: [number, number] = withDilation && i % 3 === 0 ? [randInt(rand, 1, 2), 2] : [1, 1];
    const dilated = dilations[0] > 1 || dilations[1] > 1;
    const strides: [number, number] = dilated ? [1, 1] : [randInt(rand, 1, 3), randInt(rand, 1, 3)];
    const kind = i % 3;
    const pad: Pad =
      kind === 0
        ? 'same'
        : kind === 1
          ? 'valid'
          : [
              [0, 0],
              [randInt(rand, 0, 2), randInt(rand, 0, 2)],
              [randInt(rand, 0, 2), randInt(rand, 0, 2)],
              [0, 0],
            ];
    const minH = (fh - 1) * dilations[0] + 1;
    const minW = (fw - 1) * dilations[1] + 1;
    cases.push({
      batch: randInt(rand, 1, 3),
      height: randInt(rand, minH, minH + 8),
      width: randInt(rand, minW, minW + 8),
      inC: randInt(rand, 1, 6),
      outC: randInt(rand, 1, 7),
      fh,
      fw,
      strides,
      dilations,
      pad,
    });
  }
  return cases;
}

function caseOperands(rand: () => number, c: ConvCase): [Operand, Operand] {
  return [operand(rand, [c.batch, c.height, c.width, c.inC]), operand(rand, [c.fh, c.fw, c.inC, c.outC])];
}

function conv(c: ConvCase, x: tf.Tensor, w: tf.Tensor): tf.Tensor4D {
  return tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, c.strides, c.pad, 'NHWC', c.dilations);
}

(native ? describe : describe.skip)('cpu-blas convolution kernels against the JS cpu backend', () => {
  beforeAll(() => {
    expect(registerBlasBackend()).toBe(true);
  });
  afterAll(async () => {
    await tf.setBackend('cpu');
  });

  it('Conv2D forward on random shapes: strides, same/valid/explicit padding, dilations', async () => {
    const rand = seededRandom(11);
    for (const c of randomCases(10, 30, true)) {
      const err = await compareBackends(BLAS_BACKEND_NAME, 'cpu', caseOperands(rand, c), (x, w) =>
        conv(c, x, w),
      );
      expect({ conv: describeCase(c), agrees: err < TOL }).toEqual({ conv: describeCase(c), agrees: true });
    }
  });

  it('Conv2DBackpropInput and Conv2DBackpropFilter: tf.grads of a loss through conv2d', async () => {
    const rand = seededRandom(12);
    for (const c of randomCases(20, 24, false)) {
      const [x, w] = caseOperands(rand, c);
      const info = tf.backend_util.computeConv2DInfo(
        x.shape as [number, number, number, number],
        w.shape as [number, number, number, number],
        c.strides,
        c.dilations,
        c.pad,
      );
      const weights = operand(rand, info.outShape);
      const grads = (xs: tf.Tensor, ws: tf.Tensor, cs: tf.Tensor) =>
        tf.grads((p: tf.Tensor, q: tf.Tensor) => tf.sum(tf.mul(tf.tanh(conv(c, p, q)), cs)))([xs, ws]);
      const err = await compareBackends(BLAS_BACKEND_NAME, 'cpu', [x, w, weights], grads);
      expect({ conv: describeCase(c), agrees: err < TOL }).toEqual({ conv: describeCase(c), agrees: true });
    }
  });

  it('conv2dTranspose (Conv2DBackpropInput as an op of its own) agrees', async () => {
    const rand = seededRandom(13);
    for (const [outShape, fh, stride, pad] of [
      [[2, 8, 8, 3], 3, 2, 'same'],
      [[1, 9, 7, 2], 2, 1, 'valid'],
      [[3, 10, 10, 4], 4, 2, 'same'],
    ] as [[number, number, number, number], number, number, 'same' | 'valid'][]) {
      const info = tf.backend_util.computeConv2DInfo(outShape, [fh, fh, outShape[3], 5], stride, 1, pad);
      const ops = [operand(rand, info.outShape), operand(rand, [fh, fh, outShape[3], 5])];
      const err = await compareBackends(BLAS_BACKEND_NAME, 'cpu', ops, (dy, w) =>
        tf.conv2dTranspose(dy as tf.Tensor4D, w as tf.Tensor4D, outShape, stride, pad),
      );
      expect(err).toBeLessThan(TOL);
    }
  });

  it('the conv layers of Conv-4 and ResNet-12 (3×3 same, 1×1 stride-2 shortcut), forward and backward', async () => {
    const rand = seededRandom(14);
    const layers: ConvCase[] = [
      {
        batch: 4,
        height: 28,
        width: 28,
        inC: 1,
        outC: 16,
        fh: 3,
        fw: 3,
        strides: [1, 1],
        dilations: [1, 1],
        pad: 'same',
      },
      {
        batch: 2,
        height: 10,
        width: 10,
        inC: 16,
        outC: 24,
        fh: 3,
        fw: 3,
        strides: [1, 1],
        dilations: [1, 1],
        pad: 'same',
      },
      {
        batch: 2,
        height: 12,
        width: 12,
        inC: 16,
        outC: 40,
        fh: 1,
        fw: 1,
        strides: [1, 1],
        dilations: [1, 1],
        pad: 'same',
      },
      {
        batch: 2,
        height: 12,
        width: 12,
        inC: 16,
        outC: 40,
        fh: 1,
        fw: 1,
        strides: [2, 2],
        dilations: [1, 1],
        pad: 'valid',
      },
    ];
    for (const c of layers) {
      const [x, w] = caseOperands(rand, c);
      const fwdBwd = (xs: tf.Tensor, ws: tf.Tensor) => {
        const [dx, dw] = tf.grads((p: tf.Tensor, q: tf.Tensor) => tf.sum(tf.square(conv(c, p, q))))([xs, ws]);
        return [conv(c, xs, ws), dx, dw];
      };
      const err = await compareBackends(BLAS_BACKEND_NAME, 'cpu', [x, w], fwdBwd);
      expect({ conv: describeCase(c), agrees: err < TOL }).toEqual({ conv: describeCase(c), agrees: true });
    }
  });

  it('FusedConv2D: bias per channel or broadcast, every activation, and its gradients', async () => {
    const rand = seededRandom(15);
    const activations: tf.fused.Activation[] = [
      'linear',
      'relu',
      'relu6',
      'elu',
      'sigmoid',
      'leakyrelu',
      'prelu',
    ];
    const cases = randomCases(30, activations.length * 2, false);
    for (let i = 0; i < cases.length; i++) {
      const c = cases[i];
      const activation = activations[i % activations.length];
      const biasShape = i < activations.length ? [c.outC] : [1, 1, 1, 1];
      const [x, w] = caseOperands(rand, c);
      const ops = [x, w, operand(rand, biasShape), operand(rand, [c.outC])];
      const fused = (xs: tf.Tensor, ws: tf.Tensor, bias: tf.Tensor, alpha: tf.Tensor) =>
        tf.fused.conv2d({
          x: xs as tf.Tensor4D,
          filter: ws as tf.Tensor4D,
          strides: c.strides,
          pad: c.pad,
          bias,
          activation,
          preluActivationWeights: activation === 'prelu' ? alpha : undefined,
          leakyreluAlpha: 0.3,
        });
      const err = await compareBackends(BLAS_BACKEND_NAME, 'cpu', ops, fused);
      expect({ conv: describeCase(c), activation, biasShape, agrees: err < TOL }).toEqual({
        conv: describeCase(c),
        activation,
        biasShape,
        agrees: true,
      });
      if (activation === 'relu' || activation === 'linear') {
        // tfjs differentiates fused conv2d for linear and relu: dx, dw and the bias gradient.
        const grads = (xs: tf.Tensor, ws: tf.Tensor, bias: tf.Tensor) =>
          tf.grads((p: tf.Tensor, q: tf.Tensor, r: tf.Tensor) =>
            tf.sum(
              tf.square(
                tf.fused.conv2d({
                  x: p as tf.Tensor4D,
                  filter: q as tf.Tensor4D,
                  strides: c.strides,
                  pad: c.pad,
                  bias: r,
                  activation,
                }),
              ),
            ),
          )([xs, ws, bias]);
        expect(await compareBackends(BLAS_BACKEND_NAME, 'cpu', ops.slice(0, 3), grads)).toBeLessThan(TOL);
      }
    }
  });

  it('NCHW convolutions (run by the JS kernels on cpu-blas) agree', async () => {
    const rand = seededRandom(16);
    const x = operand(rand, [2, 3, 7, 6]);
    const w = operand(rand, [3, 3, 3, 4]);
    const err = await compareBackends(BLAS_BACKEND_NAME, 'cpu', [x, w], (xs, ws) =>
      tf.conv2d(xs as tf.Tensor4D, ws as tf.Tensor4D, 1, 'same', 'NCHW'),
    );
    expect(err).toBeLessThan(TOL);
  });

  it('a small convnet: loss gradients of conv → relu → maxPool → dense agree', async () => {
    const rand = seededRandom(17);
    const ops = [
      operand(rand, [8, 12, 12, 1]),
      operand(rand, [3, 3, 1, 8]),
      operand(rand, [3, 3, 8, 8]),
      operand(rand, [3 * 3 * 8, 5]),
      operand(rand, [8, 5]),
    ];
    const net = (x: tf.Tensor, w1: tf.Tensor, w2: tf.Tensor, w3: tf.Tensor, y: tf.Tensor) =>
      tf.grads((a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) => {
        let h = tf.relu(tf.conv2d(x as tf.Tensor4D, a as tf.Tensor4D, 1, 'same'));
        h = tf.maxPool(h, 2, 2, 'valid');
        h = tf.relu(tf.conv2d(h, b as tf.Tensor4D, 1, 'same'));
        h = tf.maxPool(h, 2, 2, 'valid');
        const logits = tf.matMul(tf.reshape(h, [8, -1]), c);
        return tf.mean(tf.square(tf.sub(logits, y)));
      })([w1, w2, w3]);
    expect(await compareBackends(BLAS_BACKEND_NAME, 'cpu', ops, net)).toBeLessThan(TOL);
  });

  /**
   * Layers wide enough (≥ 16 output channels, tiles of at least outC rows) for the tiled paths: forward and
   * filter gradient as per-thread tiles, the input gradient of a stride-1 layer as a convolution with the
   * flipped filter (padding beyond fH − 1 included, where the flipped convolution's padding is negative), on
   * one thread and on two; a tile count that does not divide the rows; batch 1; stride 2 and dilation 2 (the
   * input gradient by col2im there).
   */
  it('tiled convolutions (per-thread tiles, input gradient as a flipped convolution) agree on 1 and 2 threads', async () => {
    const rand = seededRandom(16);
    const same = (batch: number, size: number, inC: number, outC: number, k: number): ConvCase => ({
      batch,
      height: size,
      width: size,
      inC,
      outC,
      fh: k,
      fw: k,
      strides: [1, 1],
      dilations: [1, 1],
      pad: 'same',
    });
    const layers: ConvCase[] = [
      same(2, 19, 16, 24, 3),
      same(1, 17, 20, 16, 5),
      { ...same(1, 23, 20, 32, 3), width: 17, pad: 'valid' },
      {
        ...same(2, 15, 18, 16, 3),
        fw: 2,
        pad: [
          [0, 0],
          [3, 1],
          [0, 2],
          [0, 0],
        ],
      },
      { ...same(2, 16, 16, 16, 3), strides: [2, 2] },
      { ...same(2, 16, 16, 20, 3), dilations: [2, 2] },
      same(3, 12, 3, 32, 3),
    ];
    const threads = blasInfo().threads;
    try {
      for (const t of [1, 2]) {
        setBlasThreads(t);
        for (const c of layers) {
          const [x, w] = caseOperands(rand, c);
          // tfjs has no gradients of dilated convolutions: those are checked forward only.
          const fwdBwd = (xs: tf.Tensor, ws: tf.Tensor) => {
            if (c.dilations[0] > 1) return [conv(c, xs, ws)];
            const [dx, dw] = tf.grads((p: tf.Tensor, q: tf.Tensor) => tf.sum(tf.sin(conv(c, p, q))))([
              xs,
              ws,
            ]);
            return [conv(c, xs, ws), dx, dw];
          };
          const err = await compareBackends(BLAS_BACKEND_NAME, 'cpu', [x, w], fwdBwd);
          // The tiled kernels set OpenBLAS to one thread while they run and restore the setting after.
          expect({ threads: blasInfo().threads, conv: describeCase(c), agrees: err < TOL }).toEqual({
            threads: t,
            conv: describeCase(c),
            agrees: true,
          });
        }
      }
    } finally {
      setBlasThreads(Math.max(1, threads));
    }
  });

  it('tiled convolutions propagate NaN and infinities as the JS kernels do', async () => {
    const rand = seededRandom(17);
    const shape = [2, 12, 12, 16];
    const ops = [
      { values: specialValues(rand, 2 * 12 * 12 * 16), shape },
      operand(rand, [3, 3, 16, 16]),
      operand(rand, shape),
    ];
    const fn = (x: tf.Tensor, w: tf.Tensor, dy: tf.Tensor) => {
      const y = tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, 1, 'same');
      const dx = tf.conv2dTranspose(
        dy as tf.Tensor4D,
        w as tf.Tensor4D,
        shape as [number, number, number, number],
        1,
        'same',
      );
      return [y, dx];
    };
    const got = await runOn(BLAS_BACKEND_NAME, ops, fn);
    const want = await runOn('cpu', ops, fn);
    got.forEach((g, i) => {
      const finite = (v: number) => (Number.isFinite(v) ? v : 0);
      // Where the JS kernel's value is finite the native one agrees; NaN and infinities land where they do.
      const nanAt = (vs: Float32Array) => Array.from(vs, (v) => Number.isNaN(v));
      expect(nanAt(g.values)).toEqual(nanAt(want[i].values));
      expect(firstMismatch(g.values.map(finite), want[i].values.map(finite), 1e-3)).toBe(-1);
    });
  });

  it('leaves no tensor behind over many conv iterations', async () => {
    await tf.setBackend(BLAS_BACKEND_NAME);
    const x = tf.randomNormal([2, 6, 6, 3]) as tf.Tensor4D;
    const w = tf.randomNormal([3, 3, 3, 4]) as tf.Tensor4D;
    const bias = tf.randomNormal([4]);
    const base = tf.memory().numTensors;
    for (let i = 0; i < 30; i++) {
      tf.tidy(() => {
        tf.fused.conv2d({
          x,
          filter: w,
          strides: 1,
          pad: 'same',
          bias,
          activation: 'prelu',
          preluActivationWeights: tf.scalar(0.2),
        });
        tf.grads((p: tf.Tensor, q: tf.Tensor) =>
          tf.sum(tf.conv2d(p as tf.Tensor4D, q as tf.Tensor4D, 2, 'same')),
        )([x, w]);
      });
    }
    expect(tf.memory().numTensors).toBe(base);
    tf.dispose([x, w, bias]);
  });
});
