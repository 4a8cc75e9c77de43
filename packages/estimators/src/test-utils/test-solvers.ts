import * as tf from '@tensorflow/tfjs-core';
import {
  type BatchSchedule,
  type InnerResult,
  type InnerSolveRequest,
  type InnerSolver,
  type TensorTree,
  tidy,
  treeNorm,
  treeStack,
  treeUnstack,
  treeZip,
} from '@bilevel/core';

/**
 * An exact inner "solver" from a closed form y*(x) (test helper: the estimators' package may not import the
 * real solvers). `solveBatched` maps the closed form over the stacked members.
 */
export class ClosedFormSolver implements InnerSolver {
  readonly name = 'closed-form';
  readonly elementwise = true;
  readonly maxIterations = 1;
  /** Every request received, for plumbing checks. */
  readonly requests: { batched: boolean; request: InnerSolveRequest }[] = [];

  constructor(private readonly solution: (x: TensorTree, batches?: BatchSchedule) => TensorTree) {}

  solve(request: InnerSolveRequest): InnerResult {
    this.requests.push({ batched: false, request });
    return { y: this.solution(request.x, request.batches), iterations: 1, gradientNorm: 0, converged: true };
  }

  solveBatched(request: InnerSolveRequest): InnerResult {
    this.requests.push({ batched: true, request });
    const y = tidy(() => treeStack(treeUnstack(request.x).map((xb) => this.solution(xb, request.batches))));
    return { y, iterations: 1, gradientNorm: 0, converged: true };
  }
}

/** Plain gradient descent y ← y − α∇_y g(x, y; batch k), N steps (test helper; elementwise, batched). */
export class GradientDescentTestSolver implements InnerSolver {
  readonly name = 'gd-test';
  readonly elementwise = true;
  calls = 0;
  batchedCalls = 0;

  constructor(
    readonly maxIterations: number,
    readonly stepSize: number,
  ) {}

  solve(request: InnerSolveRequest): InnerResult {
    this.calls++;
    return this.run(request, (x, y, k) => request.oracles.innerGradY(x, y, request.batches?.(k)));
  }

  solveBatched(request: InnerSolveRequest): InnerResult {
    this.batchedCalls++;
    return this.run(request, (x, y, k) => request.oracles.innerGradYBatched(x, y, request.batches?.(k)));
  }

  private run(
    request: InnerSolveRequest,
    grad: (x: TensorTree, y: TensorTree, k: number) => TensorTree,
  ): InnerResult {
    const N = request.maxIterations ?? this.maxIterations;
    let y = request.y0;
    let gNorm = NaN;
    for (let k = 0; k < N; k++) {
      const yk = y;
      const out = tidy(() => {
        const g = grad(request.x, yk, k);
        return {
          y: treeZip(yk, g, (a, b) => tf.sub(a, tf.mul(b, this.stepSize))),
          n: treeNorm(g).dataSync()[0],
        };
      });
      if (yk !== request.y0) Object.values(yk).forEach((t) => t.dispose());
      y = out.y;
      gNorm = out.n;
    }
    if (y === request.y0) y = tidy(() => treeZip(y, y, (a) => tf.clone(a)));
    return { y, iterations: N, gradientNorm: gNorm, converged: false };
  }
}
