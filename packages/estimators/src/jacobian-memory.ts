import * as tf from '@tensorflow/tfjs-core';
import { Float32Values } from '@bilevel/core';
import { choleskyFactor } from '@bilevel/linalg';

/** A row-major matrix in a {@link JacobianMemoryState}. */
export interface JacobianMemoryRows {
  /** Number of rows (the memory's rank). */
  readonly rank: number;
  /** Entries per row: dim x for the directions. */
  readonly dx?: number;
  /** Entries per row: dim y for the responses. */
  readonly dy?: number;
  /** The entries, row by row (Float32Values when saved; a number array after a trip through JSON). */
  readonly values: Float32Array | number[];
}

/** Checkpoint form of a {@link JacobianMemory}: the kept directions and responses as plain arrays, or null. */
export interface JacobianMemoryState {
  /** Orthonormal directions bᵢ in x-space, [rank, dx]; null when the memory is empty. */
  readonly directions: JacobianMemoryRows | null;
  /** Responses J·bᵢ in flat y-space, [rank, dy]; null when the memory is empty. */
  readonly responses: JacobianMemoryRows | null;
}

/** The kept rows of a {@link JacobianMemory}. */
export interface JacobianMemoryTensors {
  /** Orthonormal directions B, [rank, dim x]. */
  readonly b: tf.Tensor2D;
  /** Responses A = J Bᵀ as rows, [rank, dim y]. */
  readonly a: tf.Tensor2D;
}

/**
 * Rows of `rows` ([n, d], row-major) made orthonormal by modified Gram–Schmidt in float64, each row
 * orthogonalized twice ("twice is enough", Giraud et al., 2005) for float32-accurate orthogonality.
 * Throws when a row is (numerically) in the span of the previous ones.
 */
export function orthonormalizeRows(rows: ArrayLike<number>, n: number, d: number): Float32Array {
  const q = Float64Array.from(rows as ArrayLike<number>);
  if (q.length !== n * d) throw new Error(`orthonormalizeRows: expected ${n}×${d} entries, got ${q.length}`);
  for (let i = 0; i < n; i++) {
    const oi = i * d;
    let original = 0;
    for (let t = 0; t < d; t++) original += q[oi + t] * q[oi + t];
    for (let pass = 0; pass < 2; pass++) {
      for (let j = 0; j < i; j++) {
        const oj = j * d;
        let dot = 0;
        for (let t = 0; t < d; t++) dot += q[oi + t] * q[oj + t];
        for (let t = 0; t < d; t++) q[oi + t] -= dot * q[oj + t];
      }
    }
    let norm = 0;
    for (let t = 0; t < d; t++) norm += q[oi + t] * q[oi + t];
    norm = Math.sqrt(norm);
    if (!(norm > 1e-6 * Math.sqrt(original))) {
      throw new Error(`orthonormalizeRows: row ${i} is linearly dependent on the previous rows`);
    }
    for (let t = 0; t < d; t++) q[oi + t] /= norm;
  }
  return Float32Array.from(q);
}

/**
 * L⁻¹ for the Cholesky factor L of a symmetric positive definite n×n matrix (row-major, float64), or null when a
 * pivot falls to 1e-10 × the largest diagonal entry or below (the rows it came from are numerically dependent).
 */
function inverseCholesky(gram: ArrayLike<number>, n: number): Float64Array | null {
  const l = choleskyFactor(Float64Array.from(gram), n, 1e-10);
  if (!l) return null;
  // forward substitution, column by column: L·X = I
  const inv = new Float64Array(n * n);
  for (let c = 0; c < n; c++) {
    for (let i = c; i < n; i++) {
      let v = i === c ? 1 : 0;
      for (let k = c; k < i; k++) v -= l[i * n + k] * inv[k * n + c];
      inv[i * n + c] = v / l[i * n + i];
    }
  }
  return inv;
}

/**
 * The rows of `p` ([n, d]) orthonormalized by CholeskyQR2 (Fukaya et al., 2014): twice, V ← L⁻¹V with LLᵀ = VVᵀ,
 * the n×n Gram matrix formed by one matrix product on the backend and factored in float64 on the CPU — O(n²d) on
 * the backend and O(n³) on the CPU, against O(n²d) on the CPU for Gram–Schmidt. Falls back to
 * {@link orthonormalizeRows} when the Gram matrix is too ill-conditioned for it (a pivot ≤ 0, or the result
 * not orthonormal to 1e-4).
 */
export function orthonormalizeRowsFast(p: tf.Tensor2D): tf.Tensor2D {
  const [n, d] = p.shape;
  let v: tf.Tensor2D | null = p;
  for (let pass = 0; pass < 2 && v; pass++) {
    const current: tf.Tensor2D = v;
    const gram = tf.matMul(current, current, false, true);
    const inv = inverseCholesky(gram.dataSync(), n);
    gram.dispose();
    v = inv ? tf.tidy(() => tf.matMul(tf.tensor2d(Float32Array.from(inv), [n, n]), current) as tf.Tensor2D) : null;
    if (current !== p) current.dispose();
  }
  if (v) {
    const result: tf.Tensor2D = v;
    const error = tf.tidy(() => tf.max(tf.abs(tf.sub(tf.matMul(result, result, false, true), tf.eye(n)))).dataSync()[0]);
    if (error < 1e-4) return result;
    result.dispose();
  }
  return tf.tensor2d(orthonormalizeRows(p.dataSync(), n, d), [n, d]);
}

/**
 * `n` rows of Haar-random orthonormal frames in ℝ^d, scaled by √d (so that E[uuᵀ] = I), in blocks of at most
 * d rows, each block independent: the orthogonal directions of Choromanski et al., "Structured Evolution with
 * Compact Architectures for Scalable Policy Optimization" (ICML 2018). Within a block the directions cannot
 * repeat one another, which lowers the estimate's variance against i.i.d. Gaussian directions.
 */
export function orthogonalDirections(n: number, d: number, normals: (count: number) => Float32Array): tf.Tensor2D {
  const out = new Float32Array(n * d);
  const scale = Math.sqrt(d);
  for (let start = 0; start < n; start += d) {
    const b = Math.min(d, n - start);
    const block = orthonormalizeRows(normals(b * d), b, d);
    for (let t = 0; t < block.length; t++) out[start * d + t] = block[t] * scale;
  }
  return tf.tensor2d(out, [n, d]);
}

/**
 * A low-rank memory of the response Jacobian J = ∂y_N/∂x kept across outer steps: orthonormal directions
 * B = [b₁; …; b_k] in x-space ([k, dx]) and their finite-difference responses A = [Jb₁; …; Jb_k] ([k, dy]), so
 * that Jᵀw ≈ Bᵀ(A w) on span(B) for any w. New directions are drawn in the orthogonal complement of span(B)
 * and appended; when the rank would pass its cap the oldest rows are dropped first (so a full memory
 * re-measures its oldest directions, a cyclic refresh). The rows are kept (`tf.keep`) until
 * {@link JacobianMemory.dispose}. Memory cost: k·(dx + dy) float32.
 *
 * This is a block form of Broyden's secant update of a Jacobian approximation (Broyden, 1965) restricted to
 * directions orthogonal to the memory, as in the sketch-and-project view of randomized quasi-Newton updates
 * (Gower & Richtárik, "Randomized Quasi-Newton Updates Are Linearly Convergent Matrix Inversion Algorithms",
 * 2017): with a constant J (a quadratic inner problem solved by a fixed number of gradient steps) Bᵀ(Aw) is
 * exact once k = dx.
 */
export class JacobianMemory {
  private b: tf.Tensor2D | null = null;
  private a: tf.Tensor2D | null = null;

  /** Rank k (number of kept directions). */
  get rank(): number {
    return this.b ? this.b.shape[0] : 0;
  }

  /** The kept directions and responses when their sizes match (dx, dy); else the memory is cleared. */
  matching(dx: number, dy: number): JacobianMemoryTensors | null {
    if (!this.b || !this.a) return null;
    if (this.b.shape[1] !== dx || this.a.shape[1] !== dy) {
      this.dispose();
      return null;
    }
    return { b: this.b, a: this.a };
  }

  /** Drops the oldest rows so that at most `keep` remain. */
  truncate(keep: number): void {
    if (!this.b || !this.a || this.rank <= keep) return;
    const k = this.rank;
    if (keep <= 0) {
      this.dispose();
      return;
    }
    const b = tf.keep(tf.slice(this.b, [k - keep, 0], [keep, -1]));
    const a = tf.keep(tf.slice(this.a, [k - keep, 0], [keep, -1]));
    this.dispose();
    this.b = b;
    this.a = a;
  }

  /**
   * `n` orthonormal rows ([n, dx]) uniformly distributed among the n-frames of the orthogonal complement of
   * span(B): a Gaussian matrix projected off span(B) (twice) and orthonormalized (CholeskyQR2, see
   * {@link orthonormalizeRowsFast}).
   */
  complementFrame(n: number, dx: number, normals: (count: number) => Float32Array): tf.Tensor2D {
    const g0 = tf.tensor2d(normals(n * dx), [n, dx]);
    let projected: tf.Tensor2D = g0;
    if (this.b) {
      const b = this.b;
      projected = tf.tidy(() => {
        let p: tf.Tensor2D = g0;
        for (let pass = 0; pass < 2; pass++) p = tf.sub(p, tf.matMul(tf.matMul(p, b, false, true), b));
        return p;
      });
      g0.dispose();
    }
    const v = orthonormalizeRowsFast(projected);
    projected.dispose();
    return v;
  }

  /** Jᵀw restricted to span(B), as a [dx] vector: Bᵀ(A w). */
  transposeProduct(w: tf.Tensor1D): tf.Tensor1D | null {
    if (!this.b || !this.a) return null;
    const aw = tf.matMul(this.a, tf.reshape(w, [-1, 1]));
    return tf.reshape(tf.matMul(this.b, aw, true, false), [-1]) as tf.Tensor1D;
  }

  /** Appends orthonormal directions V ([n, dx], orthogonal to B) and their responses JV ([n, dy]). */
  append(v: tf.Tensor2D, responses: tf.Tensor2D): void {
    const b = tf.keep(this.b ? tf.concat([this.b, v]) : tf.clone(v));
    const a = tf.keep(this.a ? tf.concat([this.a, responses]) : tf.clone(responses));
    this.dispose();
    this.b = b;
    this.a = a;
  }

  /** The memory as plain arrays: exact float32 entries that `JSON.stringify` writes as number arrays. */
  getState(): JacobianMemoryState {
    if (!this.b || !this.a) return { directions: null, responses: null };
    return {
      directions: { rank: this.rank, dx: this.b.shape[1], values: new Float32Values(this.b.dataSync()) },
      responses: { rank: this.rank, dy: this.a.shape[1], values: new Float32Values(this.a.dataSync()) },
    };
  }

  /** Restores a state from {@link JacobianMemory.getState}, replacing (and releasing) the kept rows. */
  setState(state: unknown): void {
    const s = state as Partial<JacobianMemoryState> | null | undefined;
    if (!s || typeof s !== 'object' || !('directions' in s) || !('responses' in s)) {
      throw new Error('estimator state: expected an object { directions, responses } (the ESJ Jacobian memory)');
    }
    this.dispose();
    const { directions: d, responses: r } = s;
    if (!d || !r) return;
    const dx = d.dx ?? NaN;
    const dy = r.dy ?? NaN;
    if (d.rank !== r.rank || d.values.length !== d.rank * dx || r.values.length !== r.rank * dy) {
      throw new Error(
        `estimator state: Jacobian memory sizes do not match (directions ${d.rank}×${d.dx} with ` +
          `${d.values.length} entries, responses ${r.rank}×${r.dy} with ${r.values.length})`,
      );
    }
    this.b = tf.keep(tf.tensor2d(Float32Array.from(d.values), [d.rank, dx]));
    this.a = tf.keep(tf.tensor2d(Float32Array.from(r.values), [r.rank, dy]));
  }

  /** Releases the kept rows. */
  dispose(): void {
    this.b?.dispose();
    this.a?.dispose();
    this.b = null;
    this.a = null;
  }
}
