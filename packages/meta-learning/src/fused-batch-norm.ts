import * as tf from '@tensorflow/tfjs-core';

/**
 * Batch normalization from three fused per-channel kernels that a backend may provide (`cpu-blas` does, see
 * @bilevel/tfjs-blas), on activations viewed as X [g, m, c] (g groups of m rows, each group with its own
 * statistics):
 *
 * - `BilevelChannelMoments` {x} → [2, g, 1, c]: mean and biased variance per group and channel;
 * - `BilevelChannelSums` {u, v} → [2, g, 1, c]: Σ u and Σ u·v per group and channel;
 * - `BilevelChannelAffine` {x, a, b[, z, s]} → x·a + z·s + b, the coefficients [g, 1, c].
 *
 * Each kernel is wrapped as an op whose gradient is written with these ops again (and broadcasting
 * multiplications), so derivatives of every order are exact. The batch-norm op itself runs one moments and
 * one affine pass forward, and its gradient one sums and one two-input affine pass (plus the moments pass
 * that recomputes μ and σ² from the saved input, so that the gradient stays differentiable in x).
 */

const MOMENTS = 'BilevelChannelMoments';
const SUMS = 'BilevelChannelSums';
const AFFINE = 'BilevelChannelAffine';

const LEAKY = 'BilevelLeakyRelu';
const LEAKY_GRAD = 'BilevelLeakyReluGrad';

/** Whether the current backend has the three batch-norm kernels. */
export function hasFusedBatchNormKernels(): boolean {
  const backend = tf.getBackend();
  return [MOMENTS, SUMS, AFFINE].every((name) => tf.getKernel(name, backend) !== undefined);
}

/** Whether the current backend has the LeakyReLU kernels (`BilevelLeakyRelu`, `BilevelLeakyReluGrad`). */
export function hasFusedLeakyReluKernels(): boolean {
  const backend = tf.getBackend();
  return [LEAKY, LEAKY_GRAD].every((name) => tf.getKernel(name, backend) !== undefined);
}

const leakyReluOps = new Map<number, (x: tf.Tensor) => tf.Tensor>();
const leakyReluGradOps = new Map<number, (dy: tf.Tensor, x: tf.Tensor) => tf.Tensor>();

/**
 * (dy, x) ↦ dy·step(x, α) in one pass; its gradient is the same op in dy and zero in x (step is piecewise
 * constant), so derivatives of every order are exact.
 */
function leakyReluGrad(dy: tf.Tensor, x: tf.Tensor, alpha: number): tf.Tensor {
  let op = leakyReluGradOps.get(alpha);
  if (!op) {
    op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
      const [d, xx, save] = args as [tf.Tensor, tf.Tensor, tf.GradSaveFunc];
      save([xx]);
      return {
        value: tf.engine().runKernel(LEAKY_GRAD, { dy: d, x: xx }, { alpha }) as tf.Tensor,
        gradFunc: (g: tf.Tensor, saved: tf.Tensor[]) => [
          leakyReluGrad(g, saved[0], alpha),
          tf.zerosLike(saved[0]),
        ],
      };
    }) as unknown as (dy: tf.Tensor, x: tf.Tensor) => tf.Tensor;
    leakyReluGradOps.set(alpha, op);
  }
  return op(dy, x);
}

/** LeakyReLU x ↦ x·step(x, α) in one pass, its gradient dy·step(x, α) in one pass (α already float32). */
export function fusedLeakyRelu(x: tf.Tensor, alpha: number): tf.Tensor {
  let op = leakyReluOps.get(alpha);
  if (!op) {
    op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
      const [xx, save] = args as [tf.Tensor, tf.GradSaveFunc];
      save([xx]);
      return {
        value: tf.engine().runKernel(LEAKY, { x: xx }, { alpha }) as tf.Tensor,
        gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => leakyReluGrad(dy, saved[0], alpha),
      };
    }) as unknown as (x: tf.Tensor) => tf.Tensor;
    leakyReluOps.set(alpha, op);
  }
  return op(x);
}

function run(name: string, inputs: Record<string, tf.Tensor>): tf.Tensor {
  return tf.engine().runKernel(name, inputs as unknown as tf.NamedTensorMap) as tf.Tensor;
}

/** [2, g, 1, c] → its two [g, 1, c] halves. */
function halves(t: tf.Tensor): [tf.Tensor3D, tf.Tensor3D] {
  const [, g, , c] = t.shape;
  const [p, q] = tf.split(t, 2, 0);
  return [tf.reshape(p, [g, 1, c]) as tf.Tensor3D, tf.reshape(q, [g, 1, c]) as tf.Tensor3D];
}

type Op2 = (u: tf.Tensor3D, v: tf.Tensor3D) => tf.Tensor;
type Op3 = (x: tf.Tensor3D, a: tf.Tensor3D, b: tf.Tensor3D) => tf.Tensor3D;
type Op5 = (x: tf.Tensor3D, a: tf.Tensor3D, z: tf.Tensor3D, s: tf.Tensor3D, b: tf.Tensor3D) => tf.Tensor3D;
type Op1 = (x: tf.Tensor3D) => tf.Tensor;

let sumsOp: Op2 | null = null;
let affineOp: Op3 | null = null;
let affine2Op: Op5 | null = null;
let momentsOp: Op1 | null = null;

/**
 * (u, v) ↦ [Σu, Σu·v] per group and channel. For a cotangent (G₀, G₁): ∂u = G₀ + G₁·v (an affine op of v),
 * ∂v = u·G₁.
 */
function channelSums(u: tf.Tensor3D, v: tf.Tensor3D): [tf.Tensor3D, tf.Tensor3D] {
  sumsOp ??= tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [uu, vv, save] = args as [tf.Tensor3D, tf.Tensor3D, tf.GradSaveFunc];
    save([uu, vv]);
    return {
      value: run(SUMS, { u: uu, v: vv }),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [us, vs] = saved as [tf.Tensor3D, tf.Tensor3D];
        const [g0, g1] = halves(dy);
        return [channelAffine(vs, g1, g0), tf.mul(us, g1)];
      },
    };
  }) as unknown as Op2;
  return halves(sumsOp(u, v));
}

/** x·a + b with a, b [g, 1, c]. ∂x = dy·a, ∂a = Σ dy·x, ∂b = Σ dy. */
export function channelAffine(x: tf.Tensor3D, a: tf.Tensor3D, b: tf.Tensor3D): tf.Tensor3D {
  affineOp ??= tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [xx, aa, bb, save] = args as [tf.Tensor3D, tf.Tensor3D, tf.Tensor3D, tf.GradSaveFunc];
    save([xx, aa]);
    return {
      value: run(AFFINE, { x: xx, a: aa, b: bb }) as tf.Tensor3D,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [xs, as] = saved as [tf.Tensor3D, tf.Tensor3D];
        const [sumDy, sumDyX] = channelSums(dy as tf.Tensor3D, xs);
        return [tf.mul(dy, as), sumDyX, sumDy];
      },
    };
  }) as unknown as Op3;
  return affineOp(x, a, b);
}

/** x·a + z·s + b with a, s, b [g, 1, c]. ∂x = dy·a, ∂z = dy·s, ∂a = Σ dy·x, ∂s = Σ dy·z, ∂b = Σ dy. */
function channelAffine2(
  x: tf.Tensor3D,
  a: tf.Tensor3D,
  z: tf.Tensor3D,
  s: tf.Tensor3D,
  b: tf.Tensor3D,
): tf.Tensor3D {
  affine2Op ??= tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [xx, aa, zz, ss, bb, save] = args as [
      tf.Tensor3D,
      tf.Tensor3D,
      tf.Tensor3D,
      tf.Tensor3D,
      tf.Tensor3D,
      tf.GradSaveFunc,
    ];
    save([xx, aa, zz, ss]);
    return {
      value: run(AFFINE, { x: xx, a: aa, z: zz, s: ss, b: bb }) as tf.Tensor3D,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [xs, as, zs, sc] = saved as tf.Tensor3D[];
        const [sumDy, sumDyX] = channelSums(dy as tf.Tensor3D, xs);
        const [, sumDyZ] = channelSums(dy as tf.Tensor3D, zs);
        return [tf.mul(dy, as), sumDyX, tf.mul(dy, sc), sumDyZ, sumDy];
      },
    };
  }) as unknown as Op5;
  return affine2Op(x, a, z, s, b);
}

/**
 * Mean μ and biased variance σ² per group and channel, [g, 1, c] each. For a cotangent (dμ, dσ²):
 * ∂x = x·p + q, p = 2·dσ²/m, q = dμ/m − p·μ, μ recomputed from the saved x by this op.
 */
export function channelMoments(x: tf.Tensor3D): [tf.Tensor3D, tf.Tensor3D] {
  momentsOp ??= tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [xx, save] = args as [tf.Tensor3D, tf.GradSaveFunc];
    save([xx]);
    return {
      value: run(MOMENTS, { x: xx }),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const xs = saved[0] as tf.Tensor3D;
        const m = xs.shape[1];
        const [dMean, dVariance] = halves(dy);
        const [mean] = channelMoments(xs);
        const p = tf.mul(dVariance, 2 / m) as tf.Tensor3D;
        const q = tf.sub(tf.div(dMean, m), tf.mul(p, mean)) as tf.Tensor3D;
        return channelAffine(xs, p, q);
      },
    };
  }) as unknown as Op1;
  return halves(momentsOp(x));
}

const batchNormOps = new Map<number, Op3>();

/**
 * Training-mode batch norm of X [g, m, c] with γ, β [1, 1, c]: y = γ·(x − μ)·r + β, r = 1/√(σ² + ε), μ and σ²
 * per group. Gradient, with S₁ = Σ dy and S₂ = Σ dy·x per group (one sums pass) and k = (S₂ − μ·S₁)/m:
 *
 *     ∂x = A·dy + B·x + C,   A = γ·r,  B = −A·r²·k,  C = −A·S₁/m − B·μ   (one two-input affine pass)
 *     ∂γ = Σ_groups r·m·k,   ∂β = Σ_groups S₁
 *
 * μ and σ² recomputed from the saved x with the moments op, so the gradient is differentiable in x, dy and γ.
 */
export function fusedBatchNorm(
  x: tf.Tensor3D,
  gamma: tf.Tensor3D,
  beta: tf.Tensor3D,
  epsilon: number,
): tf.Tensor3D {
  let op = batchNormOps.get(epsilon);
  if (!op) {
    op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
      const [xx, gg, bb, save] = args as [tf.Tensor3D, tf.Tensor3D, tf.Tensor3D, tf.GradSaveFunc];
      save([xx, gg]);
      const [mean, variance] = halves(run(MOMENTS, { x: xx }));
      const a = tf.mul(gg, tf.rsqrt(tf.add(variance, epsilon))) as tf.Tensor3D;
      const b = tf.sub(bb, tf.mul(mean, a)) as tf.Tensor3D;
      return {
        value: run(AFFINE, { x: xx, a, b }) as tf.Tensor3D,
        gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
          const [xs, gs] = saved as [tf.Tensor3D, tf.Tensor3D];
          const [g, m, c] = xs.shape;
          const [mu, sigma2] = channelMoments(xs);
          const r = tf.rsqrt(tf.add(sigma2, epsilon));
          const [s1, s2] = channelSums(dy as tf.Tensor3D, xs);
          const rmk = tf.mul(r, tf.sub(s2, tf.mul(mu, s1)));
          const bigA = tf.mul(gs, r) as tf.Tensor3D;
          const bigB = tf.neg(
            tf.mul(tf.mul(bigA, tf.square(r)), tf.div(tf.sub(s2, tf.mul(mu, s1)), m)),
          ) as tf.Tensor3D;
          const bigC = tf.sub(tf.neg(tf.mul(bigA, tf.div(s1, m))), tf.mul(bigB, mu)) as tf.Tensor3D;
          const dx = channelAffine2(dy as tf.Tensor3D, bigA, xs, bigB, bigC);
          const dGamma = g === 1 ? rmk : tf.sum(rmk, 0, true);
          const dBeta = g === 1 ? s1 : tf.sum(s1, 0, true);
          return [dx, tf.reshape(dGamma, [1, 1, c]), tf.reshape(dBeta, [1, 1, c])];
        },
      };
    }) as unknown as Op3;
    batchNormOps.set(epsilon, op);
  }
  return op(x, gamma, beta);
}
