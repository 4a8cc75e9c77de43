import {
  type Batch,
  type BatchSchedule,
  type BilevelProblem,
  type EstimateContext,
  type InnerSolver,
  type Oracles,
  Random,
  type TensorTree,
  tidy,
  treeDispose,
} from '@bilevel/core';

export interface ContextParts {
  readonly problem: BilevelProblem;
  readonly oracles: Oracles;
  readonly solver: InnerSolver;
  readonly x: TensorTree;
  readonly y0: TensorTree;
  readonly seed?: number;
  readonly step?: number;
  readonly innerBatches?: BatchSchedule;
  readonly outerBatch?: Batch;
  readonly maxIterations?: number;
}

/** Runs the base inner solve and builds the estimator's context, as the trainer does. */
export function makeContext(parts: ContextParts): EstimateContext & { dispose(): void } {
  const inner = tidy(() =>
    parts.solver.solve({
      oracles: parts.oracles,
      x: parts.x,
      y0: parts.y0,
      batches: parts.innerBatches,
      maxIterations: parts.maxIterations,
    }),
  );
  return {
    problem: parts.problem,
    oracles: parts.oracles,
    x: parts.x,
    inner,
    solver: parts.solver,
    y0: parts.y0,
    innerBatches: parts.innerBatches,
    outerBatch: parts.outerBatch,
    rng: new Random(parts.seed ?? 0),
    step: parts.step ?? 0,
    dispose: () => treeDispose(inner.y),
  };
}

/** The same context with a fresh random source (another draw of the estimator's randomness). */
export function withSeed(context: EstimateContext, seed: number, step = context.step): EstimateContext {
  return { ...context, rng: new Random(seed), step };
}
