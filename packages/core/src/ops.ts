import * as tf from '@tensorflow/tfjs-core';

/**
 * Ops whose derivatives of every order tfjs can take. Several built-ins (exp, sigmoid, softmax,
 * logSoftmax, max, the softmax cross-entropy loss) throw or are wrong under nested gradients. Here the
 * transcendental pieces are custom-gradient ops that save their *input* and express their derivative with
 * the same op again, so double (and deeper) backprop stays exact. Use these in any loss that second-order
 * estimators (CG, Neumann, quasi-Newton, ITD with autodiff) will differentiate twice.
 *
 * Each op is also built to be cheap in tfjs, where every kernel costs engine bookkeeping and every op
 * recorded on a gradient tape saves its inputs (Identity kernels) and runs a generic backward: the softmax
 * cross-entropy is one fused op, and a derivative is computed from saved tensors with plain kernels unless
 * it is itself being differentiated.
 */

/**
 * A unary op with a custom derivative: `forward(a)` gives the value, `derivative(dy, a)` the vector-Jacobian
 * product from the saved *input* a. When `derivative` is itself written with such ops, derivatives of any
 * order stay exact.
 */
export function unaryCustomOp(
  forward: (a: tf.Tensor) => tf.Tensor,
  derivative: (dy: tf.Tensor, a: tf.Tensor) => tf.Tensor,
): (x: tf.Tensor) => tf.Tensor {
  const f = tf.customGrad(((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const a = args[0] as tf.Tensor;
    const save = args[1] as tf.GradSaveFunc;
    save([a]);
    return {
      value: forward(a),
      gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[]) => derivative(dy as tf.Tensor, saved[0]),
    };
  }) as Parameters<typeof tf.customGrad>[0]);
  return (x: tf.Tensor) => f(x);
}

/** Identity in value, zero derivative (of every order). */
const stopGradientOp = unaryCustomOp(
  (a) => tf.clone(a),
  (dy) => tf.zerosLike(dy),
);
/** `t` in value, with a zero derivative of every order: blocks gradients through `t`. */
export function stopGradient<T extends tf.Tensor>(t: T): T {
  return stopGradientOp(t) as T;
}

const expOp: (x: tf.Tensor) => tf.Tensor = unaryCustomOp(
  (a) => tf.exp(a),
  (dy, a) => tf.mul(dy, expOp(a)),
);

/** eˣ, differentiable to any order in tfjs. */
export function exp<T extends tf.Tensor>(x: T): T {
  return expOp(x) as T;
}

/** The derivative of a {@link customOp}: input gradients from the upstream gradient and the saved tensors. */
type CustomGradFunc = (dy: tf.Tensor, saved: tf.Tensor[]) => tf.Tensor | tf.Tensor[];

/**
 * One custom-gradient op of `inputs`: `body(save)` computes the value (with the tape off: its kernels are not
 * recorded, so nothing of them is saved) and gives the derivative. `body` reads the inputs from its closure.
 */
function customOp(
  inputs: tf.Tensor[],
  body: (save: tf.GradSaveFunc) => { value: tf.Tensor; gradFunc: CustomGradFunc },
): tf.Tensor {
  const f = tf.customGrad(((...args: (tf.Tensor | tf.GradSaveFunc)[]) =>
    body(args[args.length - 1] as tf.GradSaveFunc)) as Parameters<typeof tf.customGrad>[0]);
  return f(...inputs);
}

/**
 * Whether a gradient computation is under way, so that a custom op's saved tensors can be used. Checked in
 * an op's forward pass, where tfjs' own rule (inside `gradients`, outside any kernel) cannot be read: this one
 * also holds inside another op's forward pass, where the tape is off and saving does nothing.
 */
function gradientUnderWay(): boolean {
  return tf.engine().state.gradientDepth > 0;
}

/**
 * Whether ops run now are recorded on a gradient tape (tfjs' rule). In a custom op's derivative this is true
 * only when that derivative is itself being differentiated (nested gradients): only then must it be written
 * with differentiable ops; otherwise plain kernels on saved tensors suffice.
 */
function recording(): boolean {
  const s = tf.engine().state;
  return s.gradientDepth > 0 && s.kernelDepth === 0;
}

/** Vector-Jacobian product of softmax along `axis` at probabilities p: J·v = p ⊙ (v − ⟨p, v⟩) (J is symmetric). */
function softmaxVjp(p: tf.Tensor, v: tf.Tensor, axis: number): tf.Tensor {
  const pv = tf.mul(p, v);
  return tf.sub(pv, tf.mul(p, tf.sum(pv, axis, true)));
}

/**
 * softmax(z) along `axis` as an op of z whose value p = softmax(z) has already been computed (one Identity
 * kernel instead of five). Its derivative is {@link softmaxVjp} at the same op, so every order is exact. Only
 * for tensors saved by an enclosing op: z and p are read from the closure and must live as long as the tape
 * that records this op, which saved tensors do (they are released when the outermost gradient ends).
 */
function softmaxOfSaved(z: tf.Tensor, p: tf.Tensor, axis: number): tf.Tensor {
  return customOp([z], () => ({
    value: tf.clone(p),
    gradFunc: (dy) => softmaxVjp(savedSoftmax(z, p, axis), dy, axis),
  }));
}

/**
 * softmax(z) for use in a derivative: the saved p itself when the derivative is not being recorded, the
 * differentiable {@link softmaxOfSaved} when it is.
 */
function savedSoftmax(z: tf.Tensor, p: tf.Tensor, axis: number): tf.Tensor {
  return recording() ? softmaxOfSaved(z, p, axis) : p;
}

function positiveAxis(axis: number, rank: number): number {
  const a = axis < 0 ? rank + axis : axis;
  if (!(a >= 0 && a < rank)) throw new Error(`axis ${axis} is out of range for a tensor of rank ${rank}`);
  return a;
}

/**
 * log Σ exp(x) along `axis` (kept as a size-1 axis when `keepDims`), with a max shift for stability. One
 * custom op with derivative dy ⊙ softmax(x), exact to any order.
 */
export function logSumExp(x: tf.Tensor, axis = -1, keepDims = false): tf.Tensor {
  const ax = positiveAxis(axis, x.rank);
  const kept = x.shape.map((d, i) => (i === ax ? 1 : d));
  return customOp([x], (save) => {
    const m = tf.max(x, ax, true);
    const lse = tf.add(tf.log(tf.sum(tf.exp(tf.sub(x, m)), ax, true)), m);
    const value = keepDims
      ? lse
      : tf.reshape(
          lse,
          x.shape.filter((_, i) => i !== ax),
        );
    save([x, value]);
    return {
      value,
      gradFunc: (dy, [xs, out]) => {
        const dyk = keepDims ? dy : tf.reshape(dy, kept);
        if (recording()) return tf.mul(softmaxAlong(xs, ax), dyk);
        return tf.mul(tf.exp(tf.sub(xs, keepDims ? out : tf.reshape(out, kept))), dyk);
      },
    };
  });
}

/** log softmax(x) along the last axis. */
export function logSoftmax(x: tf.Tensor): tf.Tensor {
  return tf.tidy(() => tf.sub(x, logSumExp(x, -1, true)));
}

/** softmax along `axis` as one custom op whose derivative is written with the same op (exact to any order). */
function softmaxAlong(x: tf.Tensor, axis: number): tf.Tensor {
  return customOp([x], (save) => {
    const e = tf.exp(tf.sub(x, tf.max(x, axis, true)));
    const p = tf.div(e, tf.sum(e, axis, true));
    save([x, p]);
    return { value: p, gradFunc: (dy, [xs, ps]) => softmaxVjp(savedSoftmax(xs, ps, axis), dy, axis) };
  });
}

/**
 * softmax(x) along the last axis, as one custom op whose derivative J·v = s ⊙ (v − ⟨s, v⟩) is written with
 * the same softmax, so derivatives of every order are exact.
 */
export function softmax(x: tf.Tensor): tf.Tensor {
  return softmaxAlong(x, x.rank - 1);
}

/** Options of {@link softmaxCrossEntropy}. */
export interface SoftmaxCrossEntropyOptions {
  /** Per-row weights wᵢ, shaped as the logits without their last axis (e.g. [n] for [n, k] logits). */
  weights?: tf.Tensor;
  /** `mean` (default): Σ wᵢ·ceᵢ / (number of rows); `sum`: Σ wᵢ·ceᵢ; `none`: the rows wᵢ·ceᵢ. */
  reduction?: 'mean' | 'sum' | 'none';
  /** A constant factor on the result (default 1), folded into the op: it costs no kernel in derivatives. */
  scale?: number;
}

const SOFTMAX_CE = 'BilevelSoftmaxCrossEntropy';
const WEIGHTED_SOFTMAX_CE = 'BilevelWeightedSoftmaxCrossEntropy';

/**
 * The forward pass of the cross-entropy kernels: [value], and, while a gradient is being computed, the softmax
 * [..., k] and (weighted kernel) the row losses [rows] as extra outputs, which the gradient saves.
 */
function softmaxCrossEntropyKernel(params: {
  inputs: tf.NamedTensorMap | Record<string, tf.TensorInfo | undefined>;
  attrs?: Record<string, unknown>;
}): tf.TensorInfo[] {
  const { logits, labels, weights } = params.inputs as Record<string, tf.Tensor | undefined> as {
    logits: tf.Tensor;
    labels: tf.Tensor;
    weights?: tf.Tensor;
  };
  const reduction = params.attrs?.reduction as 'mean' | 'sum' | 'none';
  const scale = params.attrs?.scale as number;
  const rows = logits.shape.slice(0, -1);
  return tf.tidy(() => {
    const m = tf.max(logits, -1, true);
    const e = tf.exp(tf.sub(logits, m));
    const s = tf.sum(e, -1, true);
    // ceᵢ = log Σ_c exp(z_ic − mᵢ) + mᵢ − Σ_c t_ic z_ic, kept as [...rows, 1] until needed as [rows].
    let ce = tf.sub(tf.add(tf.log(s), m), tf.sum(tf.mul(labels, logits), -1, true));
    if (weights || reduction === 'none') ce = tf.reshape(ce, rows);
    let value = weights ? tf.mul(ce, weights) : ce;
    if (reduction !== 'none') value = reduction === 'sum' ? tf.sum(value) : tf.mean(value);
    if (scale !== 1) value = tf.mul(value, scale);
    if (!gradientUnderWay()) return [value];
    const p = tf.div(e, s);
    return weights ? [value, p, ce] : [value, p];
  });
}

/** Sums `g` (shaped as the logits) over the axes along which `shape` was broadcast, giving `shape`. */
function unbroadcast(g: tf.Tensor, shape: number[]): tf.Tensor {
  const axes = tf.backend_util.getReductionAxes(shape, g.shape);
  return axes.length > 0 ? tf.reshape(tf.sum(g, axes), shape) : g;
}

/**
 * The derivatives of the cross-entropy kernels, each computed only for the inputs that need it. From the
 * saved logits z, labels t, (weights w), softmax p (and row losses ce), with dy the upstream gradient of the
 * value and c its factor per weighted row loss (scale, over the number of rows for a mean):
 *
 *     ∂/∂z = (p − t) ⊙ (c·dy·w)      ∂/∂w = ce ⊙ (c·dy)      ∂/∂t = −z ⊙ (c·dy·w)
 *
 * When these are themselves differentiated, p and ce are ops of the saved logits with exact derivatives.
 */
function softmaxCrossEntropyGradient(
  dys: tf.Tensor | tf.Tensor[],
  saved: tf.Tensor[],
  attrs: Record<string, unknown>,
): Record<string, () => tf.Tensor> {
  const dy = Array.isArray(dys) ? dys[0] : dys;
  const weighted = saved.length === 5;
  const [z, t] = saved;
  const w = weighted ? saved[2] : undefined;
  const p = weighted ? saved[3] : saved[2];
  const ce = weighted ? saved[4] : undefined;
  const rows = z.shape.slice(0, -1);
  const kept = [...rows, 1];
  const scale = attrs.scale as number;
  const c = attrs.reduction === 'mean' ? scale / tf.util.sizeFromShape(rows) : scale;
  const scaledDy = () => (c === 1 ? dy : tf.mul(dy, c));
  const rowFactor = () => {
    const r = w ? tf.mul(scaledDy(), w) : scaledDy();
    return r.rank > 0 ? tf.reshape(r, kept) : r;
  };
  const grads: Record<string, () => tf.Tensor> = {
    logits: () => tf.mul(tf.sub(savedSoftmax(z, p, -1), t), rowFactor()),
    labels: () => unbroadcast(tf.neg(tf.mul(z, rowFactor())), t.shape),
  };
  if (weighted) grads.weights = () => tf.mul(savedRowLosses(z, p, ce as tf.Tensor, t, kept), scaledDy());
  return grads;
}

/** Registers the cross-entropy kernels' gradients, and the kernels for the current backend, once. */
function crossEntropyKernel(weighted: boolean): string {
  const name = weighted ? WEIGHTED_SOFTMAX_CE : SOFTMAX_CE;
  if (!tf.getGradient(name)) {
    tf.registerGradient({
      kernelName: name,
      inputsToSave: weighted ? ['logits', 'labels', 'weights'] : ['logits', 'labels'],
      outputsToSave: weighted ? [false, true, true] : [false, true],
      gradFunc: softmaxCrossEntropyGradient as tf.GradConfig['gradFunc'],
    });
  }
  const backend = tf.getBackend();
  if (!tf.getKernel(name, backend)) {
    tf.registerKernel({
      kernelName: name,
      backendName: backend,
      kernelFunc: softmaxCrossEntropyKernel as unknown as tf.KernelFunc,
    });
  }
  return name;
}

/**
 * Softmax cross-entropy ceᵢ = log Σ_c exp(z_ic) − Σ_c t_ic z_ic between `logits` z [..., k] and one-hot (or
 * soft) `labels` t (shaped as the logits, or broadcast against them: [n, k] labels for [B, n, k] logits), for
 * each row i (every position of the leading axes), optionally weighted by per-row `weights` wᵢ and reduced
 * (see {@link SoftmaxCrossEntropyOptions}). For labels whose rows sum to 1 this is −Σ_c t_ic log softmax(zᵢ)_c.
 *
 * One fused op (a kernel with a registered gradient, both written with tfjs ops, so it runs on any
 * backend). Its value takes a few kernels (max shift, exp, sum, log, the dot with the labels, the weights,
 * the reduction); while a gradient is computed it also keeps the softmax p (and the row losses). Its
 * derivatives ∂/∂zᵢ = (pᵢ − tᵢ)·wᵢ·c, ∂/∂wᵢ = ceᵢ·c and ∂/∂tᵢ = −zᵢ·wᵢ·c (c = scale, over the number of rows
 * for a mean) are computed only for the inputs that need them, with plain kernels on the saved tensors, or,
 * when they are themselves differentiated (Hessian-vector and mixed products by double backprop), with
 * differentiable ops whose softmax is again a custom op with an exact derivative: derivatives of every order
 * are exact.
 */
export function softmaxCrossEntropy(
  logits: tf.Tensor,
  labels: tf.Tensor,
  options: SoftmaxCrossEntropyOptions = {},
): tf.Tensor {
  const { weights, reduction = 'mean', scale = 1 } = options;
  if (logits.rank < 1) throw new Error('softmaxCrossEntropy: logits must have a class axis');
  const rows = logits.shape.slice(0, -1);
  if (weights && !tf.util.arraysEqual(weights.shape, rows)) {
    throw new Error(
      `softmaxCrossEntropy: weights of shape [${weights.shape.join(', ')}] for rows of shape [${rows.join(', ')}]`,
    );
  }
  const inputs: tf.NamedTensorMap = weights ? { logits, labels, weights } : { logits, labels };
  const out = tf.engine().runKernel(crossEntropyKernel(weights !== undefined), inputs, { reduction, scale });
  if (!Array.isArray(out)) return out;
  // The softmax and row losses live on as the gradient's saved copies; the outputs themselves can go.
  for (let i = 1; i < out.length; i++) out[i].dispose();
  return out[0];
}

/**
 * The row losses ceᵢ for use in a derivative: the saved values when that derivative is not recorded, else an
 * op of the saved logits z with those values and the exact derivative ∂ceᵢ/∂zᵢ = softmax(zᵢ) − tᵢ (same
 * closure rule as {@link softmaxOfSaved}).
 */
function savedRowLosses(
  z: tf.Tensor,
  p: tf.Tensor,
  ce: tf.Tensor,
  labels: tf.Tensor,
  kept: number[],
): tf.Tensor {
  if (!recording()) return ce;
  return customOp([z], () => ({
    value: tf.clone(ce),
    gradFunc: (dy) => tf.mul(tf.sub(savedSoftmax(z, p, -1), labels), tf.reshape(dy, kept)),
  }));
}

/**
 * (scale/2)·‖x‖², the sum of squares of every entry (an L2 penalty), as one custom op with derivative
 * scale·x (exact to any order): three kernels for the value and two for the derivative, where the
 * composite (λ/2)·Σ x² records four ops and their saved inputs on the tape. With `axis`, the sums run over
 * those axes only (e.g. [1, 2] for one penalty per member of a stack of [B, d, k] weights).
 */
export function halfSquaredNorm(x: tf.Tensor, scale?: number): tf.Scalar;
export function halfSquaredNorm(x: tf.Tensor, scale: number, axis: number | number[]): tf.Tensor;
export function halfSquaredNorm(x: tf.Tensor, scale = 1, axis?: number | number[]): tf.Tensor {
  const axes =
    axis === undefined
      ? undefined
      : (Array.isArray(axis) ? axis : [axis]).map((a) => positiveAxis(a, x.rank));
  const kept = axes ? x.shape.map((d, i) => (axes.includes(i) ? 1 : d)) : undefined;
  return customOp([x], (save) => {
    save([x]);
    return {
      value: tf.mul(tf.sum(tf.square(x), axes), scale / 2),
      gradFunc: (dy, [xs]) => {
        const g = scale === 1 ? dy : tf.mul(dy, scale);
        return tf.mul(xs, kept ? tf.reshape(g, kept) : g);
      },
    };
  });
}

const sigmoidOp: (x: tf.Tensor) => tf.Tensor = unaryCustomOp(
  (a) => tf.sigmoid(a),
  (dy, a) => {
    const s = sigmoidOp(a);
    return tf.mul(dy, tf.mul(s, tf.sub(1, s)));
  },
);

/** σ(x) = 1 / (1 + e⁻ˣ), differentiable to any order in tfjs. */
export function sigmoid<T extends tf.Tensor>(x: T): T {
  return sigmoidOp(x) as T;
}

// log σ(a) = min(a, 0) − log(1 + e^{−|a|}), stable for large |a|; derivative σ(−a).
const logSigmoidOp: (x: tf.Tensor) => tf.Tensor = unaryCustomOp(
  (a) => tf.sub(tf.minimum(a, 0), tf.log1p(tf.exp(tf.neg(tf.abs(a))))),
  (dy, a) => tf.mul(dy, sigmoidOp(tf.neg(a))),
);

/** log σ(x) = −softplus(−x), stable for large |x| and differentiable to any order. */
export function logSigmoid<T extends tf.Tensor>(x: T): T {
  return logSigmoidOp(x) as T;
}

/** Binary cross-entropy with logits: mean of −[t log σ(z) + (1 − t) log σ(−z)]. */
export function sigmoidCrossEntropy(logits: tf.Tensor, targets: tf.Tensor): tf.Scalar {
  return tf.tidy(
    () =>
      tf.neg(
        tf.mean(
          tf.add(tf.mul(targets, logSigmoid(logits)), tf.mul(tf.sub(1, targets), logSigmoid(tf.neg(logits)))),
        ),
      ) as tf.Scalar,
  );
}
