import * as tf from '@tensorflow/tfjs-core';
import {
  type Batch,
  type InnerSolveRequest,
  type InnerSolver,
  type TreeSpec,
  tidy,
  treeFlatten,
  treeSpec,
  treeUnflatten,
} from '@bilevel/core';
import type { InverseHessianOperator } from '@bilevel/linalg';
import type { StopReason, SolverResult } from './elementwise';
import { SolverDivergenceError } from './errors';
import { backtrackingArmijo, disposeTrial, strongWolfe, type TrialPoint } from './line-search';
import type { QuasiNewtonOptions } from './options';

/** Statistics of a quasi-Newton solve, beside the `SolverResult`. */
export interface QuasiNewtonResult extends SolverResult {
  /** The curvature memory of this solve (L-BFGS, SR1 or dense BFGS), owned by the result: see {@link QuasiNewtonSolver}. */
  readonly curvature: InverseHessianOperator;
  /** Pairs offered to the memory and pairs it used. */
  readonly pairsOffered: number;
  /** Pairs the memory used (curvature test passed). */
  readonly pairsAccepted: number;
  /** Iterations whose quasi-Newton direction was replaced by steepest descent (not a descent direction, or a failed line search). */
  readonly restarts: number;
}

/** What a quasi-Newton solver reports after each iteration (and once for the starting point). */
export interface IterationEvent {
  /** Iterations done so far (0 for the starting point). */
  readonly iteration: number;
  /** g(x, y) at the current point, on the iteration's batch. */
  readonly value: number;
  /** ‖∇_y g‖ at the current point. */
  readonly gradientNorm: number;
}

/** Called after each iteration; returning true stops the solve (stoppedBy 'observer'). */
export type IterationObserver = (event: IterationEvent) => boolean | void;

/** A solve request with an optional observer (traces, benchmarks, stopping at a target value). */
export interface ObservedSolveRequest extends InnerSolveRequest {
  /** Called after every iteration and once at the start; returning true stops the solve. */
  readonly onIteration?: IterationObserver;
}

/** The current iterate: flat y, its value and gradient on the batch they were computed on. */
interface Point extends TrialPoint {
  readonly batch: Batch | undefined;
}

/**
 * The loop shared by BFGS, L-BFGS and SR1, on the flattened inner variable:
 *
 *     P warm-up steps   y ← y − η∇g(y)                                 (qNBO's schedule, Fang et al. 2025)
 *     then              d = −H∇g(y),  y ← y + αd,  push (s, r) = (αd, ∇g(y₊) − ∇g(y))
 *
 * with α from the chosen line search (strong Wolfe, backtracking Armijo, or a fixed step as in qNBO).
 * Line searches need a descent direction: when ∇gᵀd ≥ 0 (SR1's H may be indefinite) or a search fails,
 * the step falls back to steepest descent −γ∇g (and positive-definite memories are cleared). On
 * minibatches, iteration k evaluates every trial point on batch k, so each pair compares gradients of the
 * same batch; the gradient is recomputed when the next batch differs.
 *
 * Every solve builds a fresh curvature memory and hands it over to its result (`result.curvature`): later
 * solves — the next outer step's, or an estimator's perturbed ones — never touch it, and whoever holds the
 * result disposes it (the trainer does, with the step). As a safety net at teardown, `releaseCurvature()` and
 * `dispose()` release the memory of the most recent solve if its owner has not (disposing twice is harmless).
 */
export abstract class QuasiNewtonSolver implements InnerSolver {
  abstract readonly name: string;
  readonly elementwise = false;
  /** Whether H stays positive definite (BFGS family): a non-descent direction then signals trouble. */
  protected abstract readonly positiveDefinite: boolean;
  private lastCurvature: InverseHessianOperator | null = null;

  constructor(
    /** The solver's validated options. */
    readonly options: QuasiNewtonOptions,
  ) {}

  get maxIterations(): number {
    return this.options.maxIterations;
  }

  protected abstract createMemory(spec: TreeSpec): InverseHessianOperator;

  /** Checks the problem size before solving (dense BFGS refuses large dimensions). */
  protected checkDimension(_spec: TreeSpec): void {}

  /** Releases the curvature memory of the most recent solve (a no-op when its owner already disposed it). */
  releaseCurvature(): void {
    this.lastCurvature?.dispose();
    this.lastCurvature = null;
  }

  /** Releases the curvature memory of the most recent solve, if still alive; the solver stays usable. */
  dispose(): void {
    this.releaseCurvature();
  }

  solve(request: ObservedSolveRequest): QuasiNewtonResult {
    const o = this.options;
    const { oracles, x, y0 } = request;
    const budget = request.maxIterations ?? o.maxIterations;
    if (!(Number.isInteger(budget) && budget >= 0)) {
      throw new Error(`inner solver '${this.name}': maxIterations must be an integer >= 0 (got ${budget})`);
    }
    const spec = treeSpec(y0);
    this.checkDimension(spec);
    const memory = this.createMemory(spec);

    /** Value, gradient and (for a direction d) slope at flat y, with one read. */
    const evaluate = (
      y: tf.Tensor1D,
      batch: Batch | undefined,
      d: tf.Tensor1D | null,
      alpha: number,
    ): Point =>
      tidy(() => {
        const { value, grad } = oracles.innerValueAndGradY(x, treeUnflatten(y, spec), batch);
        const g = treeFlatten(grad);
        const parts = [value, tf.sum(tf.square(g)), d ? tf.sum(tf.mul(g, d)) : tf.scalar(0)];
        const [f, g2, slope] = Array.from(tf.stack(parts).dataSync());
        return { alpha, y: tf.clone(y), grad: g, value: f, slope, gradientNorm: Math.sqrt(g2), batch };
      });

    let y = tidy(() => treeFlatten(y0));
    let pt: Point | null = null;
    let norm = NaN;
    let k = 0;
    let stoppedBy: StopReason = 'budget';
    let offered = 0;
    let accepted = 0;
    let restarts = 0;
    let unreported = true;
    const diverged = (quantity: string, value: number) =>
      new SolverDivergenceError(this.name, k, quantity, value);
    const dropPoint = () => {
      disposeTrial(pt);
      pt = null;
    };

    try {
      while (k < budget) {
        const batch = request.batches?.(k);
        if (!pt || pt.batch !== batch) {
          const fresh = evaluate(y, batch, null, 0);
          dropPoint();
          pt = fresh;
        }
        const cur: Point = pt;
        norm = cur.gradientNorm;
        if (!Number.isFinite(cur.value)) throw diverged('inner loss', cur.value);
        if (!Number.isFinite(norm)) throw diverged('gradient norm', norm);
        if (norm <= o.tolerance) {
          stoppedBy = 'tolerance';
          break;
        }
        // The starting point and points reached by warm-up steps are reported once evaluated.
        if (unreported && request.onIteration?.({ iteration: k, value: cur.value, gradientNorm: norm })) {
          stoppedBy = 'observer';
          break;
        }
        unreported = false;
        if (k < o.warmupSteps) {
          const next = tidy(() => tf.sub(cur.y, tf.mul(cur.grad, o.warmupStepSize)) as tf.Tensor1D);
          dropPoint();
          y.dispose();
          y = next;
          k++;
          unreported = true;
          continue;
        }
        const step = this.quasiNewtonStep(cur, memory, evaluate, k);
        restarts += step.restarted ? 1 : 0;
        if (!step.point) {
          stoppedBy = 'stalled';
          break;
        }
        const nextPt = step.point;
        offered++;
        const ok = tidy(() =>
          memory.push(tf.sub(nextPt.y, cur.y) as tf.Tensor1D, tf.sub(nextPt.grad, cur.grad) as tf.Tensor1D),
        );
        if (ok) accepted++;
        dropPoint();
        y.dispose();
        pt = nextPt;
        y = tf.clone(nextPt.y);
        k++;
        norm = nextPt.gradientNorm;
        if (!Number.isFinite(nextPt.value)) throw diverged('inner loss', nextPt.value);
        if (!Number.isFinite(norm)) throw diverged('gradient norm', norm);
        if (request.onIteration?.({ iteration: k, value: nextPt.value, gradientNorm: norm })) {
          stoppedBy = norm <= o.tolerance ? 'tolerance' : 'observer';
          break;
        }
      }
      if (stoppedBy === 'budget' && pt && norm <= o.tolerance) stoppedBy = 'tolerance';
    } catch (e) {
      dropPoint();
      y.dispose();
      memory.dispose();
      throw e;
    }
    dropPoint();
    const result = tidy(() => treeUnflatten(y, spec));
    y.dispose();
    this.lastCurvature = memory;
    return {
      y: result,
      iterations: k,
      gradientNorm: norm,
      converged: stoppedBy === 'tolerance',
      stoppedBy,
      curvature: memory,
      pairsOffered: offered,
      pairsAccepted: accepted,
      restarts,
    };
  }

  /** One quasi-Newton step from `cur`: the accepted trial point, or null when no step could be found. */
  private quasiNewtonStep(
    cur: Point,
    memory: InverseHessianOperator,
    evaluate: (y: tf.Tensor1D, batch: Batch | undefined, d: tf.Tensor1D | null, alpha: number) => Point,
    k: number,
  ): { point: Point | null; restarted: boolean } {
    const o = this.options;
    const direction = (steepest: boolean): { d: tf.Tensor1D; slope: number; norm: number } => {
      const d = tidy(() => (steepest ? tf.neg(cur.grad) : tf.neg(memory.applyFlat(cur.grad))) as tf.Tensor1D);
      const [slope, n2] = tidy(() =>
        Array.from(tf.stack([tf.sum(tf.mul(cur.grad, d)), tf.sum(tf.square(d))]).dataSync()),
      );
      return { d, slope, norm: Math.sqrt(n2) };
    };
    const search = (d: tf.Tensor1D, slope: number, alpha0: number): Point | null => {
      const trial = (alpha: number): Point => {
        const yNew = tidy(() => tf.add(cur.y, tf.mul(d, alpha)) as tf.Tensor1D);
        const p = evaluate(yNew, cur.batch, d, alpha);
        yNew.dispose();
        return p;
      };
      if (o.lineSearch === 'fixed') {
        const p = trial(o.stepSize);
        if (!Number.isFinite(p.value) || !Number.isFinite(p.gradientNorm)) {
          const lossBad = !Number.isFinite(p.value);
          disposeTrial(p);
          // The step of iteration k produced y_{k+1}.
          throw new SolverDivergenceError(
            this.name,
            k + 1,
            lossBad ? 'inner loss' : 'gradient norm',
            lossBad ? p.value : p.gradientNorm,
          );
        }
        return p;
      }
      const start = { value: cur.value, slope, alpha0 };
      const found =
        o.lineSearch === 'armijo' ? backtrackingArmijo(trial, start, o) : strongWolfe(trial, start, o);
      return found as Point | null;
    };
    // First step without curvature: keep ‖αd‖ ≤ 1 (Nocedal & Wright §3.5); afterwards try the unit step.
    const alpha0 = (norm: number) => (memory.size === 0 ? Math.min(1, 1 / norm) : 1);

    let { d, slope, norm } = direction(false);
    let restarted = false;
    const needsDescent = o.lineSearch !== 'fixed';
    if (needsDescent && !(slope < 0)) {
      d.dispose();
      if (this.positiveDefinite) memory.clear();
      ({ d, slope, norm } = direction(true));
      restarted = true;
    }
    const searchAlong = (dir: tf.Tensor1D, dirSlope: number, dirNorm: number): Point | null => {
      try {
        return search(dir, dirSlope, alpha0(dirNorm));
      } finally {
        dir.dispose();
      }
    };
    let point = searchAlong(d, slope, norm);
    if (!point && needsDescent && !restarted && memory.size > 0) {
      // The quasi-Newton direction failed: retry once along steepest descent with a fresh memory.
      memory.clear();
      restarted = true;
      ({ d, slope, norm } = direction(true));
      point = searchAlong(d, slope, norm);
    }
    return { point, restarted };
  }
}
