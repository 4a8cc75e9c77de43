import * as tf from '@tensorflow/tfjs-core';
import {
  ConfigError,
  type CurvaturePair,
  type TensorTree,
  type TreeSpec,
  parseOptions,
  treeFlatten,
  treeUnflatten,
} from '@bilevel/core';
import { type QuasiNewtonMemoryOptions, QuasiNewtonMemoryOptionsSchema } from './options';
import type { InverseHessianOperator } from './inverse-hessian';

/*
 * Limited-memory inverse-Hessian operators H ≈ [∇²g]⁻¹ on flat vectors, built from curvature pairs
 * (s, r): s a step y₊ − y and r = ∇g(y₊) − ∇g(y) its gradient difference (or a Hessian-vector product
 * H·s, as in qNBO's subroutine B). They are shared by the quasi-Newton inner solvers and by the qNBO
 * hypergradient estimator (Fang et al., "qNBO: quasi-Newton Meets Bilevel Optimization", ICLR 2025).
 *
 * Both keep their n-dimensional work in a few large products whatever the number of pairs k:
 * - L-BFGS (lbfgs-memory.ts) in compact form, H = γI + UᵀCU with U = [s₀; r₀; s₁; r₁; …] (2k × n) and a small
 *   2k × 2k matrix C computed in float64 from the Gram matrix G = UUᵀ by running the two-loop recursion on
 *   coefficient vectors (every vector it forms lies in span(U ∪ {v}), its coordinates linear in p = Uv);
 * - SR1 (sr1-memory.ts) in recursive form, H = γI + Σⱼ wⱼwⱼᵀ/δⱼ with the wⱼ stacked (k × n), formed in tensors:
 *   the coefficient form is too ill-conditioned for float32 there.
 */

/**
 * Validates pair-memory options with {@link QuasiNewtonMemoryOptionsSchema} (the one schema the plugins pick their
 * fields from) and fills in its defaults; a bad field raises a `ConfigError` whose path is the field.
 */
export function parsePairMemoryOptions(
  options: Partial<QuasiNewtonMemoryOptions>,
  kind: string,
): Required<QuasiNewtonMemoryOptions> {
  try {
    return parseOptions(QuasiNewtonMemoryOptionsSchema, options, '') as Required<QuasiNewtonMemoryOptions>;
  } catch (e) {
    if (e instanceof ConfigError) throw new ConfigError(`${kind} memory: ${e.message}`, e.path);
    throw e;
  }
}

/** Row-major K×K sub-matrix of `g` (size n×n) on the given indices. */
export function subMatrix(g: Float64Array, n: number, idx: readonly number[]): Float64Array {
  const K = idx.length;
  const out = new Float64Array(K * K);
  for (let a = 0; a < K; a++) for (let b = 0; b < K; b++) out[a * K + b] = g[idx[a] * n + idx[b]];
  return out;
}

/** Reads a small tensor made by `fn` (inside tidy) as a float64 array, and releases it. */
export function readSmall(fn: () => tf.Tensor): Float64Array {
  const t = tf.tidy(fn);
  const values = Float64Array.from(t.dataSync());
  t.dispose();
  return values;
}

/**
 * Storage shared by the pair memories ({@link LbfgsMemory}, {@link Sr1Memory}): the kept pairs (copies, oldest
 * first), shape checks, counters and the tree form of the operator.
 */
export abstract class PairStore implements InverseHessianOperator {
  /** Which update the memory applies. */
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
    this.options = parsePairMemoryOptions(options, kind);
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
