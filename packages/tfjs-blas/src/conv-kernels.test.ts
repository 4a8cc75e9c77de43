import * as tf from '@tensorflow/tfjs-core';
import {
  BLAS_BACKEND_NAME,
  blasInfo,
  isBlasAvailable,
  registerBlasBackend,
  setBlasThreads,
  setConvolutionMethod,
} from './index';
import {
  compareBackends,
  firstMismatch,
  maxRelativeError,
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

/**
 * The method of 3×3 stride-1 layers: `off` im2col, `always` Winograd (F(2×2, 3×3), or `variant`) whatever the
 * channels, else the default.
 */
function setWinograd(
  mode: 'off' | 'always' | undefined,
  variant: 'winograd' | 'winograd4' = 'winograd',
): void {
  expect(setConvolutionMethod(mode === 'off' ? 'im2col' : mode === 'always' ? variant : 'auto')).toBe(true);
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
      // The 3×3 stride-1 layers here go to Winograd by default: `off` keeps the tiled im2col path covered.
      for (const t of [1, 2]) {
        setBlasThreads(t);
        setWinograd('off');
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
      setWinograd(undefined);
    }
  });

  it('tiled convolutions propagate NaN and infinities as the JS kernels do', async () => {
    setWinograd('off');
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
    setWinograd(undefined);
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

/** Explicit NHWC padding [[0, 0], [top, bottom], [left, right], [0, 0]]. */
function explicitPad(top: number, bottom: number, left: number, right: number): Pad {
  return [
    [0, 0],
    [top, bottom],
    [left, right],
    [0, 0],
  ];
}

/** Top and left padding and the output size of a 3×3, stride-1 convolution. */
function geometry3x3(c: ConvCase): { top: number; left: number; outH: number; outW: number } {
  const [top, bottom, left, right] =
    c.pad === 'same'
      ? [1, 1, 1, 1]
      : c.pad === 'valid'
        ? [0, 0, 0, 0]
        : [c.pad[1][0], c.pad[1][1], c.pad[2][0], c.pad[2][1]];
  return { top, left, outH: c.height + top + bottom - 2, outW: c.width + left + right - 2 };
}

/**
 * y = x ⋆ w, dx and dw of Σ y·dy for a 3×3, stride-1 convolution, summed in float64 in the order of the
 * definition: the reference the float32 methods are measured against.
 */
function reference3x3(c: ConvCase, x: Float32Array, w: Float32Array, dy: Float32Array) {
  const { top, left, outH, outW } = geometry3x3(c);
  const { batch, height: H, width: W, inC: C, outC: O } = c;
  const y = new Float64Array(batch * outH * outW * O);
  const dx = new Float64Array(x.length);
  const dw = new Float64Array(w.length);
  for (let n = 0; n < batch; n++)
    for (let oy = 0; oy < outH; oy++)
      for (let ox = 0; ox < outW; ox++)
        for (let ky = 0; ky < 3; ky++) {
          const iy = oy - top + ky;
          if (iy < 0 || iy >= H) continue;
          for (let kx = 0; kx < 3; kx++) {
            const ix = ox - left + kx;
            if (ix < 0 || ix >= W) continue;
            const xo = ((n * H + iy) * W + ix) * C;
            const yo = ((n * outH + oy) * outW + ox) * O;
            for (let ch = 0; ch < C; ch++) {
              const wo = ((ky * 3 + kx) * C + ch) * O;
              for (let o = 0; o < O; o++) {
                y[yo + o] += x[xo + ch] * w[wo + o];
                dx[xo + ch] += dy[yo + o] * w[wo + o];
                dw[wo + o] += x[xo + ch] * dy[yo + o];
              }
            }
          }
        }
  return [y, dx, dw];
}

/*
 * The float32 error bound against a float64 reference, per method. Measured in the test below (y, dx and dw of
 * its two layers, values uniform in [−1, 1)): im2col 1.4e-7 to 3.6e-7, F(2×2) 2.2e-7 to 3.8e-7 (bound 2e-6), and
 * F(4×4) 2.8e-6 to 6.5e-6. F(4×4)'s transforms have entries up to 8 (Aᵀ), 5 (Bᵀ) and 1/24 (G), so its products'
 * terms are larger than the sums they cancel to; on the ResNet-12 layer shapes (N(0, 1) inputs, He-initialised
 * filters) it measures 7.7e-7 to 1.6e-5 against F(2×2)'s 1.7e-7 to 9.2e-7. The bound 3e-5 leaves a margin of 4.6
 * over the worst value measured here; one coefficient of any of the five F(4×4) transforms scaled by 1.002 fails
 * it.
 */
const REFERENCE_BOUND = { off: 2e-6, winograd: 2e-6, winograd4: 3e-5 };

(native ? describe : describe.skip).each([
  ['F(2×2, 3×3)', 'winograd'],
  ['F(4×4, 3×3)', 'winograd4'],
] as const)('cpu-blas Winograd %s convolutions', (_name, variant) => {
  beforeAll(() => {
    expect(registerBlasBackend()).toBe(true);
  });
  afterAll(async () => {
    setWinograd(undefined);
    await tf.setBackend('cpu');
  });

  const case3x3 = (
    batch: number,
    height: number,
    width: number,
    inC: number,
    outC: number,
    pad: Pad,
  ): ConvCase => ({
    batch,
    height,
    width,
    inC,
    outC,
    fh: 3,
    fw: 3,
    strides: [1, 1],
    dilations: [1, 1],
    pad,
  });

  /** y, and dx and dw of Σ y·dy: Conv2D, Conv2DBackpropInput and Conv2DBackpropFilter. */
  const forwardBackward = (c: ConvCase) => (x: tf.Tensor, w: tf.Tensor, dy: tf.Tensor) => {
    const [dx, dw] = tf.grads((p: tf.Tensor, q: tf.Tensor) => tf.sum(tf.mul(conv(c, p, q), dy)))([x, w]);
    return [conv(c, x, w), dx, dw];
  };

  const operands = (rand: () => number, c: ConvCase): Operand[] => {
    const { outH, outW } = geometry3x3(c);
    return [...caseOperands(rand, c), operand(rand, [c.batch, outH, outW, c.outC])];
  };

  /*
   * Odd sizes (tiles of 2×2 or 4×4 outputs cut by the image's edge), batch 1 and several, channel counts that are
   * not multiples of the vector width, 'same', 'valid' and explicit padding (beyond fH − 1 too, where the input
   * gradient's flipped convolution has a negative padding), a one-pixel image. Up to 512 tiles the three phases
   * run one after the other over all tiles; the last layer (2,070 tiles of 2×2, 529 of 4×4) takes the path of
   * tasks of consecutive tiles, with a last task shorter than the others.
   */
  const cases: ConvCase[] = [
    case3x3(1, 7, 9, 5, 3, 'same'),
    case3x3(3, 5, 6, 17, 19, 'valid'),
    case3x3(2, 11, 10, 33, 16, explicitPad(2, 0, 1, 2)),
    case3x3(2, 9, 8, 16, 20, explicitPad(3, 1, 0, 3)),
    case3x3(1, 1, 1, 4, 6, 'same'),
    case3x3(2, 3, 3, 2, 1, 'valid'),
    case3x3(3, 9, 11, 20, 18, 'same'),
    case3x3(1, 11, 12, 40, 17, 'same'),
    case3x3(1, 90, 91, 5, 7, 'same'),
  ];

  it('forward, input and filter gradients agree with the JS cpu backend on odd shapes, on 1 and 2 threads', async () => {
    const rand = seededRandom(21);
    const threads = blasInfo().threads;
    setWinograd('always', variant);
    try {
      for (const c of cases) {
        const ops = operands(rand, c);
        const want = await runOn('cpu', ops, forwardBackward(c));
        for (const t of [1, 2]) {
          setBlasThreads(t);
          const got = await runOn(BLAS_BACKEND_NAME, ops, forwardBackward(c));
          const err = Math.max(...got.map((g, i) => maxRelativeError(g.values, want[i].values)));
          expect({ threads: t, conv: describeCase(c), agrees: err < TOL }).toEqual({
            threads: t,
            conv: describeCase(c),
            agrees: true,
          });
        }
      }
    } finally {
      setBlasThreads(Math.max(1, threads));
      setWinograd(undefined);
    }
  });

  /*
   * Winograd's float32 error against a float64 reference, beside the im2col path's. Both sum 9·C products per
   * output; Winograd adds the rounding of the transforms and its products' terms are larger than the plain ones
   * (|Bᵀ d B| up to 4·max|d| for F(2×2), 100·max|d| for F(4×4)). The bounds and what they were measured at:
   * REFERENCE_BOUND.
   */
  it('stays within its bound (relative) of a float64 reference, like the im2col path', async () => {
    const rand = seededRandom(22);
    const modes = variant === 'winograd' ? (['off', 'always'] as const) : (['always'] as const);
    for (const c of [case3x3(2, 12, 11, 64, 64, 'same'), case3x3(1, 9, 10, 160, 48, 'same')]) {
      const ops = operands(rand, c);
      const ref = reference3x3(c, ops[0].values, ops[1].values, ops[2].values);
      for (const mode of modes) {
        setWinograd(mode, variant);
        const got = await runOn(BLAS_BACKEND_NAME, ops, forwardBackward(c));
        setWinograd(undefined);
        const bound = REFERENCE_BOUND[mode === 'off' ? 'off' : variant];
        const errs = got.map((g, i) => maxRelativeError(g.values, ref[i]));
        expect({ mode, conv: describeCase(c), within: errs.map((e) => e < bound) }).toEqual({
          mode,
          conv: describeCase(c),
          within: [true, true, true],
        });
      }
    }
  });

  /*
   * `auto` takes F(4×4) where its products (36 per 4×4 tile, edge tiles included) are at most 3/4 of F(2×2)'s
   * (16 per 2×2 tile): 24×23 outputs, 1,296 against 2,304; F(2×2) at 10×9 outputs, 324 against 400.
   */
  it('is the default for 3×3 stride-1 layers of 16 channels or more where it pays, with the same values', async () => {
    const rand = seededRandom(23);
    const c = variant === 'winograd' ? case3x3(2, 10, 9, 16, 24, 'same') : case3x3(1, 24, 23, 16, 20, 'same');
    const ops = operands(rand, c);
    setWinograd('always', variant);
    const forced = await runOn(BLAS_BACKEND_NAME, ops, forwardBackward(c));
    setWinograd('always', variant === 'winograd' ? 'winograd4' : 'winograd');
    const other = await runOn(BLAS_BACKEND_NAME, ops, forwardBackward(c));
    setWinograd('off');
    const im2col = await runOn(BLAS_BACKEND_NAME, ops, forwardBackward(c));
    setWinograd(undefined);
    const byDefault = await runOn(BLAS_BACKEND_NAME, ops, forwardBackward(c));
    // The same method gives the same bits; the methods round differently.
    forced.forEach((f, i) => {
      expect(Array.from(byDefault[i].values)).toEqual(Array.from(f.values));
      expect(maxRelativeError(im2col[i].values, f.values)).toBeLessThan(TOL);
      expect(f.values.some((v, j) => v !== other[i].values[j])).toBe(true);
    });
    expect(forced.some((f, i) => f.values.some((v, j) => v !== im2col[i].values[j]))).toBe(true);
  });

  it('propagates NaN and infinities of x, dy and the filter as the JS kernels do', async () => {
    const rand = seededRandom(24);
    const c = case3x3(2, 9, 10, 18, 20, 'same');
    const special = (shape: number[]): Operand => ({
      values: specialValues(
        rand,
        shape.reduce((a, b) => a * b, 1),
      ),
      shape,
    });
    /** Ordinary values with NaN, ∞ and −∞ at the given flat positions. */
    const sparseSpecials = (shape: number[], at: number[]): Operand => {
      const values = operand(rand, shape).values.slice();
      at.forEach((i, k) => (values[i < 0 ? values.length + i : i] = [Infinity, NaN, -Infinity][k % 3]));
      return { values, shape };
    };
    const xShape = [2, 9, 10, 18];
    const wShape = [3, 3, 18, 20];
    const yShape = [2, 9, 10, 20];
    // Special values in x (forward and filter gradient), in dy (both gradients), in the filter (forward and
    // input gradient), and sparse ones in x: a few tiles computed directly among ordinary ones. The larger layer
    // (more than 512 tiles) takes the path of tasks of consecutive tiles, with sparse ones in x and in dy.
    const large = case3x3(1, 90, 91, 3, 4, 'same');
    const sets: { c: ConvCase; ops: Operand[] }[] = [
      { c, ops: [special(xShape), operand(rand, wShape), operand(rand, yShape)] },
      { c, ops: [operand(rand, xShape), operand(rand, wShape), special(yShape)] },
      { c, ops: [operand(rand, xShape), special(wShape), operand(rand, yShape)] },
      {
        c,
        ops: [sparseSpecials(xShape, [5, 18 * 47 + 3, -1]), operand(rand, wShape), operand(rand, yShape)],
      },
      {
        c: large,
        ops: [
          sparseSpecials([1, 90, 91, 3], [7, 3 * 4000 + 2, -3]),
          operand(rand, [3, 3, 3, 4]),
          operand(rand, [1, 90, 91, 4]),
        ],
      },
      {
        c: large,
        ops: [
          operand(rand, [1, 90, 91, 3]),
          operand(rand, [3, 3, 3, 4]),
          sparseSpecials([1, 90, 91, 4], [100, 4 * 5000 + 1, -8]),
        ],
      },
    ];
    setWinograd('always', variant);
    try {
      for (const [set, { c: layer, ops }] of sets.entries()) {
        const got = await runOn(BLAS_BACKEND_NAME, ops, forwardBackward(layer));
        const want = await runOn('cpu', ops, forwardBackward(layer));
        got.forEach((g, i) => {
          const finite = (v: number) => (Number.isFinite(v) ? v : 0);
          const kind = (vs: Float32Array) =>
            Array.from(vs, (v) => (Number.isNaN(v) ? 'NaN' : Number.isFinite(v) ? 'finite' : v));
          expect({ set, output: i, kinds: kind(g.values) }).toEqual({
            set,
            output: i,
            kinds: kind(want[i].values),
          });
          expect(firstMismatch(g.values.map(finite), want[i].values.map(finite), 1e-3)).toBe(-1);
        });
      }
    } finally {
      setWinograd(undefined);
    }
  });

  it('empty tensors: no images, no input channels, no output channels', async () => {
    const rand = seededRandom(25);
    setWinograd('always', variant);
    try {
      for (const c of [
        case3x3(0, 5, 5, 4, 3, 'same'),
        case3x3(2, 5, 5, 0, 3, 'same'),
        case3x3(2, 5, 5, 4, 0, 'same'),
      ]) {
        const ops = operands(rand, c);
        const got = await runOn(BLAS_BACKEND_NAME, ops, forwardBackward(c));
        const want = await runOn('cpu', ops, forwardBackward(c));
        got.forEach((g, i) => {
          expect(g.shape).toEqual(want[i].shape);
          expect(Array.from(g.values)).toEqual(Array.from(want[i].values));
        });
      }
    } finally {
      setWinograd(undefined);
    }
  });
});
