import * as tf from '@tensorflow/tfjs-core';
import { quadraticForm, quadraticMinusLinear } from './quadratic-form';
import { Random } from './random';

/** A random symmetric matrix (float64 copy and tensor). */
function symmetric(n: number, rng: Random): { a64: Float64Array; a: tf.Tensor2D } {
  const a64 = new Float64Array(n * n);
  for (let i = 0; i < n; i++)
    for (let j = 0; j <= i; j++) {
      const v = rng.normal();
      a64[i * n + j] = v;
      a64[j * n + i] = v;
    }
  return { a64, a: tf.tensor2d(Float32Array.from(a64), [n, n]) };
}

function matVec64(a: Float64Array, n: number, y: ArrayLike<number>): Float64Array {
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let j = 0; j < n; j++) s += a[i * n + j] * y[j];
    out[i] = s;
  }
  return out;
}

function maxRelErr(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < want.length; i++) {
    num = Math.max(num, Math.abs(got[i] - want[i]));
    den = Math.max(den, Math.abs(want[i]));
  }
  return num / Math.max(den, 1e-30);
}

describe('quadraticForm', () => {
  const n = 7;
  const rng = new Random(3);
  const { a64, a } = symmetric(n, rng);
  const q = quadraticForm(a);
  const y64 = Float64Array.from({ length: n }, () => rng.normal());
  const v64 = Float64Array.from({ length: n }, () => rng.normal());
  const y = tf.tensor1d(Float32Array.from(y64));
  const v = tf.tensor1d(Float32Array.from(v64));
  const ay64 = matVec64(a64, n, y64);
  const av64 = matVec64(a64, n, v64);

  it('value ½ yᵀAy, gradient A y and Hessian-vector product A v (float64 references)', () => {
    const value = q(y).dataSync()[0];
    const want = 0.5 * y64.reduce((s, yi, i) => s + yi * ay64[i], 0);
    expect(Math.abs(value - want) / Math.abs(want)).toBeLessThan(1e-5);
    const g = tf.tidy(() =>
      tf
        .grad((t: tf.Tensor) => q(t) as tf.Scalar)(y)
        .dataSync(),
    );
    expect(maxRelErr(g, ay64)).toBeLessThan(1e-5);
    const hv = tf.tidy(() =>
      tf
        .grad(
          (t: tf.Tensor) => tf.sum(tf.mul(tf.grad((s: tf.Tensor) => q(s) as tf.Scalar)(t), v)) as tf.Scalar,
        )(y)
        .dataSync(),
    );
    expect(maxRelErr(hv, av64)).toBeLessThan(1e-5);
  });

  it('the Hessian-vector product is the same at any y (a quadratic has a constant Hessian)', () => {
    const hvpAt = (point: tf.Tensor) =>
      tf.tidy(() =>
        tf
          .grad(
            (t: tf.Tensor) => tf.sum(tf.mul(tf.grad((s: tf.Tensor) => q(s) as tf.Scalar)(t), v)) as tf.Scalar,
          )(point)
          .dataSync(),
      );
    const other = tf.mul(y, -7);
    expect(maxRelErr(hvpAt(other), av64)).toBeLessThan(1e-5);
    other.dispose();
  });

  it('a stack of rows [B, n] gives one value and gradient per row', () => {
    const rows = tf.stack([y, v]) as tf.Tensor2D;
    const values = q(rows).dataSync();
    const w = tf.tensor1d([2, -3]);
    const g = tf.tidy(() =>
      tf
        .grad((t: tf.Tensor) => tf.sum(tf.mul(q(t), w)) as tf.Scalar)(rows)
        .dataSync(),
    );
    const wantV = [
      0.5 * y64.reduce((s, yi, i) => s + yi * ay64[i], 0),
      0.5 * v64.reduce((s, vi, i) => s + vi * av64[i], 0),
    ];
    expect(maxRelErr(values, wantV)).toBeLessThan(1e-5);
    const wantG = [...Array.from(ay64, (t) => 2 * t), ...Array.from(av64, (t) => -3 * t)];
    expect(maxRelErr(g, wantG)).toBeLessThan(1e-5);
    tf.dispose([rows, w]);
  });

  it('forms one product per gradient and two per Hessian-vector product', async () => {
    const count = async (f: () => void) =>
      (await tf.profile(() => tf.tidy(f))).kernels.filter((k) => k.name === 'BatchMatMul').length;
    expect(await count(() => tf.grad((t: tf.Tensor) => q(t) as tf.Scalar)(y))).toBe(1);
    expect(
      await count(() =>
        tf.grad(
          (t: tf.Tensor) => tf.sum(tf.mul(tf.grad((s: tf.Tensor) => q(s) as tf.Scalar)(t), v)) as tf.Scalar,
        )(y),
      ),
    ).toBe(2);
  });

  it('leaves no tensor behind over many gradient and Hessian-vector evaluations', () => {
    const before = tf.memory().numTensors;
    for (let i = 0; i < 200; i++) {
      tf.tidy(() => {
        tf.grad(
          (t: tf.Tensor) => tf.sum(tf.mul(tf.grad((s: tf.Tensor) => q(s) as tf.Scalar)(t), v)) as tf.Scalar,
        )(y);
      });
    }
    expect(tf.memory().numTensors).toBe(before);
  });

  it('refuses a non-square A and a y of the wrong size', () => {
    expect(() => quadraticForm(tf.zeros([2, 3]) as tf.Tensor2D)).toThrow(/square/);
    expect(() => q(tf.zeros([n + 1]))).toThrow(/\[7\] or \[B, 7\]/);
  });
});

describe('quadraticMinusLinear', () => {
  const n = 9;
  const rng = new Random(11);
  const { a64, a } = symmetric(n, rng);
  const h = quadraticMinusLinear(a);
  const unfused = quadraticForm(a);
  const vec = () => Float64Array.from({ length: n }, () => rng.normal());
  const [y64, x64, v64] = [vec(), vec(), vec()];
  const [y, x, v] = [y64, x64, v64].map((t) => tf.tensor1d(Float32Array.from(t)));
  const ay64 = matVec64(a64, n, y64);
  const av64 = matVec64(a64, n, v64);
  /** ∇_y h as a function of (y, x), for second derivatives. */
  const gradY = (yy: tf.Tensor, xx: tf.Tensor) => tf.grad((s: tf.Tensor) => h(s, xx))(yy);

  it('value ½ yᵀAy − xᵀy and gradients A y − x, −y (float64 references)', () => {
    const want =
      0.5 * y64.reduce((s, yi, i) => s + yi * ay64[i], 0) - x64.reduce((s, xi, i) => s + xi * y64[i], 0);
    expect(Math.abs(h(y, x).dataSync()[0] - want) / Math.abs(want)).toBeLessThan(1e-5);
    const [gy, gx] = tf.tidy(() =>
      tf
        .grads((s: tf.Tensor, t: tf.Tensor) => h(s, t))([y, x])
        .map((g) => g.dataSync()),
    );
    expect(
      maxRelErr(
        gy,
        Array.from(ay64, (t, i) => t - x64[i]),
      ),
    ).toBeLessThan(1e-5);
    expect(
      maxRelErr(
        gx,
        Array.from(y64, (t) => -t),
      ),
    ).toBeLessThan(1e-6);
  });

  it('Hessian-vector product A v and mixed product −v by double backprop, at any y and x', () => {
    for (const scale of [1, -4]) {
      const ys = tf.mul(y, scale);
      const xs = tf.mul(x, 2 * scale);
      const hv = tf.tidy(() =>
        tf
          .grad((s: tf.Tensor) => tf.sum(tf.mul(gradY(s, xs), v)) as tf.Scalar)(ys)
          .dataSync(),
      );
      expect(maxRelErr(hv, av64)).toBeLessThan(1e-5);
      const mixed = tf.tidy(() =>
        tf
          .grad((t: tf.Tensor) => tf.sum(tf.mul(gradY(ys, t), v)) as tf.Scalar)(xs)
          .dataSync(),
      );
      expect(
        maxRelErr(
          mixed,
          Array.from(v64, (t) => -t),
        ),
      ).toBeLessThan(1e-6);
      tf.dispose([ys, xs]);
    }
  });

  it('agrees with the unfused ½ yᵀAy − sum(x ⊙ y) in value and first and second derivatives', () => {
    const plain = (s: tf.Tensor, t: tf.Tensor) => tf.sub(unfused(s), tf.sum(tf.mul(t, s))) as tf.Scalar;
    const all = (f: (s: tf.Tensor, t: tf.Tensor) => tf.Scalar) =>
      tf.tidy(() => {
        const gy = (s: tf.Tensor, t: tf.Tensor) => tf.grad((u: tf.Tensor) => f(u, t))(s);
        return [
          f(y, x).dataSync(),
          ...tf
            .grads((s: tf.Tensor, t: tf.Tensor) => f(s, t))([y, x])
            .map((g) => g.dataSync()),
          tf
            .grad((s: tf.Tensor) => tf.sum(tf.mul(gy(s, x), v)) as tf.Scalar)(y)
            .dataSync(),
          tf
            .grad((t: tf.Tensor) => tf.sum(tf.mul(gy(y, t), v)) as tf.Scalar)(x)
            .dataSync(),
        ];
      });
    const fused = all(h);
    const reference = all(plain);
    fused.forEach((got, i) => expect(maxRelErr(got, reference[i])).toBeLessThan(1e-5));
  });

  it('forms one product per gradient and two per Hessian-vector product, in fewer kernels than unfused', async () => {
    const kernels = async (f: () => void) => (await tf.profile(() => tf.tidy(f))).kernels;
    const products = (ks: { name: string }[]) => ks.filter((k) => k.name === 'BatchMatMul').length;
    const grad = await kernels(() => gradY(y, x));
    const hvp = await kernels(() =>
      tf.grad((s: tf.Tensor) => tf.sum(tf.mul(gradY(s, x), v)) as tf.Scalar)(y),
    );
    expect(products(grad)).toBe(1);
    expect(products(hvp)).toBe(2);
    const plainGrad = await kernels(() =>
      tf.grad((s: tf.Tensor) => tf.sub(unfused(s), tf.sum(tf.mul(x, s))) as tf.Scalar)(y),
    );
    expect(grad.length).toBeLessThan(plainGrad.length);
  });

  it('leaves no tensor behind over many gradient and second-order evaluations', () => {
    const before = tf.memory().numTensors;
    for (let i = 0; i < 200; i++) {
      tf.tidy(() => {
        tf.grad((s: tf.Tensor) => tf.sum(tf.mul(gradY(s, x), v)) as tf.Scalar)(y);
        tf.grad((t: tf.Tensor) => tf.sum(tf.mul(gradY(y, t), v)) as tf.Scalar)(x);
      });
    }
    expect(tf.memory().numTensors).toBe(before);
  });

  it('refuses a non-square A and y or x of the wrong shape', () => {
    expect(() => quadraticMinusLinear(tf.zeros([2, 3]) as tf.Tensor2D)).toThrow(/square/);
    expect(() => h(tf.zeros([n + 1]), x)).toThrow(/y and x must be \[9\] \(got y \[10\], x \[9\]\)/);
    expect(() => h(y, tf.zeros([2, n]))).toThrow(/x \[2, 9\]/);
  });
});
