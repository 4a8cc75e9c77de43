import * as tf from '@tensorflow/tfjs-core';
import {
  type CurvaturePair,
  type TensorTree,
  type TreeSpec,
  treeFlatten,
  treeUnflatten,
} from '@bilevel/core';
import type { InverseHessianOperator } from './inverse-hessian';

/** Options of {@link DenseBfgsMemory}. */
export interface DenseBfgsOptions {
  /** H₀ = γI: `'auto'` takes γ = sᵀr / rᵀr of the first pair, a number fixes γ. */
  readonly initialScaling: 'auto' | number;
  /** Curvature test: a pair is used only when sᵀr > ε. */
  readonly curvatureEpsilon: number;
  /** Recent pairs kept in `pairs` for estimators that build their own memory (H itself is dense). */
  readonly keepPairs: number;
}

/**
 * The dense BFGS inverse-Hessian update (Nocedal & Wright, eq. 6.17), with ρ = 1 / sᵀr:
 *
 *     H₊ = (I − ρsrᵀ) H (I − ρrsᵀ) + ρssᵀ = H + s aᵀ − ρ(Hr)sᵀ,   a = (ρ + ρ²rᵀHr) s − ρHr
 *
 * applied only when sᵀr > ε. With 'auto' scaling, H₀ = γI with γ = sᵀr / rᵀr of the first pair, set just
 * before the first update (Nocedal & Wright, eq. 6.20); before any pair H = I (or c·I).
 */
export class DenseBfgsMemory implements InverseHessianOperator {
  readonly kind = 'bfgs';
  private h: tf.Tensor2D | null = null;
  private recent: CurvaturePair[] = [];
  private updates = 0;

  constructor(
    /** Names and shapes of the trees the operator acts on. */
    readonly spec: TreeSpec,
    /** The memory's options. */
    readonly options: DenseBfgsOptions,
  ) {}

  /** Updates applied so far. */
  get size(): number {
    return this.updates;
  }

  get pairs(): readonly CurvaturePair[] {
    return this.recent;
  }

  private get scale(): number {
    return this.options.initialScaling === 'auto' ? 1 : this.options.initialScaling;
  }

  /** The dense H as a tensor (a copy; the caller disposes it). */
  matrix(): tf.Tensor2D {
    const n = this.spec.total;
    return this.h ? tf.clone(this.h) : (tf.mul(tf.eye(n), this.scale) as tf.Tensor2D);
  }

  push(s: tf.Tensor1D, r: tf.Tensor1D): boolean {
    const n = this.spec.total;
    const [sTr, rTr] = tf.tidy(() =>
      Array.from(tf.stack([tf.sum(tf.mul(s, r)), tf.sum(tf.square(r))]).dataSync()),
    );
    if (!Number.isFinite(sTr) || !Number.isFinite(rTr) || !(sTr > this.options.curvatureEpsilon))
      return false;
    const h0 = this.h ?? (this.options.initialScaling === 'auto' ? sTr / rTr : this.scale);
    const next = tf.tidy(() => {
      const H = this.h ?? (tf.mul(tf.eye(n), h0) as tf.Tensor2D);
      const rho = 1 / sTr;
      const sc = tf.reshape(s, [n, 1]) as tf.Tensor2D;
      const hr = tf.matMul(H, tf.reshape(r, [n, 1]) as tf.Tensor2D);
      const rHr = tf.sum(tf.mul(hr, tf.reshape(r, [n, 1])));
      const a = tf.sub(tf.mul(sc, tf.add(rho, tf.mul(rHr, rho * rho))), tf.mul(hr, rho));
      return tf.sub(
        tf.add(H, tf.matMul(sc, a, false, true)),
        tf.matMul(tf.mul(hr, rho), sc, false, true),
      ) as tf.Tensor2D;
    });
    this.h?.dispose();
    this.h = tf.keep(next);
    this.updates++;
    if (this.options.keepPairs > 0) {
      this.recent.push({ s: tf.keep(tf.clone(s)), r: tf.keep(tf.clone(r)) });
      while (this.recent.length > this.options.keepPairs) {
        const old = this.recent.shift();
        if (old) tf.dispose([old.s, old.r]);
      }
    }
    return true;
  }

  applyFlat(v: tf.Tensor1D): tf.Tensor1D {
    const n = this.spec.total;
    if (v.rank !== 1 || v.size !== n) {
      throw new Error(
        `bfgs memory: v must be a flat vector of ${n} entries (got shape [${v.shape.join(', ')}])`,
      );
    }
    return tf.tidy(() =>
      this.h
        ? (tf.reshape(tf.matMul(this.h, tf.reshape(v, [n, 1]) as tf.Tensor2D), [n]) as tf.Tensor1D)
        : (tf.mul(v, this.scale) as tf.Tensor1D),
    );
  }

  applyInverseHessian(v: TensorTree): TensorTree {
    return tf.tidy(() => treeUnflatten(this.applyFlat(treeFlatten(v)), this.spec));
  }

  /** Drops H and the kept pairs (H back to H₀). */
  clear(): void {
    this.h?.dispose();
    this.h = null;
    this.updates = 0;
    for (const p of this.recent) tf.dispose([p.s, p.r]);
    this.recent = [];
  }

  dispose(): void {
    this.clear();
  }
}
