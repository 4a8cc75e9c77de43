import * as tf from '@tensorflow/tfjs-core';
import type { TreeSpec } from '@bilevel/core';
import type { QuasiNewtonMemoryOptions } from './options';
import { PairStore, readSmall, subMatrix } from './pair-memory';

/**
 * The L-BFGS two-loop recursion (Nocedal, "Updating quasi-Newton matrices with limited storage", 1980;
 * Nocedal & Wright, Numerical Optimization, Alg. 7.4) run on coefficients: for pairs i = k−1…0,
 * αᵢ = ρᵢ sᵢᵀq, q ← q − αᵢrᵢ; then z = γq; for i = 0…k−1, βᵢ = ρᵢ rᵢᵀz, z ← z + (αᵢ − βᵢ)sᵢ; with
 * ρᵢ = 1 / sᵢᵀrᵢ. Writing q = v + UᵀQp and z = γv + UᵀZp, with U = [s₀; r₀; s₁; r₁; …] and p = Uv, the
 * recursion becomes one on 2k × 2k matrices driven by the Gram matrix G = UUᵀ, and H = γI + UᵀZU.
 * Returns Z (row-major).
 */
export function lbfgsMiddleMatrix(gram: Float64Array, k: number, gamma: number): Float64Array {
  const K = 2 * k;
  const Q = new Float64Array(K * K);
  const A = new Float64Array(k * K); // rows: αᵢ as linear functions of p
  const row = new Float64Array(K);
  for (let i = k - 1; i >= 0; i--) {
    const si = 2 * i;
    const ri = 2 * i + 1;
    const rho = 1 / gram[si * K + ri];
    // sᵢᵀq = p[sᵢ] + (G Q)[sᵢ, :]
    row.fill(0);
    row[si] = 1;
    for (let a = 0; a < K; a++) {
      const gsa = gram[si * K + a];
      if (gsa === 0) continue;
      for (let c = 0; c < K; c++) row[c] += gsa * Q[a * K + c];
    }
    for (let c = 0; c < K; c++) {
      const alpha = rho * row[c];
      A[i * K + c] = alpha;
      Q[ri * K + c] -= alpha;
    }
  }
  const Z = Q.map((q) => q * gamma);
  for (let i = 0; i < k; i++) {
    const si = 2 * i;
    const ri = 2 * i + 1;
    const rho = 1 / gram[si * K + ri];
    // rᵢᵀz = γ p[rᵢ] + (G Z)[rᵢ, :]
    row.fill(0);
    row[ri] = gamma;
    for (let a = 0; a < K; a++) {
      const gra = gram[ri * K + a];
      if (gra === 0) continue;
      for (let c = 0; c < K; c++) row[c] += gra * Z[a * K + c];
    }
    for (let c = 0; c < K; c++) Z[si * K + c] += A[i * K + c] - rho * row[c];
  }
  return Z;
}

/**
 * Limited-memory BFGS inverse-Hessian operator: H·v by the two-loop recursion over the last m pairs with
 * sᵀr > ε, from H₀ = γI (γ = sᵀr / rᵀr of the newest pair, Nocedal & Wright eq. 7.20, or a fixed c). H is
 * symmetric positive definite since every kept pair has sᵀr > 0.
 *
 * The recursion is kept in few large ops: the pairs are stacked into U = [s₀; r₀; s₁; r₁; …] (2k × n) and
 * the recursion is run once per accepted pair on coefficients (see {@link lbfgsMiddleMatrix}), so that
 * H·v = γv + Uᵀ(C(Uv)) costs three matrix products whatever k is; pushing a pair costs one matrix product
 * and one read (its inner products with the stored vectors, which update the float64 Gram matrix).
 */
export class LbfgsMemory extends PairStore {
  /** Which update the memory applies: `'lbfgs'`. */
  readonly kind = 'lbfgs';
  /** G over the interleaved vectors [s₀, r₀, s₁, r₁, …], row-major (2k)². */
  private gram: Float64Array = new Float64Array(0);
  private stacked: tf.Tensor2D | null = null;
  private middle: tf.Tensor2D | null = null;

  constructor(spec: TreeSpec, options: QuasiNewtonMemoryOptions) {
    super(spec, options, 'lbfgs');
  }

  protected offer(s: tf.Tensor1D, r: tf.Tensor1D): boolean {
    const k = this.size;
    const K = 2 * k;
    // Inner products of s and r with every stored vector and with each other: one product, one read.
    const prod = readSmall(() => {
      const sr = tf.stack([s, r]) as tf.Tensor2D;
      const parts: tf.Tensor2D[] = [];
      if (this.stacked) parts.push(tf.matMul(this.stacked, sr, false, true));
      parts.push(tf.matMul(sr, sr, false, true));
      return parts.length === 1 ? parts[0] : tf.concat(parts, 0);
    });
    if (!prod.every((x) => Number.isFinite(x))) return false;
    const sTr = prod[K * 2 + 1];
    const rTr = prod[(K + 1) * 2 + 1];
    if (!(sTr > this.options.curvatureEpsilon)) return false;
    const N = K + 2;
    const g = new Float64Array(N * N);
    for (let a = 0; a < K; a++) for (let b = 0; b < K; b++) g[a * N + b] = this.gram[a * K + b];
    for (let a = 0; a < N; a++) {
      g[a * N + K] = g[K * N + a] = prod[a * 2];
      g[a * N + K + 1] = g[(K + 1) * N + a] = prod[a * 2 + 1];
    }
    const dropped = k === this.options.memory ? 1 : 0;
    const idx: number[] = [];
    for (let i = 2 * dropped; i < N; i++) idx.push(i);
    this.gram = dropped ? subMatrix(g, N, idx) : g;
    const count = k + 1 - dropped;
    this.gammaValue = this.options.initialScaling === 'auto' ? sTr / rTr : this.options.initialScaling;
    const sCopy = tf.keep(tf.clone(s)) as tf.Tensor1D;
    const rCopy = tf.keep(tf.clone(r)) as tf.Tensor1D;
    this.setPairs([...this.sList.slice(dropped), sCopy], [...this.rList.slice(dropped), rCopy]);
    const interleaved: tf.Tensor1D[] = [];
    this.sList.forEach((sv, i) => interleaved.push(sv, this.rList[i]));
    this.clearOperator();
    this.stacked = tf.keep(tf.stack(interleaved) as tf.Tensor2D);
    const C = lbfgsMiddleMatrix(this.gram, count, this.gammaValue);
    this.middle = tf.keep(tf.tensor2d(Float32Array.from(C), [2 * count, 2 * count]));
    return true;
  }

  applyFlat(v: tf.Tensor1D): tf.Tensor1D {
    this.checkVector(v, 'v');
    return tf.tidy(() => {
      const scaled = tf.mul(v, this.gammaValue) as tf.Tensor1D;
      if (!this.stacked || !this.middle) return scaled;
      const n = this.spec.total;
      const p = tf.matMul(this.stacked, tf.reshape(v, [n, 1]) as tf.Tensor2D);
      const w = tf.matMul(this.stacked, tf.matMul(this.middle, p), true, false);
      return tf.add(scaled, tf.reshape(w, [n])) as tf.Tensor1D;
    });
  }

  protected clearOperator(): void {
    if (this.size === 0) this.gram = new Float64Array(0) as Float64Array;
    this.stacked?.dispose();
    this.middle?.dispose();
    this.stacked = null;
    this.middle = null;
  }
}
