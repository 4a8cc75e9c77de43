import * as tf from '@tensorflow/tfjs-core';
import {
  channelAffine,
  channelMoments,
  fusedBatchNorm,
  fusedLeakyRelu,
  hasFusedBatchNormKernels,
  hasFusedLeakyReluKernels,
} from './fused-batch-norm';

/**
 * Layer functions of the backbones, written so that the CPU backends of tfjs (`cpu`, `wasm`, `cpu-blas`) run
 * them fast and every derivative is exact:
 *
 * - {@link conv2d}: a stride-1 convolution with its own gradients. tfjs' `Conv2DBackpropFilter` kernel on
 *   `cpu` is 20–70× slower than the forward convolution (measured: 4.7 s against 52 ms for a 20×14×14×32 → 32
 *   layer), the wasm backend lacks it, and its gradient cannot be differentiated again. Here the filter
 *   gradient is a matrix product of shifted windows, a convolution or the backend's own kernel, the input
 *   gradient a transposed convolution or a convolution with the flipped filter — chosen per backend by what
 *   is fast there — each wrapped so that its own gradients are these ops again: derivatives of every order
 *   are exact.
 * - Batch normalization with independent statistics per group of examples (one few-shot task each): on
 *   `cpu` from matrix products and same-shape element-wise ops (broadcasting element-wise ops are slow
 *   there); on backends with fast broadcasting ops and reductions (`cpu-blas`, `wasm`, `tensorflow`, WebGL)
 *   as y = x·a + b with per-channel a, b, the group statistics from one op with a two-op gradient.
 * - LeakyReLU as one op with the gradient dy·step(x, α), written with differentiable ops (tfjs' leakyRelu
 *   gradient cannot be differentiated again); 2×2 max-pooling; global average pooling.
 */

type Conv = (x: tf.Tensor4D, w: tf.Tensor4D) => tf.Tensor4D;
type Pad4 = [[number, number], [number, number], [number, number], [number, number]];

function explicitPadding(ph: number, pw: number): 'valid' | Pad4 {
  return ph === 0 && pw === 0
    ? 'valid'
    : [
        [0, 0],
        [ph, ph],
        [pw, pw],
        [0, 0],
      ];
}

/**
 * How convolution gradients, batch norm and LeakyReLU are best formed on the current backend:
 *
 * - `js` (the pure-JS `cpu` backend): data movement (transpose, reverse, slice) is as slow as arithmetic and
 *   tfjs' filter-gradient kernel is very slow — transposed convolutions and im2col / swapped-axes products;
 *   broadcasting element-wise ops are slow — batch norm from matrix products and same-shape ops;
 * - `xnnpack` (`wasm`): fast forward convolutions and copies, slow or missing backprop kernels — everything
 *   as forward convolutions (flipped filter; swapped batch and channel axes);
 * - `native` (`cpu-blas`, `tensorflow`, WebGL, WebGPU): tfjs' own backprop kernels are fast — use them.
 *
 * On `xnnpack` and `native` batch norm uses broadcasting element-wise ops and reductions, and LeakyReLU
 * native element-wise ops (see {@link batchNorm}, {@link leakyRelu}).
 */
export type ConvolutionGradientStrategy = 'js' | 'xnnpack' | 'native';

let forcedStrategy: ConvolutionGradientStrategy | null = null;

/**
 * Forces how convolution gradients, batch norm and LeakyReLU are formed ('auto': by backend, the default).
 * All strategies give the same values and derivatives of every order (up to float rounding); this is for
 * tests and for backends this file does not know.
 */
export function setConvolutionGradientStrategy(strategy: ConvolutionGradientStrategy | 'auto'): void {
  forcedStrategy = strategy === 'auto' ? null : strategy;
}

let fusedBatchNormEnabled = true;

/**
 * Turns the fused batch-norm and LeakyReLU kernels off (false) or back on (true, the default). When on and the
 * current backend provides them (`cpu-blas` of @bilevel/tfjs-blas: `BilevelChannelMoments`,
 * `BilevelChannelSums`, `BilevelChannelAffine`, `BilevelLeakyRelu`, `BilevelLeakyReluGrad`), {@link batchNorm}
 * under the `native` strategy is one op with a two-pass forward and a three-pass gradient, and
 * {@link leakyRelu} one pass each way; otherwise the composite forms. Both give the same values and
 * derivatives of every order up to float rounding; this is for tests and comparisons.
 */
export function setFusedBatchNorm(enabled: boolean): void {
  fusedBatchNormEnabled = enabled;
}

function useFusedBatchNorm(): boolean {
  return fusedBatchNormEnabled && gradientStrategy() === 'native' && hasFusedBatchNormKernels();
}

function gradientStrategy(): ConvolutionGradientStrategy {
  if (forcedStrategy) return forcedStrategy;
  const backend = tf.getBackend();
  if (backend === 'cpu') return 'js';
  if (backend === 'wasm') return 'xnnpack';
  return 'native';
}

/**
 * ∂⟨conv(x, W), dy⟩/∂W[a,b,i,o] = Σ_{n,h,w} xpad[n, h+a, w+b, i] · dy[n,h,w,o] for a stride-1 convolution with
 * zero padding (ph, pw) and a kh×kw filter. Two equivalent evaluations:
 *
 * - im2col: the kh·kw shifted windows of x side by side, P [n·h·w, kh·kw·cᵢₙ], then Pᵀ·dy — on `cpu`, when
 *   the filter is large compared with the activations (deep layers, small images); always for 1×1 filters,
 *   where P is x itself;
 * - as a convolution: channels of x as the batch, the examples as the contracted axis and dy as a (h × w)
 *   filter, then one transposition of the [cᵢₙ, kh, kw, cₒᵤₜ] result;
 * - on backends with a fast native kernel, that kernel ({@link filterGradientKernelOp}).
 *
 * Both are built from differentiable ops (and the convolution ops of this file), so they can be
 * differentiated again.
 */
function filterGradient(x: tf.Tensor4D, dy: tf.Tensor4D, kh: number, kw: number, ph: number, pw: number): tf.Tensor4D {
  const [n, h, w, cin] = x.shape;
  const [, ho, wo, cout] = dy.shape;
  const dyFlat = tf.reshape(dy, [n * ho * wo, cout]) as tf.Tensor2D;
  if (kh === 1 && kw === 1 && ph === 0 && pw === 0) {
    const g = tf.matMul(tf.reshape(x, [n * h * w, cin]) as tf.Tensor2D, dyFlat, true, false);
    return tf.reshape(g, [1, 1, cin, cout]) as tf.Tensor4D;
  }
  const strategy = gradientStrategy();
  if (strategy === 'native') return filterGradientKernelOp(ph, pw, [kh, kw, cin, cout])(x, dy);
  const im2colCost = kh * kw * x.size;
  const convCost = x.size + dy.size + kh * kw * cin * cout;
  if (strategy === 'js' && im2colCost <= convCost) {
    const padding = explicitPadding(ph, pw);
    const xp = padding === 'valid' ? x : tf.pad(x, padding);
    const windows: tf.Tensor4D[] = [];
    for (let a = 0; a < kh; a++) for (let b = 0; b < kw; b++) windows.push(tf.slice(xp, [0, a, b, 0], [n, ho, wo, cin]));
    const patches = tf.reshape(windows.length === 1 ? windows[0] : tf.concat(windows, 3), [n * ho * wo, kh * kw * cin]);
    return tf.reshape(tf.matMul(patches as tf.Tensor2D, dyFlat, true, false), [kh, kw, cin, cout]) as tf.Tensor4D;
  }
  const xT = tf.transpose(x, [3, 1, 2, 0]) as tf.Tensor4D;
  const dyT = tf.transpose(dy, [1, 2, 0, 3]) as tf.Tensor4D;
  return tf.transpose(convOp(ph, pw)(xT, dyT), [1, 2, 0, 3]) as tf.Tensor4D;
}

/**
 * ∂⟨conv(x, W), dy⟩/∂x for padding (ph, pw): tfjs' transposed convolution (no copy of W), except on wasm, where
 * a forward convolution of dy with the spatially flipped filter, input and output channels swapped, and
 * padding (kh − 1 − ph, kw − 1 − pw) is faster.
 */
function inputGradient(dy: tf.Tensor4D, w: tf.Tensor4D, xShape: readonly number[], ph: number, pw: number): tf.Tensor4D {
  const [kh, kw] = w.shape;
  if (gradientStrategy() !== 'xnnpack' || ph > kh - 1 || pw > kw - 1) return convTransposeOp(ph, pw, xShape)(dy, w);
  const flipped = tf.transpose(tf.reverse(w, [0, 1]), [0, 1, 3, 2]) as tf.Tensor4D;
  return convOp(kh - 1 - ph, kw - 1 - pw)(dy, flipped);
}

const convOps = new Map<string, Conv>();
const convTransposeOps = new Map<string, Conv>();
const filterGradientOps = new Map<string, Conv>();

/**
 * The backend's own Conv2DBackpropFilter kernel, (x, dy) ↦ ∂⟨conv(x, W), dy⟩/∂W, as an op whose gradients
 * are again ops of this file: by ⟨F(x, dy), G⟩ = ⟨conv(x, G), dy⟩, ∂dy = conv(x, G) and ∂x = convᵀ(dy, G).
 */
function filterGradientKernelOp(ph: number, pw: number, filterShape: readonly number[]): Conv {
  const key = `${ph},${pw}|${filterShape.join(',')}`;
  const known = filterGradientOps.get(key);
  if (known) return known;
  const shape = filterShape.slice() as [number, number, number, number];
  const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [x, dy, save] = args as [tf.Tensor4D, tf.Tensor4D, tf.GradSaveFunc];
    save([x, dy]);
    const attrs = { strides: [1, 1], pad: explicitPadding(ph, pw), dataFormat: 'NHWC', filterShape: shape };
    return {
      value: tf.engine().runKernel('Conv2DBackpropFilter', { x, dy }, attrs as unknown as tf.NamedAttrMap) as tf.Tensor4D,
      gradFunc: (g: tf.Tensor, saved: tf.Tensor[]) => {
        const [xs, dys] = saved as [tf.Tensor4D, tf.Tensor4D];
        const G = g as tf.Tensor4D;
        return [convTransposeOp(ph, pw, xs.shape)(dys, G), convOp(ph, pw)(xs, G)];
      },
    };
  }) as unknown as Conv;
  filterGradientOps.set(key, op);
  return op;
}

/** Name of the stride-1 convolution kernel with this file's gradient (the backend's Conv2D under another name). */
const CONV_KERNEL = 'BilevelConv2DStride1';

/**
 * Registers, once, the gradient of {@link CONV_KERNEL}, and for the current backend the kernel itself (its
 * Conv2D kernel under the new name). A registered gradient hands tfjs one function per input, and tfjs calls
 * only those of inputs that lead to what is differentiated: the input gradient of a layer whose input is
 * data (the images of a backbone's first layer and shortcut) is never computed. (An op from `tf.customGrad`
 * must return every input's gradient.)
 */
function convKernelName(): string {
  if (!tf.getGradient(CONV_KERNEL)) {
    tf.registerGradient({
      kernelName: CONV_KERNEL,
      inputsToSave: ['x', 'filter'],
      gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[], attrs: tf.NamedAttrMap) => {
        const [xs, ws] = saved as [tf.Tensor4D, tf.Tensor4D];
        const { ph, pw } = attrs as unknown as { ph: number; pw: number };
        const g = dy as tf.Tensor4D;
        return {
          x: () => inputGradient(g, ws, xs.shape, ph, pw),
          filter: () => filterGradient(xs, g, ws.shape[0], ws.shape[1], ph, pw),
        };
      },
    });
  }
  const backend = tf.getBackend();
  if (!tf.getKernel(CONV_KERNEL, backend)) {
    const base = tf.getKernel('Conv2D', backend);
    if (!base) throw new Error(`conv2d: the backend '${backend}' has no Conv2D kernel`);
    tf.registerKernel({ ...base, kernelName: CONV_KERNEL, backendName: backend });
  }
  return CONV_KERNEL;
}

/**
 * The stride-1 convolution op with zero padding (ph, pw), memoized per padding, with the gradients of
 * {@link inputGradient} and {@link filterGradient} (each computed only when needed): ops of this file again,
 * so derivatives of every order are exact.
 */
function convOp(ph: number, pw: number): Conv {
  const key = `${ph},${pw}`;
  const known = convOps.get(key);
  if (known) return known;
  const attrs = { strides: [1, 1], pad: explicitPadding(ph, pw), dataFormat: 'NHWC', dilations: [1, 1], ph, pw };
  const op: Conv = (x, w) =>
    tf.engine().runKernel(convKernelName(), { x, filter: w }, attrs as unknown as tf.NamedAttrMap) as tf.Tensor4D;
  convOps.set(key, op);
  return op;
}

/**
 * The transposed convolution dy ↦ ∂⟨conv(x, W), dy⟩/∂x (output shape `xShape`), as an op whose own
 * gradients are ∂dy = conv(g, W) and ∂W = filterGradient(g, dy), by ⟨convᵀ(dy, W), g⟩ = ⟨dy, conv(g, W)⟩.
 */
function convTransposeOp(ph: number, pw: number, xShape: readonly number[]): Conv {
  const key = `${ph},${pw}|${xShape.join(',')}`;
  const known = convTransposeOps.get(key);
  if (known) return known;
  const shape = xShape.slice() as [number, number, number, number];
  const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [dy, w, save] = args as [tf.Tensor4D, tf.Tensor4D, tf.GradSaveFunc];
    save([dy, w]);
    return {
      // Explicit padding: with a numeric one tfjs computes the output width from the filter's height.
      value: tf.conv2dTranspose(dy, w, shape, 1, explicitPadding(ph, pw)),
      gradFunc: (g: tf.Tensor, saved: tf.Tensor[]) => {
        const [dys, ws] = saved as [tf.Tensor4D, tf.Tensor4D];
        return [
          convOp(ph, pw)(g as tf.Tensor4D, ws),
          filterGradient(g as tf.Tensor4D, dys, ws.shape[0], ws.shape[1], ph, pw),
        ];
      },
    };
  }) as unknown as Conv;
  convTransposeOps.set(key, op);
  return op;
}

/**
 * 2-D convolution with stride 1 and 'same' zero padding (odd kernel sizes): x [n, h, w, cᵢₙ], filter
 * [k, k, cᵢₙ, cₒᵤₜ] → [n, h, w, cₒᵤₜ]. Differentiable to any order with respect to both arguments.
 */
export function conv2d(x: tf.Tensor4D, filter: tf.Tensor4D): tf.Tensor4D {
  const [kh, kw, cin] = filter.shape;
  if (kh !== kw || kh % 2 !== 1) throw new Error(`conv2d: the kernel must be square with an odd size (got ${kh}×${kw})`);
  if (x.shape[3] !== cin) {
    throw new Error(`conv2d: input has ${x.shape[3]} channels, the filter expects ${cin}`);
  }
  return convOp((kh - 1) / 2, (kw - 1) / 2)(x, filter);
}

/** Convolution with zero padding p ≤ min(kh, kw) − 1 on both axes (stride 1), for tests of the gradient formulas. */
export function conv2dPadded(x: tf.Tensor4D, filter: tf.Tensor4D, pad: number): tf.Tensor4D {
  const kmin = Math.min(filter.shape[0], filter.shape[1]);
  if (!(Number.isInteger(pad) && pad >= 0 && pad < kmin)) {
    throw new Error(`conv2dPadded: padding must be an integer in [0, ${kmin - 1}] (got ${pad})`);
  }
  return convOp(pad, pad)(x, filter);
}

const leakyReluOps = new Map<string, (x: tf.Tensor) => tf.Tensor>();

/**
 * LeakyReLU(x) = max(x, αx) for 0 ≤ α ≤ 1 (Maas et al., 2013) as one op with the gradient dy·step(x, α)
 * (1 for x > 0, α for x ≤ 0: the derivative of αx + (1 − α)·relu(x) with relu'(0) = 0). Step has a zero
 * gradient, so the gradient is a product of differentiable ops and derivatives of every order are exact.
 *
 * The value is x·step(x, α) where element-wise ops are native (`cpu-blas`, `wasm`, …: two full-size ops
 * forward and two backward), tfjs' LeakyRelu kernel on `cpu` (one JS loop) — against four ops forward and
 * five backward for αx + (1 − α)·relu(x). Either way the value is the float32 product x·α for x < 0 and
 * exactly x for x > 0. Where the backend has LeakyReLU kernels of its own (`cpu-blas`), the `native` strategy
 * computes the same values with one pass forward and one backward (the gradient again such an op; turned
 * off with the fused batch norm, see {@link setFusedBatchNorm}).
 */
export function leakyRelu<T extends tf.Tensor>(x: T, alpha: number): T {
  if (fusedBatchNormEnabled && gradientStrategy() === 'native' && x.dtype === 'float32' && hasFusedLeakyReluKernels()) {
    return fusedLeakyRelu(x, Math.fround(alpha)) as T;
  }
  const byKernel = gradientStrategy() === 'js';
  const key = `${byKernel ? 'kernel' : 'step'}|${alpha}`;
  let op = leakyReluOps.get(key);
  if (!op) {
    // α rounded to float32 first: the JS kernel's double product is then the float32 product x·α.
    const a = Math.fround(alpha);
    op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
      const [input, save] = args as [tf.Tensor, tf.GradSaveFunc];
      save([input]);
      return {
        value: byKernel ? tf.leakyRelu(input, a) : tf.mul(input, tf.step(input, a)),
        gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => tf.mul(dy, tf.step(saved[0], a)),
      };
    }) as unknown as (x: tf.Tensor) => tf.Tensor;
    leakyReluOps.set(key, op);
  }
  return op(x) as T;
}

/** 2×2 max-pooling with stride 2 ('valid': odd sizes are floored, as in the Conv-4 and ResNet-12 papers). */
export function maxPool2x2(x: tf.Tensor4D): tf.Tensor4D {
  return tf.maxPool(x, 2, 2, 'valid');
}

/**
 * Mean over the spatial axes: [n, h, w, c] → [n, c], as a batched matrix product (also on `cpu-blas`, where
 * it is faster forward and backward than tf.mean, whose gradient materializes a tensor of ones).
 */
export function globalAveragePool(x: tf.Tensor4D): tf.Tensor2D {
  const [n, h, w, c] = x.shape;
  const flat = tf.reshape(x, [n, h * w, c]) as tf.Tensor3D;
  const weights = tf.fill([n, 1, h * w], 1 / (h * w)) as tf.Tensor3D;
  return tf.reshape(tf.matMul(weights, flat), [n, c]) as tf.Tensor2D;
}

/** v [g, 1, c] repeated along the middle axis to [g, m, c] (an outer product; fast on `cpu`). */
function repeatRows(v: tf.Tensor3D, m: number): tf.Tensor3D {
  const g = v.shape[0];
  return tf.matMul(tf.ones([g, m, 1]) as tf.Tensor3D, v);
}

/** Column means of each group: X [g, m, c] → [g, 1, c]. */
function groupMeans(x: tf.Tensor3D): tf.Tensor3D {
  const [g, m] = x.shape;
  return tf.matMul(tf.fill([g, 1, m], 1 / m) as tf.Tensor3D, x);
}

let momentsOp: ((x: tf.Tensor3D) => tf.Tensor3D) | null = null;

/**
 * Mean μ and biased variance σ² of each column of each group, X [g, m, c] → [g, 1, c] each, from one op: the
 * variance mean((x − μ)²) is computed from the centered values, and the gradient
 *
 *     ∂⟨(μ, σ²), (dμ, dσ²)⟩/∂x = dμ/m + (2/m)·dσ²·(x − μ) = x·p + q,   p = 2·dσ²/m,  q = dμ/m − p·μ
 *
 * is two full-size ops, with μ recomputed from the saved x by differentiable ops, so that derivatives of
 * every order are exact (tfjs' own gradients of two means and a square take about ten full-size ops). The
 * op's value stacks μ and σ² along a new leading axis, [2, g, c], so that taking them apart is a contiguous
 * slice (strided slices are slow on the JS-based backends).
 */
function groupMoments(x: tf.Tensor3D): { mean: tf.Tensor3D; variance: tf.Tensor3D } {
  momentsOp ??= tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [input, save] = args as [tf.Tensor3D, tf.GradSaveFunc];
    save([input]);
    const [g, , c] = input.shape;
    const mean = tf.mean(input, 1, true);
    const variance = tf.mean(tf.squaredDifference(input, mean), 1, true);
    return {
      value: tf.reshape(tf.concat([mean, variance], 0), [2, g, c]),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const xs = saved[0] as tf.Tensor3D;
        const [gs, m, cs] = xs.shape;
        const [dMean, dVariance] = tf.split(dy, 2, 0).map((d) => tf.reshape(d, [gs, 1, cs]));
        const p = tf.mul(dVariance, 2 / m);
        const q = tf.sub(tf.div(dMean, m), tf.mul(p, tf.mean(xs, 1, true)));
        return tf.add(tf.mul(xs, p), q);
      },
    };
  }) as unknown as (x: tf.Tensor3D) => tf.Tensor3D;
  const [g, , c] = x.shape;
  const [mean, variance] = tf.split(momentsOp(x), 2, 0).map((t) => tf.reshape(t, [g, 1, c]) as tf.Tensor3D);
  return { mean, variance };
}

/** Arguments of {@link batchNorm}. */
export interface BatchNormArgs {
  /** Scale γ per channel. */
  readonly gamma: tf.Tensor1D;
  /** Shift β per channel. */
  readonly beta: tf.Tensor1D;
  /** ε in (x − μ)/√(σ² + ε). */
  readonly epsilon: number;
  /** Batch statistics (training) or the running statistics below (evaluation). */
  readonly training: boolean;
  /** Running mean per channel (used in evaluation mode). */
  readonly runningMean?: tf.Tensor1D;
  /** Running variance per channel (used in evaluation mode). */
  readonly runningVariance?: tf.Tensor1D;
  /** Independent equal-size groups along the batch axis, each with its own statistics (training mode). */
  readonly groups?: number;
  /**
   * Whether the result holds the batch mean and variance (training mode; default true). With the fused
   * kernels they take one more pass over x, which callers that do not read them skip by passing false.
   */
  readonly statistics?: boolean;
}

/** What {@link batchNorm} returns. */
export interface BatchNormResult {
  /** The normalized, scaled and shifted activations. */
  readonly y: tf.Tensor4D;
  /** Batch mean [c], averaged over the groups (training mode only, unless `statistics` is false). */
  readonly mean?: tf.Tensor1D;
  /** Biased batch variance per channel (training mode only, unless `statistics` is false). */
  readonly variance?: tf.Tensor1D;
  /** Values per channel that each statistic was computed from (n·h·w / groups). */
  readonly count?: number;
}

/**
 * Batch normalization (Ioffe & Szegedy, 2015) over the batch and spatial axes of x [n, h, w, c]:
 *
 *     training:   y = γ·(x − μ_B)/√(σ²_B + ε) + β,   μ_B, σ²_B the mean and biased variance of the group
 *     evaluation: y = γ·(x − μ_run)/√(σ²_run + ε) + β
 *
 * In training mode the n examples are split into `groups` consecutive groups of equal size, each normalized
 * with its own statistics, so that a meta-batch of few-shot tasks computed in one pass behaves exactly as
 * the tasks computed one at a time.
 *
 * With the `native` and `xnnpack` strategies (fast broadcasting ops: `cpu-blas`, `wasm`, …) both modes are
 * y = x·a + b with per-channel a = γ/√(σ² + ε), b = β − μ·a, and in training mode μ and σ² come from x inside
 * the graph (one op, see groupMoments above), so autodiff gives exactly the batch-norm gradient and its
 * derivatives: three full-size element-wise ops and two reductions forward, five and three backward
 * (training mode). When the backend provides the fused batch-norm kernels (`cpu-blas`), the `native` strategy runs
 * the whole training-mode batch norm as one op: a moments pass and an affine pass forward, a sums pass, a
 * moments pass and a two-input affine pass backward, its gradient again made of such ops (see
 * {@link setFusedBatchNorm}). With `js` (`cpu`), the same formulas with matrix products and same-shape ops: outer
 * products with ones in place of broadcasting, group means as products with a row of 1/m.
 */
export function batchNorm(x: tf.Tensor4D, args: BatchNormArgs): BatchNormResult {
  const [n, h, w, c] = x.shape;
  if (args.gamma.shape[0] !== c || args.beta.shape[0] !== c) {
    throw new Error(`batchNorm: input has ${c} channels, γ/β have ${args.gamma.shape[0]}/${args.beta.shape[0]}`);
  }
  if (!args.training) {
    const { runningMean, runningVariance } = args;
    if (!runningMean || !runningVariance) {
      throw new Error('batchNorm: evaluation mode needs the running mean and variance (buffers)');
    }
    const scale = tf.mul(args.gamma, tf.rsqrt(tf.add(runningVariance, args.epsilon)));
    const shift = tf.sub(args.beta, tf.mul(runningMean, scale));
    if (useFusedBatchNorm()) {
      const flat = tf.reshape(x, [1, n * h * w, c]) as tf.Tensor3D;
      const coefficient = (t: tf.Tensor) => tf.reshape(t, [1, 1, c]) as tf.Tensor3D;
      return { y: tf.reshape(channelAffine(flat, coefficient(scale), coefficient(shift)), [n, h, w, c]) as tf.Tensor4D };
    }
    if (gradientStrategy() !== 'js') return { y: tf.add(tf.mul(x, scale), shift) as tf.Tensor4D };
    const m = n * h * w;
    const flat = tf.reshape(x, [1, m, c]) as tf.Tensor3D;
    const y = tf.add(
      tf.mul(flat, repeatRows(tf.reshape(scale, [1, 1, c]) as tf.Tensor3D, m)),
      repeatRows(tf.reshape(shift, [1, 1, c]) as tf.Tensor3D, m),
    );
    return { y: tf.reshape(y, [n, h, w, c]) as tf.Tensor4D };
  }
  const groups = args.groups ?? 1;
  if (!Number.isInteger(groups) || groups < 1 || n % groups !== 0) {
    throw new Error(`batchNorm: batch of ${n} cannot be split into ${groups} equal groups`);
  }
  const m = (n / groups) * h * w;
  const flat = tf.reshape(x, [groups, m, c]) as tf.Tensor3D;
  if (useFusedBatchNorm()) {
    const y = fusedBatchNorm(
      flat,
      tf.reshape(args.gamma, [1, 1, c]) as tf.Tensor3D,
      tf.reshape(args.beta, [1, 1, c]) as tf.Tensor3D,
      args.epsilon,
    );
    const out: BatchNormResult = { y: tf.reshape(y, [n, h, w, c]) as tf.Tensor4D, count: m };
    if (args.statistics === false) return out;
    const [mu, sigma2] = channelMoments(flat);
    return {
      ...out,
      mean: tf.reshape(tf.mean(mu, 0), [c]) as tf.Tensor1D,
      variance: tf.reshape(tf.mean(sigma2, 0), [c]) as tf.Tensor1D,
    };
  }
  if (gradientStrategy() !== 'js') {
    const { mean: mu, variance: sigma2 } = groupMoments(flat);
    const a = tf.mul(tf.reshape(args.gamma, [1, 1, c]), tf.rsqrt(tf.add(sigma2, args.epsilon)));
    const b = tf.sub(tf.reshape(args.beta, [1, 1, c]), tf.mul(mu, a));
    return {
      y: tf.reshape(tf.add(tf.mul(flat, a), b), [n, h, w, c]) as tf.Tensor4D,
      mean: tf.reshape(tf.mean(mu, 0), [c]) as tf.Tensor1D,
      variance: tf.reshape(tf.mean(sigma2, 0), [c]) as tf.Tensor1D,
      count: m,
    };
  }
  const mean = groupMeans(flat);
  const centered = tf.sub(flat, repeatRows(mean, m));
  const variance = groupMeans(tf.square(centered) as tf.Tensor3D);
  const scale = tf.mul(tf.reshape(args.gamma, [1, 1, c]), tf.rsqrt(tf.add(variance, args.epsilon))) as tf.Tensor3D;
  const beta = tf.tile(tf.reshape(args.beta, [1, 1, c]), [groups, 1, 1]) as tf.Tensor3D;
  const y = tf.add(tf.mul(centered, repeatRows(scale, m)), repeatRows(beta, m));
  return {
    y: tf.reshape(y, [n, h, w, c]) as tf.Tensor4D,
    mean: tf.reshape(tf.mean(mean, 0), [c]) as tf.Tensor1D,
    variance: tf.reshape(tf.mean(variance, 0), [c]) as tf.Tensor1D,
    count: m,
  };
}
