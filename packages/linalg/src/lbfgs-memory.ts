import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { ConfigError } from './errors';
import type { CurvatureMemory, CurvaturePair } from './solver';
import { type TensorTree, type TreeSpec, treeFlatten, treeUnflatten } from './tree';

/**
 * Limited-memory inverse-Hessian operators H ≈ [∇²g]⁻¹ on flat vectors, built from curvature pairs
 * (s, r): s a step y₊ − y and r = ∇g(y₊) − ∇g(y) its gradient difference (or a Hessian-vector product
 * H·s, as in qNBO's subroutine B). They are shared by the quasi-Newton inner solvers and by the qNBO
 * hypergradient estimator (Fang et al., "qNBO: quasi-Newton Meets Bilevel Optimization", ICLR 2025).
 *
 * Representation. With k stored pairs stacked into U = [s₀; r₀; s₁; r₁; …] (2k × n), both the L-BFGS and
 * the SR1 operator have the form
 *
 *     H = γ I + Uᵀ C U                                  (C a small 2k × 2k matrix)
 *
 * so H·v costs three matrix products and an axpy, whatever k is. C is computed in float64 from the Gram
 * matrix G = U Uᵀ (updated with one matrix product and one read per pushed pair) by running the method's
 * own recursion on coefficient vectors: every vector the recursion forms lies in span(U ∪ {v}), and its
 * coordinates are linear in p = U v. This is exactly the two-loop recursion (L-BFGS) or the sequential
 * SR1 update (SR1), with the n-dimensional work moved into the single products U·v and Uᵀ·(C p).
 */
export interface QuasiNewtonMemoryOptions {
  /** Pairs kept (m ≥ 1); the oldest is dropped when a new one is accepted into a full memory. */
  memory: number;
  /** 'auto': H₀ = γI with γ = sᵀr / rᵀr of the newest pair; a number c: H₀ = c·I. */
  initialScaling: 'auto' | number;
  /** Keep a pair only when sᵀr > ε (qNBO's curvature test). */
  curvatureEpsilon: number;
  /** SR1 skip rule |sᵀ(r − Bs)| ≥ c‖s‖‖r − Bs‖ (c default 1e-8); ignored by L-BFGS. */
  sr1SkipThreshold?: number;
}

/** Options of the pair memories, as a schema (for plugins that expose them as their own options). */
export const QuasiNewtonMemoryOptionsSchema = z
  .object({
    memory: z.number().int().min(1).default(10).describe('curvature pairs kept (m ≥ 1)'),
    initialScaling: z
      .union([z.literal('auto'), z.number().positive().finite()])
      .default('auto')
      .describe("H₀ = γI: 'auto' takes γ = sᵀr / rᵀr of the newest pair, a number c gives H₀ = c·I"),
    curvatureEpsilon: z
      .number()
      .min(0)
      .finite()
      .default(1e-10)
      .describe('curvature test: a pair is kept only when sᵀr > ε'),
    sr1SkipThreshold: z
      .number()
      .min(0)
      .lt(1)
      .default(1e-8)
      .describe('SR1 skip rule: update only when |sᵀ(r − Bs)| ≥ c‖s‖‖r − Bs‖'),
  })
  .strict();

/**
 * The defaults of {@link QuasiNewtonMemoryOptions}: 10 pairs, `'auto'` scaling, ε = 1e-10, SR1 skip threshold
 * 1e-8.
 */
export const DEFAULT_QUASI_NEWTON_MEMORY_OPTIONS: Required<QuasiNewtonMemoryOptions> = {
  memory: 10,
  initialScaling: 'auto',
  curvatureEpsilon: 1e-10,
  sr1SkipThreshold: 1e-8,
};

function validateMemoryOptions(
  o: QuasiNewtonMemoryOptions,
  kind: string,
): Required<QuasiNewtonMemoryOptions> {
  const full = { ...DEFAULT_QUASI_NEWTON_MEMORY_OPTIONS, ...o };
  if (full.sr1SkipThreshold === undefined)
    full.sr1SkipThreshold = DEFAULT_QUASI_NEWTON_MEMORY_OPTIONS.sr1SkipThreshold;
  if (!Number.isInteger(full.memory) || full.memory < 1) {
    throw new ConfigError(`${kind} memory: memory must be an integer >= 1 (got ${full.memory})`, 'memory');
  }
  if (full.initialScaling !== 'auto' && !(Number.isFinite(full.initialScaling) && full.initialScaling > 0)) {
    throw new ConfigError(
      `${kind} memory: initialScaling must be 'auto' or a positive number (got ${String(full.initialScaling)})`,
      'initialScaling',
    );
  }
  if (!(Number.isFinite(full.curvatureEpsilon) && full.curvatureEpsilon >= 0)) {
    throw new ConfigError(
      `${kind} memory: curvatureEpsilon must be a finite number >= 0 (got ${full.curvatureEpsilon})`,
      'curvatureEpsilon',
    );
  }
  if (!(full.sr1SkipThreshold >= 0 && full.sr1SkipThreshold < 1)) {
    throw new ConfigError(
      `${kind} memory: sr1SkipThreshold must be in [0, 1) (got ${full.sr1SkipThreshold})`,
      'sr1SkipThreshold',
    );
  }
  return full;
}

/** Row-major K×K sub-matrix of `g` (size n×n) on the given indices. */
function subMatrix(g: Float64Array, n: number, idx: readonly number[]): Float64Array {
  const K = idx.length;
  const out = new Float64Array(K * K);
  for (let a = 0; a < K; a++) for (let b = 0; b < K; b++) out[a * K + b] = g[idx[a] * n + idx[b]];
  return out;
}

/** Reads a small tensor made by `fn` (inside tidy) as a float64 array, and releases it. */
function readSmall(fn: () => tf.Tensor): Float64Array {
  const t = tf.tidy(fn);
  const values = Float64Array.from(t.dataSync());
  t.dispose();
  return values;
}

/**
 * Storage shared by the pair memories: the kept pairs (copies, oldest first), shape checks, counters and
 * the tree form of the operator.
 */
abstract class PairStore implements CurvatureMemory {
  abstract readonly kind: string;
  protected readonly options: Required<QuasiNewtonMemoryOptions>;
  protected sList: tf.Tensor1D[] = [];
  protected rList: tf.Tensor1D[] = [];
  private pairCache: CurvaturePair[] = [];
  protected gammaValue: number;
  private acceptedCount = 0;
  private rejectedCount = 0;

  constructor(
    /** Names and shapes of the trees the operator acts on (vectors are their flattened form). */
    readonly spec: TreeSpec,
    options: QuasiNewtonMemoryOptions,
    kind: string,
  ) {
    this.options = validateMemoryOptions(options, kind);
    this.gammaValue = this.defaultGamma();
  }

  protected defaultGamma(): number {
    return this.options.initialScaling === 'auto' ? 1 : this.options.initialScaling;
  }

  /** Number of scalars of the vectors the operator acts on. */
  get dimension(): number {
    return this.spec.total;
  }

  /** The kept pairs, oldest first (owned by the memory; do not dispose). */
  get pairs(): readonly CurvaturePair[] {
    return this.pairCache;
  }

  /** Number of pairs held. */
  get size(): number {
    return this.sList.length;
  }

  /** The current H₀ scale γ (1 for 'auto' before any pair). */
  get gamma(): number {
    return this.gammaValue;
  }

  /** Pairs accepted and rejected by `push` so far. */
  get accepted(): number {
    return this.acceptedCount;
  }

  /** Pairs refused so far (curvature test, or the SR1 skip rule). */
  get rejected(): number {
    return this.rejectedCount;
  }

  protected checkVector(v: tf.Tensor, what: string): void {
    if (v.rank !== 1 || v.size !== this.spec.total) {
      throw new Error(
        `${this.kind} memory: ${what} must be a flat vector of ${this.spec.total} entries (got shape [${v.shape.join(', ')}])`,
      );
    }
  }

  /** Replaces the kept pairs: `kept` lists the new ones (tensors already owned by the memory). */
  protected setPairs(sList: tf.Tensor1D[], rList: tf.Tensor1D[]): void {
    const keep = new Set<tf.Tensor>([...sList, ...rList]);
    for (const t of [...this.sList, ...this.rList]) if (!keep.has(t)) t.dispose();
    this.sList = sList;
    this.rList = rList;
    this.pairCache = sList.map((s, i) => ({ s, r: rList[i] }));
  }

  /**
   * Offers the pair (s, r); copies are kept when it passes the curvature test sᵀr > ε and the method's own
   * rules. Returns whether it was accepted. Non-finite pairs are rejected.
   */
  push(s: tf.Tensor1D, r: tf.Tensor1D): boolean {
    this.checkVector(s, 's');
    this.checkVector(r, 'r');
    const ok = this.offer(s, r);
    if (ok) this.acceptedCount++;
    else this.rejectedCount++;
    return ok;
  }

  protected abstract offer(s: tf.Tensor1D, r: tf.Tensor1D): boolean;

  /** H·v for a flat vector v. */
  abstract applyFlat(v: tf.Tensor1D): tf.Tensor1D;

  /** H·v for a tree v shaped like the memory's tree spec. */
  applyInverseHessian(v: TensorTree): TensorTree {
    return tf.tidy(() => treeUnflatten(this.applyFlat(treeFlatten(v)), this.spec));
  }

  protected abstract clearOperator(): void;

  /** Forgets every pair (γ returns to its initial value). */
  clear(): void {
    this.setPairs([], []);
    this.clearOperator();
    this.gammaValue = this.defaultGamma();
  }

  /** Releases every pair's tensors. */
  dispose(): void {
    this.clear();
  }
}

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

/**
 * Factor of SR1's 'auto' scaling: γ = ½·sᵀr / rᵀr of the newest pair. With the full BFGS value the
 * newest pair's SR1 denominator rᵀ(s − γr) is exactly zero whenever it meets H₀ directly (always for the
 * first pair), so SR1 takes the more conservative half.
 */
export const SR1_AUTO_SCALING_FACTOR = 0.5;

/** The SR1 operator in recursive form: H = γI + Σⱼ wⱼwⱼᵀ/δⱼ and B = I/γ + Σⱼ vⱼvⱼᵀ/σⱼ. */
interface Sr1Factors {
  /** Rows wⱼ (k × n), or null when empty. */
  w: tf.Tensor2D | null;
  /** 1/δⱼ (k × 1). */
  invDelta: tf.Tensor2D | null;
  v: tf.Tensor2D | null;
  invSigma: tf.Tensor2D | null;
}

function disposeFactors(f: Sr1Factors): void {
  tf.dispose([f.w, f.invDelta, f.v, f.invSigma].filter((t): t is tf.Tensor2D => t !== null));
}

/** γx + Rᵀ((Rx) ⊙ d), for rows R (k × n) and weights d (k × 1). */
function lowRankApply(
  x: tf.Tensor1D,
  gamma: number,
  rows: tf.Tensor2D | null,
  weights: tf.Tensor2D | null,
): tf.Tensor1D {
  const scaled = tf.mul(x, gamma) as tf.Tensor1D;
  if (!rows || !weights) return scaled;
  const n = x.size;
  const p = tf.mul(tf.matMul(rows, tf.reshape(x, [n, 1]) as tf.Tensor2D), weights);
  return tf.add(scaled, tf.reshape(tf.matMul(rows, p as tf.Tensor2D, true, false), [n])) as tf.Tensor1D;
}

function appendRow(rows: tf.Tensor2D | null, row: tf.Tensor): tf.Tensor2D {
  const r2 = tf.reshape(row, [1, -1]) as tf.Tensor2D;
  return rows ? (tf.concat([rows, r2], 0) as tf.Tensor2D) : r2;
}

/**
 * Limited-memory SR1 inverse-Hessian operator, in recursive form (Nocedal & Wright §6.2):
 *
 *     wⱼ = sⱼ − Hⱼrⱼ,   Hⱼ₊₁ = Hⱼ + wⱼwⱼᵀ / (wⱼᵀrⱼ),   H₀ = γI
 *     vⱼ = rⱼ − Bⱼsⱼ,   Bⱼ₊₁ = Bⱼ + vⱼvⱼᵀ / (vⱼᵀsⱼ),   B₀ = I/γ
 *
 * over the last m accepted pairs (the two recursions are inverses of each other; SR1 is self-dual). A
 * pair is applied only when it passes qNBO's curvature test sᵀr > ε, the standard skip rule
 * |sᵀ(r − Bs)| ≥ c‖s‖‖r − Bs‖ and, since H is what is applied, its dual |rᵀ(s − Hr)| ≥ c‖r‖‖s − Hr‖ (a zero
 * vᵀs leaves B undefined and makes H singular; a zero wᵀr the reverse). 'auto' scaling is
 * γ = {@link SR1_AUTO_SCALING_FACTOR}·sᵀr / rᵀr of the newest pair. H need not be positive definite.
 *
 * The vectors wⱼ, vⱼ are kept stacked, so H·v = γv + Wᵀ((Wv) ⊙ δ⁻¹) is two matrix products. A new pair is
 * added incrementally while H₀ stays the same and the memory is not full; otherwise (a full memory drops
 * its oldest pair, or 'auto' scaling moves γ) the recursion is re-run over the kept pairs, and older pairs
 * that now fail the skip rule are let go. The vectors are formed in tensors rather than from a Gram
 * matrix: with 2k vectors in ℝⁿ the coefficient form is too ill-conditioned for float32.
 */
export class Sr1Memory extends PairStore {
  /** Which update the memory applies: `'sr1'`. */
  readonly kind = 'sr1';
  private factors: Sr1Factors = { w: null, invDelta: null, v: null, invSigma: null };
  private deltas: number[] = [];
  private sigmas: number[] = [];

  constructor(spec: TreeSpec, options: QuasiNewtonMemoryOptions) {
    super(spec, options, 'sr1');
  }

  /**
   * One step of both recursions for (s, r) against `f`: returns the new vectors (kept by the caller when
   * applied) and whether the pair passes the skip rules.
   */
  private step(
    s: tf.Tensor1D,
    r: tf.Tensor1D,
    f: Sr1Factors,
    gamma: number,
  ): { ok: boolean; w: tf.Tensor1D; v: tf.Tensor1D; delta: number; sigma: number } {
    const { w, v, stats } = tf.tidy(() => {
      const wj = tf.sub(s, lowRankApply(r, gamma, f.w, f.invDelta)) as tf.Tensor1D;
      const vj = tf.sub(r, lowRankApply(s, 1 / gamma, f.v, f.invSigma)) as tf.Tensor1D;
      const m = tf.stack([wj, vj, r, s]) as tf.Tensor2D;
      return { w: wj, v: vj, stats: tf.matMul(m, m, false, true) };
    });
    const g = stats.dataSync();
    stats.dispose();
    // Rows/columns of the 4×4 Gram matrix: w, v, r, s.
    const wr = g[0 * 4 + 2];
    const ww = g[0];
    const vs = g[1 * 4 + 3];
    const vv = g[1 * 4 + 1];
    const rr = g[2 * 4 + 2];
    const ss = g[3 * 4 + 3];
    const c = this.options.sr1SkipThreshold;
    const ok =
      [wr, ww, vs, vv, rr, ss].every((x) => Number.isFinite(x)) &&
      wr !== 0 &&
      vs !== 0 &&
      Math.abs(vs) >= c * Math.sqrt(ss * vv) &&
      Math.abs(wr) >= c * Math.sqrt(rr * ww);
    return { ok, w, v, delta: wr, sigma: vs };
  }

  private grow(
    f: Sr1Factors,
    w: tf.Tensor1D,
    v: tf.Tensor1D,
    deltas: number[],
    sigmas: number[],
  ): Sr1Factors {
    return tf.tidy(() => {
      const k = deltas.length;
      const next: Sr1Factors = {
        w: appendRow(f.w, w),
        v: appendRow(f.v, v),
        invDelta: tf.tensor2d(
          deltas.map((d) => 1 / d),
          [k, 1],
        ),
        invSigma: tf.tensor2d(
          sigmas.map((d) => 1 / d),
          [k, 1],
        ),
      };
      return next as unknown as tf.TensorContainer;
    }) as unknown as Sr1Factors;
  }

  protected offer(s: tf.Tensor1D, r: tf.Tensor1D): boolean {
    const [sTr, rTr] = readSmall(() => tf.stack([tf.sum(tf.mul(s, r)), tf.sum(tf.mul(r, r))]));
    if (!Number.isFinite(sTr) || !Number.isFinite(rTr) || !(sTr > this.options.curvatureEpsilon))
      return false;
    const gamma =
      this.options.initialScaling === 'auto'
        ? (SR1_AUTO_SCALING_FACTOR * sTr) / rTr
        : this.options.initialScaling;
    const full = this.size === this.options.memory;
    if (!full && (gamma === this.gammaValue || this.size === 0)) {
      // Incremental: the kept pairs' recursion is unchanged.
      const st = this.step(s, r, this.factors, gamma);
      if (!st.ok) {
        tf.dispose([st.w, st.v]);
        return false;
      }
      const deltas = [...this.deltas, st.delta];
      const sigmas = [...this.sigmas, st.sigma];
      const next = this.grow(this.factors, st.w, st.v, deltas, sigmas);
      tf.dispose([st.w, st.v]);
      this.commit(next, deltas, sigmas, gamma, [...this.sList, s], [...this.rList, r], true);
      return true;
    }
    // Re-run the recursion over the kept pairs (minus the oldest when full), then the new pair.
    const candS = [...this.sList.slice(full ? 1 : 0), s];
    const candR = [...this.rList.slice(full ? 1 : 0), r];
    let f: Sr1Factors = { w: null, invDelta: null, v: null, invSigma: null };
    const deltas: number[] = [];
    const sigmas: number[] = [];
    const keptS: tf.Tensor1D[] = [];
    const keptR: tf.Tensor1D[] = [];
    let newOk = false;
    candS.forEach((sj, j) => {
      const st = this.step(sj, candR[j], f, gamma);
      if (st.ok) {
        deltas.push(st.delta);
        sigmas.push(st.sigma);
        const next = this.grow(f, st.w, st.v, deltas, sigmas);
        disposeFactors(f);
        f = next;
        keptS.push(sj);
        keptR.push(candR[j]);
        if (j === candS.length - 1) newOk = true;
      }
      tf.dispose([st.w, st.v]);
    });
    if (!newOk) {
      disposeFactors(f);
      return false;
    }
    this.commit(f, deltas, sigmas, gamma, keptS, keptR, true);
    return true;
  }

  /** Installs new factors; the last of `sList`/`rList` is the caller's new pair, copied here. */
  private commit(
    f: Sr1Factors,
    deltas: number[],
    sigmas: number[],
    gamma: number,
    sList: tf.Tensor1D[],
    rList: tf.Tensor1D[],
    lastIsNew: boolean,
  ): void {
    const n = sList.length;
    if (lastIsNew) {
      sList[n - 1] = tf.keep(tf.clone(sList[n - 1])) as tf.Tensor1D;
      rList[n - 1] = tf.keep(tf.clone(rList[n - 1])) as tf.Tensor1D;
    }
    disposeFactors(this.factors);
    for (const t of [f.w, f.invDelta, f.v, f.invSigma]) if (t) tf.keep(t);
    this.factors = f;
    this.deltas = deltas;
    this.sigmas = sigmas;
    this.gammaValue = gamma;
    this.setPairs(sList, rList);
  }

  applyFlat(v: tf.Tensor1D): tf.Tensor1D {
    this.checkVector(v, 'v');
    return tf.tidy(() => lowRankApply(v, this.gammaValue, this.factors.w, this.factors.invDelta));
  }

  protected clearOperator(): void {
    disposeFactors(this.factors);
    this.factors = { w: null, invDelta: null, v: null, invSigma: null };
    this.deltas = [];
    this.sigmas = [];
  }
}

/** The pair memories by name. */
export type PairMemoryKind = 'lbfgs' | 'sr1';

/** A fresh L-BFGS or SR1 memory for vectors shaped like `spec`. */
export function createPairMemory(
  kind: PairMemoryKind,
  spec: TreeSpec,
  options: Partial<QuasiNewtonMemoryOptions> = {},
): LbfgsMemory | Sr1Memory {
  const full = { ...DEFAULT_QUASI_NEWTON_MEMORY_OPTIONS, ...options };
  return kind === 'lbfgs' ? new LbfgsMemory(spec, full) : new Sr1Memory(spec, full);
}
