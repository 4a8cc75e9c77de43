import * as tf from '@tensorflow/tfjs-core';
import type { Batch, BilevelProblem } from './problem';
import {
  type TensorTree,
  treeFromTensors,
  treeNames,
  treeNorm,
  treeSize,
  treeTensors,
  treeZip,
} from './tree';

/**
 * How Hessian- and mixed-vector products are formed: `autodiff` (double backprop, exact) or
 * `finite-difference` (central differences of gradients).
 */
export type SecondOrderStrategy = 'autodiff' | 'finite-difference';
/** The second-order strategies, as listed in messages and `bilevel list`. */
export const SECOND_ORDER_STRATEGIES: readonly SecondOrderStrategy[] = ['autodiff', 'finite-difference'];

/** Number of calls of each oracle kind. */
export interface OracleCounts {
  /** Inner loss values g(x, y) ({@link Oracles.innerLoss}). */
  innerValue: number;
  /** Inner gradients ∇_y g (also those computed with the value). */
  innerGradY: number;
  /** Inner gradients ∇ₓg. */
  innerGradX: number;
  /** Outer loss values f(x, y) ({@link Oracles.outerLoss}). */
  outerValue: number;
  /** Outer gradients (∇ₓf and ∇_y f from one pass). */
  outerGrad: number;
  /** ∇²_yy g · v */
  hessianVector: number;
  /** ∇²_xy g · v */
  mixedVector: number;
}

/** The counter names of {@link OracleCounts}, in a fixed order (for reports and metrics files). */
export const ORACLE_KINDS: readonly (keyof OracleCounts)[] = [
  'innerValue',
  'innerGradY',
  'innerGradX',
  'outerValue',
  'outerGrad',
  'hessianVector',
  'mixedVector',
];

/** Counters all at zero. */
export function zeroCounts(): OracleCounts {
  return {
    innerValue: 0,
    innerGradY: 0,
    innerGradX: 0,
    outerValue: 0,
    outerGrad: 0,
    hessianVector: 0,
    mixedVector: 0,
  };
}

/**
 * What every method asks of a problem. Gradients come from reverse-mode autodiff; second-order products
 * from the chosen {@link SecondOrderStrategy}. Every call is counted.
 */
export interface Oracles {
  /** The problem whose losses the oracles evaluate. */
  readonly problem: BilevelProblem;
  /** How second-order products are formed. */
  readonly secondOrder: SecondOrderStrategy;
  /** g(x, y), counted as `innerValue`. */
  innerLoss(x: TensorTree, y: TensorTree, batch?: Batch): tf.Scalar;
  /** f(x, y), counted as `outerValue`. */
  outerLoss(x: TensorTree, y: TensorTree, batch?: Batch): tf.Scalar;
  /** ∇_y g(x, y). */
  innerGradY(x: TensorTree, y: TensorTree, batch?: Batch): TensorTree;
  /** g(x, y) and ∇_y g(x, y) from one pass. */
  innerValueAndGradY(
    x: TensorTree,
    y: TensorTree,
    batch?: Batch,
  ): {
    /** g(x, y). */
    value: tf.Scalar;
    /** ∇_y g(x, y). */
    grad: TensorTree;
  };
  /** ∇_x g(x, y). */
  innerGradX(x: TensorTree, y: TensorTree, batch?: Batch): TensorTree;
  /** f(x, y), ∇_x f and ∇_y f from one pass. */
  outerGrads(
    x: TensorTree,
    y: TensorTree,
    batch?: Batch,
  ): {
    /** f(x, y). */
    value: tf.Scalar;
    /** ∇ₓf(x, y). */
    gradX: TensorTree;
    /** ∇_y f(x, y). */
    gradY: TensorTree;
  };
  /** Hessian-vector product ∇²_yy g(x, y) · v (v and the result are y-shaped). */
  hessianVectorProduct(x: TensorTree, y: TensorTree, v: TensorTree, batch?: Batch): TensorTree;
  /** Mixed product ∇²_xy g(x, y) · v = ∇_x ⟨∇_y g(x, y), v⟩ (v is y-shaped, the result x-shaped). */
  mixedVectorProduct(x: TensorTree, y: TensorTree, v: TensorTree, batch?: Batch): TensorTree;
  /** Whether the problem evaluates a leading batch of outer variables at once. */
  readonly supportsBatchedX: boolean;
  /** ∇_y of Σ_b g(x_b, y_b): per-member inner gradients of a stacked batch (see `innerLossBatched`). */
  innerGradYBatched(xs: TensorTree, ys: TensorTree, batch?: Batch): TensorTree;
  /** Calls so far, by kind. */
  readonly counts: Readonly<OracleCounts>;
  /** Sets every counter to zero. */
  resetCounts(): void;
  /** Sets the counters (checkpoint restore, uncharged evaluation). */
  restoreCounts(counts: Readonly<OracleCounts>): void;
}

/** Options of {@link createOracles}. */
export interface OracleOptions {
  /** How second-order products are formed (default `autodiff`). */
  secondOrder?: SecondOrderStrategy;
  /**
   * Finite-difference step: the perturbation moves each coordinate of y by about `h·(1 + rms(y))`
   * (central differences of gradients; error O(h²) plus float rounding O(ε_machine / h)).
   */
  finiteDifferenceStep?: number;
}

/**
 * Gradients of `f` with respect to `wrt`, treating entries that `f` does not depend on as zero
 * (the engine's own `tf.grads` refuses them).
 */
function gradientsOf(f: () => tf.Scalar, wrt: TensorTree): { value: tf.Scalar; grads: TensorTree } {
  const names = treeNames(wrt);
  const xs = treeTensors(wrt);
  const { value, grads } = tf.engine().gradients(f, xs, undefined, true);
  const filled = grads.map((g, i) => (g == null ? tf.zerosLike(xs[i]) : g));
  return { value: value as tf.Scalar, grads: treeFromTensors(names, filled) };
}

function substitute(tree: TensorTree, tensors: readonly tf.Tensor[]): TensorTree {
  return treeFromTensors(treeNames(tree), tensors);
}

class CountingOracles implements Oracles {
  readonly secondOrder: SecondOrderStrategy;
  private readonly fdStep: number;
  private readonly c: OracleCounts = zeroCounts();

  constructor(
    readonly problem: BilevelProblem,
    options: OracleOptions,
  ) {
    this.secondOrder = options.secondOrder ?? 'autodiff';
    this.fdStep = options.finiteDifferenceStep ?? 1e-3;
    if (!(this.fdStep > 0)) throw new Error(`finiteDifferenceStep must be > 0 (got ${this.fdStep})`);
  }

  get counts(): Readonly<OracleCounts> {
    return this.c;
  }

  get supportsBatchedX(): boolean {
    return typeof this.problem.innerLossBatched === 'function';
  }

  resetCounts(): void {
    Object.assign(this.c, zeroCounts());
  }

  restoreCounts(counts: Readonly<OracleCounts>): void {
    Object.assign(this.c, zeroCounts(), counts);
  }

  innerLoss(x: TensorTree, y: TensorTree, batch?: Batch): tf.Scalar {
    this.c.innerValue++;
    return this.problem.innerLoss(x, y, batch);
  }

  outerLoss(x: TensorTree, y: TensorTree, batch?: Batch): tf.Scalar {
    this.c.outerValue++;
    return this.problem.outerLoss(x, y, batch);
  }

  innerGradY(x: TensorTree, y: TensorTree, batch?: Batch): TensorTree {
    const { value, grad } = this.innerValueAndGradY(x, y, batch);
    value.dispose();
    return grad;
  }

  innerValueAndGradY(x: TensorTree, y: TensorTree, batch?: Batch): { value: tf.Scalar; grad: TensorTree } {
    this.c.innerGradY++;
    const names = treeNames(y);
    const ys = treeTensors(y);
    const { value, grads } = tf
      .engine()
      .gradients(() => this.problem.innerLoss(x, substitute(y, ys), batch), ys, undefined, true);
    return {
      value: value as tf.Scalar,
      grad: treeFromTensors(
        names,
        grads.map((g, i) => (g == null ? tf.zerosLike(ys[i]) : g)),
      ),
    };
  }

  innerGradX(x: TensorTree, y: TensorTree, batch?: Batch): TensorTree {
    this.c.innerGradX++;
    const { value, grads } = gradientsOf(() => this.problem.innerLoss(x, y, batch), x);
    value.dispose();
    return grads;
  }

  outerGrads(
    x: TensorTree,
    y: TensorTree,
    batch?: Batch,
  ): { value: tf.Scalar; gradX: TensorTree; gradY: TensorTree } {
    this.c.outerGrad++;
    const xNames = treeNames(x);
    const yNames = treeNames(y);
    const xs = treeTensors(x);
    const ys = treeTensors(y);
    const all = [...xs, ...ys];
    const { value, grads } = tf
      .engine()
      .gradients(() => this.problem.outerLoss(x, y, batch), all, undefined, true);
    const filled = grads.map((g, i) => (g == null ? tf.zerosLike(all[i]) : g));
    return {
      value: value as tf.Scalar,
      gradX: treeFromTensors(xNames, filled.slice(0, xs.length)),
      gradY: treeFromTensors(yNames, filled.slice(xs.length)),
    };
  }

  hessianVectorProduct(x: TensorTree, y: TensorTree, v: TensorTree, batch?: Batch): TensorTree {
    this.c.hessianVector++;
    if (this.secondOrder === 'finite-difference') {
      return this.centralDifference(y, v, (yp) => this.rawGradY(x, yp, batch));
    }
    return tf.tidy(() => {
      return gradientsOf(() => innerProduct(this.rawGradY(x, y, batch), v), y).grads;
    });
  }

  mixedVectorProduct(x: TensorTree, y: TensorTree, v: TensorTree, batch?: Batch): TensorTree {
    this.c.mixedVector++;
    if (this.secondOrder === 'finite-difference') {
      return this.centralDifference(
        y,
        v,
        (yp) => gradientsOf(() => this.problem.innerLoss(x, yp, batch), x).grads,
      );
    }
    return tf.tidy(() => {
      return gradientsOf(() => innerProduct(this.rawGradY(x, y, batch), v), x).grads;
    });
  }

  innerGradYBatched(xs: TensorTree, ys: TensorTree, batch?: Batch): TensorTree {
    const batched = this.problem.innerLossBatched;
    if (!batched) {
      throw new Error(`problem '${this.problem.name}' does not implement innerLossBatched`);
    }
    const members = treeTensors(ys)[0]?.shape[0] ?? 0;
    this.c.innerGradY += members;
    const { value, grads } = gradientsOf(
      () => tf.sum(batched.call(this.problem, xs, ys, batch)) as tf.Scalar,
      ys,
    );
    value.dispose();
    return grads;
  }

  /** ∇_y g without counting (building block of second-order products). */
  private rawGradY(x: TensorTree, y: TensorTree, batch?: Batch): TensorTree {
    // The loss value is left to the caller's tidy: disposing it here could cut a tape that an enclosing
    // gradient call still needs.
    return gradientsOf(() => this.problem.innerLoss(x, y, batch), y).grads;
  }

  /** (G(y + εv) − G(y − εv)) / 2ε with ε chosen so each coordinate of y moves by about h·(1 + rms(y)). */
  private centralDifference(y: TensorTree, v: TensorTree, G: (yp: TensorTree) => TensorTree): TensorTree {
    return tf.tidy(() => {
      const n = Math.max(1, treeSize(y));
      const rmsY = tf.div(treeNorm(y), Math.sqrt(n));
      const vNorm = tf.maximum(treeNorm(v), 1e-30);
      const eps = tf.div(tf.mul(tf.add(rmsY, 1), this.fdStep * Math.sqrt(n)), vNorm) as tf.Scalar;
      const plus = treeZip(y, v, (a, b) => tf.add(a, tf.mul(b, eps)));
      const minus = treeZip(y, v, (a, b) => tf.sub(a, tf.mul(b, eps)));
      const gp = G(plus);
      const gm = G(minus);
      const twoEps = tf.mul(eps, 2);
      return treeZip(gp, gm, (a, b) => tf.div(tf.sub(a, b), twoEps));
    });
  }
}

function innerProduct(a: TensorTree, b: TensorTree): tf.Scalar {
  const names = treeNames(a);
  const parts = names.map((n) => tf.sum(tf.mul(a[n], b[n])));
  return (parts.length === 1 ? parts[0] : tf.addN(parts)) as tf.Scalar;
}

/** Counting oracles for a problem, with the chosen second-order strategy. */
export function createOracles(problem: BilevelProblem, options: OracleOptions = {}): Oracles {
  return new CountingOracles(problem, options);
}
