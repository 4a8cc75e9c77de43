import * as tf from '@tensorflow/tfjs-core';
import {
  Random,
  type TensorTree,
  type TreeSpec,
  matVec,
  randomOrthogonal,
  spectralMatrix,
  treeFlatten,
  treeUnflatten,
} from '@bilevel/core';
import type { MatVec } from '../linear-solve';

/** A symmetric test matrix Qᵀ diag(λ) Q with its exact inverse, both float64. */
export interface SpectralSystem {
  readonly n: number;
  readonly a: Float64Array;
  readonly aInv: Float64Array | null;
  readonly eig: number[];
}

/** Qᵀ diag(eig) Q for a random orthogonal Q (seeded); the inverse when no eigenvalue is zero. */
export function spectralSystem(n: number, eig: number[], seed: number): SpectralSystem {
  const q = randomOrthogonal(n, new Random(seed));
  const a = spectralMatrix(q, eig);
  const invertible = eig.every((l) => l !== 0);
  return {
    n,
    a,
    aInv: invertible
      ? spectralMatrix(
          q,
          eig.map((l) => 1 / l),
        )
      : null,
    eig,
  };
}

export function logSpaced(n: number, lo: number, hi: number): number[] {
  return Array.from({ length: n }, (_, i) => lo * Math.pow(hi / lo, n === 1 ? 0 : i / (n - 1)));
}

/** The operator v ↦ A v on trees of the given spec (float32 matmul), counting its calls. */
export function treeOperator(
  sys: SpectralSystem,
  spec: TreeSpec,
): { matvec: MatVec; calls: () => number; dispose: () => void } {
  const aT = tf.keep(tf.tensor2d(Float32Array.from(sys.a), [sys.n, sys.n]));
  let calls = 0;
  return {
    matvec: (v: TensorTree) => {
      calls++;
      return tf.tidy(() => treeUnflatten(tf.matMul(aT, tf.reshape(treeFlatten(v), [sys.n, 1])), spec));
    },
    calls: () => calls,
    dispose: () => aT.dispose(),
  };
}

/** A tree with two tensors (shapes [2, 3] and [n − 6]) so that solvers are tested on real trees. */
export function twoTensorSpec(n: number): TreeSpec {
  return { names: ['a', 'b'], shapes: [[2, 3], [n - 6]], sizes: [6, n - 6], total: n };
}

export function treeFromArray(values: ArrayLike<number>, spec: TreeSpec): TensorTree {
  return tf.tidy(() => treeUnflatten(tf.tensor1d(Float32Array.from(values)), spec));
}

export function treeToArray(t: TensorTree): Float64Array {
  const flat = treeFlatten(t);
  const out = Float64Array.from(flat.dataSync());
  flat.dispose();
  return out;
}

export function relativeError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < b.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return Math.sqrt(num) / Math.max(Math.sqrt(den), 1e-300);
}

export function norm(v: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < v.length; i++) s += v[i] * v[i];
  return Math.sqrt(s);
}

/** ‖b − A x‖ in float64. */
export function residualNorm(sys: SpectralSystem, x: ArrayLike<number>, b: ArrayLike<number>): number {
  const ax = matVec(sys.a, sys.n, sys.n, x);
  return norm(Array.from(ax, (v, i) => b[i] - v));
}

/** x ↦ (I − ηA)^k x, repeatedly, in float64. */
export function powerOfRelaxation(
  sys: SpectralSystem,
  eta: number,
  k: number,
  x: ArrayLike<number>,
): Float64Array {
  let p = Float64Array.from(x);
  for (let i = 0; i < k; i++) {
    const ap = matVec(sys.a, sys.n, sys.n, p);
    p = p.map((v, j) => v - eta * ap[j]);
  }
  return p;
}
