import * as tf from '@tensorflow/tfjs-core';

/** n for a square A [n, n]; throws naming `fn` otherwise. */
function squareSize(a: tf.Tensor2D, fn: string): number {
  const n = a.shape[0];
  if (a.shape[1] !== n) throw new Error(`${fn}: A must be square (got [${a.shape.join(', ')}])`);
  return n;
}

/**
 * P(y) = A y for y [n] or [B, n] (as rows; A symmetric: yᵦᵀA = (A yᵦ)ᵀ), as an op whose derivative is again a
 * product with A (g ↦ A g), so derivatives of every order stay exact and cost one product each.
 */
function symmetricProductOp(a: tf.Tensor2D): (y: tf.Tensor) => tf.Tensor {
  const n = a.shape[0];
  const product = (y: tf.Tensor): tf.Tensor =>
    y.rank === 1 ? tf.reshape(tf.matMul(tf.reshape(y, [1, n]), a), [n]) : tf.matMul(y as tf.Tensor2D, a);
  return tf.customGrad(((y: tf.Tensor, save: tf.GradSaveFunc) => {
    save([]);
    return { value: product(y), gradFunc: (g: tf.Tensor) => product(g) };
  }) as unknown as Parameters<typeof tf.customGrad>[0]);
}
/**
 * The quadratic form q(y) = ½ yᵀAy of a fixed symmetric matrix A [n, n], for y [n] (a scalar) or a stack of
 * rows y [B, n] (one value per row), as one op whose derivatives of every order are exact and cheap:
 *
 *     ∇q(y) = A y,      ∇²q(y)·v = A v.
 *
 * Written with plain ops, ½ Σ y ⊙ (A y) has a gradient of two products (A y from the forward pass is not
 * reused, and Aᵀ(½ dy ⊙ y) is formed again), and a Hessian-vector product by double backprop of three or four.
 * Here the forward pass forms A y once; the gradient is dy ⊙ (A y) through an op whose value is that saved
 * product and whose own derivative is again a product with A, so a gradient costs no product beyond the
 * forward one and a Hessian-vector product one more. A is a constant (no derivative with respect to it).
 * The symmetry of A is the caller's promise; it is not checked.
 */
export function quadraticForm(a: tf.Tensor2D): (y: tf.Tensor) => tf.Tensor {
  const n = squareSize(a, 'quadraticForm');
  const productOp = symmetricProductOp(a);
  // ½⟨y, A y⟩ given A y: the derivative dy ⊙ (A y) reuses the forward product. A y enters as a saved
  // tensor, not as an input, so a first derivative never runs P's backward product; a second derivative
  // reaches P through the saved tensor (the engine records it on the tape), so it stays exact.
  const half = (y: tf.Tensor, ay: tf.Tensor): tf.Tensor =>
    tf.customGrad(((yIn: tf.Tensor, save: tf.GradSaveFunc) => {
      save([ay]);
      return {
        value: tf.mul(0.5, tf.sum(tf.mul(yIn, ay), -1)),
        gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) =>
          tf.mul(yIn.rank === 1 ? dy : tf.reshape(dy, [-1, 1]), saved[0]),
      };
    }) as unknown as Parameters<typeof tf.customGrad>[0])(y);
  const op = (y: tf.Tensor): tf.Tensor => tf.tidy(() => half(y, productOp(y)));
  return (y: tf.Tensor) => {
    if (y.shape[y.rank - 1] !== n || y.rank > 2) {
      throw new Error(`quadraticForm: y must be [${n}] or [B, ${n}] (got [${y.shape.join(', ')}])`);
    }
    return op(y);
  };
}

/**
 * The quadratic objective h(y, x) = ½ yᵀAy − xᵀy of a fixed symmetric matrix A [n, n], for vectors y and x of
 * size n (a scalar), as one op with exact derivatives of every order:
 *
 *     ∇_y h = A y − x,   ∇_x h = −y,   ∇²_yy h·v = A v,   ∇²_xy h·v = −v.
 *
 * The same product trick as {@link quadraticForm} (A y formed once in the forward pass, its derivative again a
 * product with A), with the linear term inside the op: its gradient is two element-wise ops instead of the
 * backward passes of a separate product, sum and difference — a gradient of the qNBO toy's inner objective
 * goes from 26 tfjs kernels to 16, a Hessian-vector product from 53 to 38 (the engine's per-kernel cost dominates
 * at n = 1,000). The symmetry of A is the caller's promise; it is not checked.
 */
export function quadraticMinusLinear(a: tf.Tensor2D): (y: tf.Tensor, x: tf.Tensor) => tf.Scalar {
  const n = squareSize(a, 'quadraticMinusLinear');
  const productOp = symmetricProductOp(a);
  // ½⟨y, A y⟩ − ⟨x, y⟩ given A y (a saved tensor: see quadraticForm's `half`); the derivatives are written
  // with differentiable ops, so the engine records them for a second derivative.
  const objective = (y: tf.Tensor, x: tf.Tensor, ay: tf.Tensor): tf.Scalar =>
    tf.customGrad(((yIn: tf.Tensor, xIn: tf.Tensor, save: tf.GradSaveFunc) => {
      save([ay]);
      return {
        value: tf.sub(tf.mul(0.5, tf.sum(tf.mul(yIn, ay))), tf.sum(tf.mul(xIn, yIn))),
        gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => [
          tf.mul(dy, tf.sub(saved[0], xIn)),
          tf.mul(dy, tf.neg(yIn)),
        ],
      };
    }) as unknown as Parameters<typeof tf.customGrad>[0])(y, x) as tf.Scalar;
  return (y: tf.Tensor, x: tf.Tensor) => {
    if (y.rank !== 1 || y.shape[0] !== n || x.rank !== 1 || x.shape[0] !== n) {
      throw new Error(
        `quadraticMinusLinear: y and x must be [${n}] (got y [${y.shape.join(', ')}], x [${x.shape.join(', ')}])`,
      );
    }
    return tf.tidy(() => objective(y, x, productOp(y)));
  };
}
