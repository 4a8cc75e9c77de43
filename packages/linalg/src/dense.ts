import * as tf from '@tensorflow/tfjs-core';
import { type TensorTree, treeFlatten, treeSpec, treeUnflatten } from '@bilevel/core';
import { choleskyFactor, choleskySolve } from './cholesky';
import { type LinearSolveResult, type MatVec, checkFinite, flatOperator } from './linear-solve';

/** How a dense system was solved. */
export type DenseFactorization = 'cholesky' | 'eigen' | 'lu';

/** Options of {@link denseSolve}. */
export interface DenseSolveOptions {
  /** Refuse systems with more unknowns than this (d matvecs and O(d³) work). Default 1000. */
  readonly maxDimension?: number;
  /** Solve with ½(A + Aᵀ) (removes rounding asymmetry of Hessians). Default true. */
  readonly symmetrize?: boolean;
  /**
   * Relative cutoff for (near-)singular symmetric systems: eigenvalues with |λ| ≤ rcond·max|λ| are treated as
   * zero (pseudo-inverse, minimum-norm solution). Default 1e-6 (float32 Hessians carry relative noise ~1e-7).
   */
  readonly rcond?: number;
  /** Names the size option in the error (e.g. `estimator.options.maxDimension`). */
  readonly sizeOptionName?: string;
}

/** A dense system was too large for {@link denseSolve}. */
export class DimensionLimitError extends Error {
  constructor(
    /** Unknowns of the system. */
    readonly dimension: number,
    /** The largest number of unknowns allowed. */
    readonly limit: number,
    optionName: string,
  ) {
    super(
      `dense solve: the system has ${dimension} unknowns, above the limit ${optionName} = ${limit} ` +
        `(it needs ${dimension} matrix-vector products and O(d³) float64 work); raise ${optionName} or use ` +
        `an iterative solver (conjugate gradient)`,
    );
    this.name = 'DimensionLimitError';
  }
}

/**
 * Gaussian elimination with partial pivoting (LU, PA = LU) on a copy of the n×n row-major float64 matrix
 * `a`; throws an error naming the column when A is singular.
 */
export function luSolve(a: Float64Array, n: number, b: ArrayLike<number>): Float64Array {
  const m = Float64Array.from(a);
  const x = Float64Array.from({ length: n }, (_, i) => b[i]);
  let scale = 0;
  for (let i = 0; i < n * n; i++) scale = Math.max(scale, Math.abs(m[i]));
  const tiny = scale * n * Number.EPSILON;
  for (let col = 0; col < n; col++) {
    let piv = col;
    for (let i = col + 1; i < n; i++) if (Math.abs(m[i * n + col]) > Math.abs(m[piv * n + col])) piv = i;
    const pv = m[piv * n + col];
    if (!(Math.abs(pv) > tiny)) {
      throw new Error(`dense solve: the matrix is singular to working precision (no pivot in column ${col})`);
    }
    if (piv !== col) {
      for (let j = 0; j < n; j++) {
        const t = m[col * n + j];
        m[col * n + j] = m[piv * n + j];
        m[piv * n + j] = t;
      }
      const t = x[col];
      x[col] = x[piv];
      x[piv] = t;
    }
    for (let i = col + 1; i < n; i++) {
      const f = m[i * n + col] / pv;
      if (f === 0) continue;
      for (let j = col; j < n; j++) m[i * n + j] -= f * m[col * n + j];
      x[i] -= f * x[col];
    }
  }
  for (let i = n - 1; i >= 0; i--) {
    let s = x[i];
    for (let j = i + 1; j < n; j++) s -= m[i * n + j] * x[j];
    x[i] = s / m[i * n + i];
  }
  return x;
}

/**
 * Eigendecomposition A = V diag(λ) Vᵀ of a symmetric n×n row-major float64 matrix by the cyclic Jacobi
 * method (Golub & Van Loan, Matrix Computations, §8.5): plane rotations zero the off-diagonal entries until
 * their norm is negligible. Returns the eigenvalues and V (row-major, eigenvectors in the columns).
 */
export function symmetricEigen(
  a: Float64Array,
  n: number,
): {
  /** The eigenvalues λ, in no particular order. */
  values: Float64Array;
  /** V, row-major, the eigenvector of λ_k in column k. */
  vectors: Float64Array;
} {
  const m = Float64Array.from(a);
  const v = new Float64Array(n * n);
  for (let i = 0; i < n; i++) v[i * n + i] = 1;
  let total = 0;
  for (let i = 0; i < n * n; i++) total += m[i] * m[i];
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    for (let p = 0; p < n; p++) for (let q = p + 1; q < n; q++) off += m[p * n + q] * m[p * n + q];
    if (off <= 1e-30 * total || off === 0) break;
    for (let p = 0; p < n - 1; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = m[p * n + q];
        if (apq === 0) continue;
        const theta = (m[q * n + q] - m[p * n + p]) / (2 * apq);
        const t = (theta >= 0 ? 1 : -1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const sn = t * c;
        // A ← JᵀAJ on rows/columns p and q
        for (let k = 0; k < n; k++) {
          const akp = m[k * n + p];
          const akq = m[k * n + q];
          m[k * n + p] = c * akp - sn * akq;
          m[k * n + q] = sn * akp + c * akq;
        }
        for (let k = 0; k < n; k++) {
          const apk = m[p * n + k];
          const aqk = m[q * n + k];
          m[p * n + k] = c * apk - sn * aqk;
          m[q * n + k] = sn * apk + c * aqk;
        }
        m[p * n + q] = 0;
        m[q * n + p] = 0;
        for (let k = 0; k < n; k++) {
          const vkp = v[k * n + p];
          const vkq = v[k * n + q];
          v[k * n + p] = c * vkp - sn * vkq;
          v[k * n + q] = sn * vkp + c * vkq;
        }
      }
    }
  }
  return { values: Float64Array.from({ length: n }, (_, i) => m[i * n + i]), vectors: v };
}

/**
 * Minimum-norm solution x = A⁺b of a symmetric system through its eigendecomposition, dropping eigenvalues
 * with |λ| ≤ rcond·max|λ|. Returns the solution and the number of eigenvalues kept (the numerical rank).
 */
export function pseudoInverseSolve(
  a: Float64Array,
  n: number,
  b: ArrayLike<number>,
  rcond: number,
): {
  /** The minimum-norm solution A⁺b. */
  x: Float64Array;
  /** Eigenvalues kept (the numerical rank). */
  rank: number;
} {
  const { values, vectors } = symmetricEigen(a, n);
  let maxAbs = 0;
  for (const l of values) maxAbs = Math.max(maxAbs, Math.abs(l));
  const cutoff = rcond * maxAbs;
  const x = new Float64Array(n);
  let rank = 0;
  for (let k = 0; k < n; k++) {
    const l = values[k];
    if (!(Math.abs(l) > cutoff)) continue;
    rank++;
    let c = 0;
    for (let i = 0; i < n; i++) c += vectors[i * n + k] * b[i];
    c /= l;
    for (let i = 0; i < n; i++) x[i] += c * vectors[i * n + k];
  }
  return { x, rank };
}

/**
 * Solves the dense float64 system A x = b. Symmetric A: Cholesky when it is positive definite with every
 * pivot above rcond·max|A_jj|; otherwise (indefinite or numerically singular) the minimum-norm solution from
 * the eigendecomposition. Non-symmetric A: Gaussian elimination with partial pivoting.
 */
export function solveDenseSystem(
  a: Float64Array,
  n: number,
  b: ArrayLike<number>,
  symmetric = true,
  rcond = 1e-6,
): {
  /** The solution. */
  x: Float64Array;
  /** How the system was solved. */
  factorization: DenseFactorization;
  /** The numerical rank (n unless the eigendecomposition dropped eigenvalues). */
  rank: number;
} {
  if (a.length !== n * n) throw new Error(`dense solve: matrix has ${a.length} entries, expected ${n}×${n}`);
  if (b.length !== n) throw new Error(`dense solve: right-hand side has ${b.length} entries, expected ${n}`);
  if (!symmetric) return { x: luSolve(a, n, b), factorization: 'lu', rank: n };
  const l = choleskyFactor(a, n, rcond);
  if (l) return { x: choleskySolve(l, n, b), factorization: 'cholesky', rank: n };
  const { x, rank } = pseudoInverseSolve(a, n, b, rcond);
  return { x, factorization: 'eigen', rank };
}

/**
 * The dense matrix of a tree operator, built column by column from d matvecs with the unit vectors
 * (row-major float64, A[i, j] = (A e_j)_i).
 */
export function denseMatrix(
  matvec: MatVec,
  like: TensorTree,
  maxDimension = 1000,
  optionName = 'maxDimension',
): Float64Array {
  const op = flatOperator(matvec, like);
  const n = op.spec.total;
  if (n > maxDimension) throw new DimensionLimitError(n, maxDimension, optionName);
  const a = new Float64Array(n * n);
  for (let j = 0; j < n; j++) {
    const col = tf.tidy(() =>
      op.apply(tf.reshape(tf.oneHot(tf.tensor1d([j], 'int32'), n, 1, 0, 'float32'), [n]) as tf.Tensor1D),
    );
    const data = col.dataSync();
    col.dispose();
    for (let i = 0; i < n; i++) a[i * n + j] = data[i];
  }
  return a;
}

/** A dense solve's result, with the factorization that was used and the numerical rank. */
export interface DenseSolveResult extends LinearSolveResult {
  /** How the system was solved: `cholesky`, `eigen` (minimum-norm, pseudo-inverse) or `lu`. */
  readonly factorization: DenseFactorization;
  /** Eigenvalues kept by the pseudo-inverse ('eigen'); n otherwise. */
  readonly rank: number;
}

/**
 * Direct solve of A x = b: the dense matrix from d matvecs ({@link denseMatrix}), then a float64 solve
 * ({@link solveDenseSystem}: Cholesky, or the minimum-norm eigen solution for singular or indefinite
 * symmetric systems, or LU). For small systems and as the reference of the iterative solvers. The reported
 * residual ‖b − A x‖ is computed in float64 with the assembled (symmetrized) matrix.
 */
export function denseSolve(matvec: MatVec, b: TensorTree, options: DenseSolveOptions = {}): DenseSolveResult {
  const maxDimension = options.maxDimension ?? 1000;
  const symmetrize = options.symmetrize ?? true;
  const bFlat = treeFlatten(b);
  checkFinite(bFlat, 'denseSolve: the right-hand side b');
  const bData = Float64Array.from(bFlat.dataSync());
  bFlat.dispose();
  const n = bData.length;
  const a = denseMatrix(matvec, b, maxDimension, options.sizeOptionName ?? 'maxDimension');
  if (symmetrize) {
    for (let i = 0; i < n; i++) {
      for (let j = i + 1; j < n; j++) {
        const s = 0.5 * (a[i * n + j] + a[j * n + i]);
        a[i * n + j] = s;
        a[j * n + i] = s;
      }
    }
  }
  if (a.some((v) => !Number.isFinite(v)))
    throw new Error('denseSolve: the assembled matrix has non-finite entries');
  const { x, factorization, rank } = solveDenseSystem(a, n, bData, symmetrize, options.rcond ?? 1e-6);
  let res = 0;
  let bn = 0;
  for (let i = 0; i < n; i++) {
    let s = -bData[i];
    for (let j = 0; j < n; j++) s += a[i * n + j] * x[j];
    res += s * s;
    bn += bData[i] * bData[i];
  }
  const residual = Math.sqrt(res);
  const bNorm = Math.sqrt(bn);
  const solution = tf.tidy(() => treeUnflatten(tf.tensor1d(Float32Array.from(x)), treeSpec(b)));
  return {
    x: solution,
    iterations: n,
    residual,
    relativeResidual: bNorm > 0 ? residual / bNorm : 0,
    converged: true,
    factorization,
    rank,
  };
}
