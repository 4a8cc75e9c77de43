import * as tf from '@tensorflow/tfjs-core';
import type { CsrMatrix } from './libsvm';

/**
 * A sparse matrix held as tfjs tensors in coordinate form: nonzero e sits at (rowIds[e], colIds[e]) with
 * value values[e]. Create it once with {@link sparseTensorsFromCsr} (and `tf.keep` it for long-lived data).
 */
export interface SparseTensors {
  /** Number of rows. */
  readonly rows: number;
  /** Number of columns. */
  readonly cols: number;
  /** Row of each nonzero (int32). */
  readonly rowIds: tf.Tensor1D;
  /** Column of each nonzero (int32). */
  readonly colIds: tf.Tensor1D;
  /** Value of each nonzero. */
  readonly values: tf.Tensor1D;
}

/** Coordinate-form tensors of a CSR matrix. */
export function sparseTensorsFromCsr(m: CsrMatrix): SparseTensors {
  const nnz = m.indices.length;
  const rowIds = new Int32Array(nnz);
  for (let r = 0; r < m.rows; r++) rowIds.fill(r, m.indptr[r], m.indptr[r + 1]);
  return {
    rows: m.rows,
    cols: m.cols,
    rowIds: tf.tensor1d(rowIds, 'int32'),
    colIds: tf.tensor1d(Int32Array.from(m.indices), 'int32'),
    values: tf.tensor1d(Float32Array.from(m.values), 'float32'),
  };
}

/** The tensors of a {@link SparseTensors}, for `tf.keep`, disposal and batches. */
export function sparseTensorList(s: SparseTensors): tf.Tensor[] {
  return [s.rowIds, s.colIds, s.values];
}

/** Disposes the three tensors. */
export function disposeSparse(s: SparseTensors): void {
  for (const t of sparseTensorList(s)) t.dispose();
}

/**
 * Segment sum along axis 0: out[s] = Σ_{e : ids[e] = s} data[e] for s < numSegments, as a scatter that adds
 * duplicate indices (O(entries), unlike the tfjs CPU kernel of `unsortedSegmentSum`, which loops over the
 * segments). Its gradient is {@link gatherRows}, whose gradient is this op again, so derivatives of every
 * order stay exact and fast.
 */
export function segmentSum<T extends tf.Tensor>(data: T, ids: tf.Tensor1D, numSegments: number): T {
  const op = tf.customGrad((...args: unknown[]) => {
    const d = args[0] as tf.Tensor;
    return {
      value: tf.scatterND(tf.expandDims(ids, 1), d, [numSegments, ...d.shape.slice(1)]),
      gradFunc: (dy: tf.Tensor) => gatherRows(dy, ids),
    };
  });
  return op(data) as T;
}

/**
 * Rows `ids` of `data` (a gather along axis 0) whose gradient is the fast `segmentSum` — so gathers
 * inside losses that are differentiated (even twice) do not fall back to the slow segment-sum kernel.
 */
export function gatherRows<T extends tf.Tensor>(data: T, ids: tf.Tensor1D): T {
  const rows = data.shape[0];
  const op = tf.customGrad((...args: unknown[]) => ({
    value: tf.gather(args[0] as tf.Tensor, ids),
    gradFunc: (dy: tf.Tensor) => segmentSum(dy, ids, rows),
  }));
  return op(data) as T;
}

/**
 * Sparse × dense product S·W for S (rows × cols, sparse) and W (cols × k, dense):
 *
 *     (S·W)[r, :] = Σ_{e : rowIds[e] = r} values[e] · W[colIds[e], :]
 *
 * formed as a gather of the rows of W, a scaling by the nonzeros and a segment sum over rows, each
 * O(nnz·k) instead of O(rows·cols·k). The gather and the segment sum are each other's gradient
 * ({@link gatherRows}, `segmentSum`), so the product is differentiable in W to any order:
 * ∂⟨G, S·W⟩/∂W = Sᵀ·G, and Hessian-vector products through it are exact.
 */
export function sparseDenseMatMul(s: SparseTensors, w: tf.Tensor2D): tf.Tensor2D {
  if (w.rank !== 2 || w.shape[0] !== s.cols) {
    throw new Error(
      `sparseDenseMatMul: dense factor must have shape [${s.cols}, k], got [${w.shape.join(', ')}]`,
    );
  }
  return tf.tidy(() => {
    const picked = gatherRows(w, s.colIds);
    const scaled = tf.mul(picked, tf.reshape(s.values, [-1, 1]));
    return segmentSum(scaled, s.rowIds, s.rows) as tf.Tensor2D;
  });
}
