import * as tf from '@tensorflow/tfjs-core';
import type { TreeSpec } from '@bilevel/core';
import type { QuasiNewtonMemoryOptions } from './options';
import { PairStore, readSmall } from './pair-memory';

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
