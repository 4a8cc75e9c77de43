import * as tf from '@tensorflow/tfjs-core';
import { type TensorTree, treeFlatten, treeUnflatten } from '@bilevel/core';
import { type FlatOperator, checkFinite } from './linear-solve';

/**
 * The vector algebra of the iterative linear solvers (CG, fixed point, Neumann) on flat vectors, in one of
 * two places:
 *
 * - on **host** backends (`cpu`, `cpu-blas`: tensor data already lives in JS memory) as `Float32Array`s,
 *   with dot products accumulated in float64: an update is one pass over the array instead of two or three
 *   tfjs kernel launches, and reading a dot product back costs nothing;
 * - on **device** backends (WebGL, WebGPU, tfjs-node) as tensors, with every dot product of an iteration
 *   read back in one sync.
 *
 * Only the operator A·v goes through tfjs (and the oracles) in both cases.
 */
export interface FlatVectors<V> {
  /** Length of the vectors. */
  readonly size: number;
  /** A copy of `t` as a vector of this space. */
  from(t: tf.Tensor1D): V;
  /** The zero vector. */
  zeros(): V;
  /** A copy of `v`. */
  clone(v: V): V;
  /** A·v. */
  apply(v: V): V;
  /** The dot products of the pairs, read at once. */
  dots(pairs: readonly (readonly [V, V])[]): number[];
  /** a·x + y, a new vector. */
  axpy(a: number, x: V, y: V): V;
  /** a·x, a new vector. */
  scale(a: number, x: V): V;
  /** `v` as a tree shaped like the right-hand side. */
  toTree(v: V): TensorTree;
  /** Releases vectors (no-op for host arrays). */
  dispose(...vs: V[]): void;
}

/** Backends whose tensor data lives in JS typed arrays, where the host path applies. */
export const HOST_BACKENDS: readonly string[] = ['cpu', 'cpu-blas'];

let forced: 'host' | 'tensor' | null = null;

/**
 * Forces where the solvers' vector algebra runs ('auto': host arrays on host backends, tensors elsewhere).
 * Both give the same iterates up to float rounding; this is for tests and comparisons.
 */
export function setFlatVectorPlacement(placement: 'auto' | 'host' | 'tensor'): void {
  forced = placement === 'auto' ? null : placement;
}

/** Whether the solvers' vector algebra runs on host arrays (see {@link setFlatVectorPlacement}). */
export function onHostBackend(): boolean {
  if (forced) return forced === 'host';
  return HOST_BACKENDS.includes(tf.getBackend());
}

class TensorVectors implements FlatVectors<tf.Tensor1D> {
  constructor(
    private readonly op: FlatOperator,
    readonly size: number,
  ) {}
  from(t: tf.Tensor1D): tf.Tensor1D {
    return tf.clone(t);
  }
  zeros(): tf.Tensor1D {
    return tf.zeros([this.size]);
  }
  clone(v: tf.Tensor1D): tf.Tensor1D {
    return tf.clone(v);
  }
  apply(v: tf.Tensor1D): tf.Tensor1D {
    return this.op.apply(v);
  }
  dots(pairs: readonly (readonly [tf.Tensor1D, tf.Tensor1D])[]): number[] {
    const all = tf.tidy(() => tf.stack(pairs.map(([a, b]) => tf.sum(tf.mul(a, b)))));
    const values = Array.from(all.dataSync());
    all.dispose();
    return values;
  }
  axpy(a: number, x: tf.Tensor1D, y: tf.Tensor1D): tf.Tensor1D {
    return tf.tidy(() => tf.add(tf.mul(x, a), y) as tf.Tensor1D);
  }
  scale(a: number, x: tf.Tensor1D): tf.Tensor1D {
    return tf.mul(x, a) as tf.Tensor1D;
  }
  toTree(v: tf.Tensor1D): TensorTree {
    return treeUnflatten(v, this.op.spec);
  }
  dispose(...vs: tf.Tensor1D[]): void {
    for (const v of vs) v.dispose();
  }
}

class HostVectors implements FlatVectors<Float32Array> {
  constructor(
    private readonly op: FlatOperator,
    readonly size: number,
  ) {}
  from(t: tf.Tensor1D): Float32Array {
    return Float32Array.from(t.dataSync());
  }
  zeros(): Float32Array {
    return new Float32Array(this.size);
  }
  clone(v: Float32Array): Float32Array {
    return v.slice();
  }
  apply(v: Float32Array): Float32Array {
    const input = tf.tensor1d(v);
    const out = this.op.apply(input);
    // On a host backend dataSync hands over the tensor's own array (no copy, no wait); it stays valid after
    // the tensor is disposed.
    const values = out.dataSync() as Float32Array;
    input.dispose();
    out.dispose();
    return values;
  }
  dots(pairs: readonly (readonly [Float32Array, Float32Array])[]): number[] {
    return pairs.map(([a, b]) => {
      let s = 0;
      for (let i = 0; i < a.length; i++) s += a[i] * b[i];
      return s;
    });
  }
  axpy(a: number, x: Float32Array, y: Float32Array): Float32Array {
    const out = new Float32Array(x.length);
    for (let i = 0; i < x.length; i++) out[i] = a * x[i] + y[i];
    return out;
  }
  scale(a: number, x: Float32Array): Float32Array {
    const out = new Float32Array(x.length);
    for (let i = 0; i < x.length; i++) out[i] = a * x[i];
    return out;
  }
  toTree(v: Float32Array): TensorTree {
    return tf.tidy(() => treeUnflatten(tf.tensor1d(v), this.op.spec));
  }
  dispose(): void {}
}

/**
 * The vector space of `op` on the current backend (host arrays on `cpu` / `cpu-blas`, tensors elsewhere).
 * `FlatVectors<unknown>` lets a solver be written once for both.
 */
export function flatVectors(op: FlatOperator): FlatVectors<unknown> {
  const n = op.spec.shapes.reduce((total, shape) => total + shape.reduce((p, d) => p * d, 1), 0);
  return (onHostBackend() ? new HostVectors(op, n) : new TensorVectors(op, n)) as FlatVectors<unknown>;
}

/** `tree` as a vector of `vs` (flattened in the operator's order); when `what` is given, checked finite first. */
export function fromTree<V>(vs: FlatVectors<V>, tree: TensorTree, what?: string): V {
  const flat = treeFlatten(tree);
  try {
    if (what) checkFinite(flat, what);
    return vs.from(flat);
  } finally {
    flat.dispose();
  }
}

/** b − A·x. */
export function residualOf<V>(vs: FlatVectors<V>, b: V, x: V): V {
  const ax = vs.apply(x);
  const r = vs.axpy(-1, ax, b);
  vs.dispose(ax);
  return r;
}
