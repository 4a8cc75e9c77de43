/**
 * Benchmark of the evolution-strategies estimator's perturbed solves: Q inner solves at x + μu_q either
 * stacked along a leading axis and run as one batched solve, or one by one. Reports, per (d, Q), the median
 * time per estimate of both and their ratio (one-by-one / batched: > 1 means batching wins).
 */
import * as tf from '@tensorflow/tfjs-core';
import {
  Random,
  type TensorTree,
  createOracles,
  registry,
  tidy,
  treeDispose,
  treeKeep,
} from '@bilevel/core';
import { QuadraticFixture } from '@bilevel/core/testing';
import { EvolutionStrategiesEstimator } from '@bilevel/estimators';
import '@bilevel/solvers';
import { median } from './suite/stats';

export interface EsBatchingResult {
  readonly dimension: number;
  readonly directions: number;
  readonly innerIterations: number;
  /** Median milliseconds per estimate. */
  readonly batchedMs: number;
  readonly oneByOneMs: number;
  /** oneByOneMs / batchedMs. */
  readonly speedup: number;
}

export interface EsBatchingOptions {
  readonly dimensions?: readonly number[];
  readonly directions?: readonly number[];
  readonly innerIterations?: number;
  readonly repeats?: number;
  /** Inner solver to use (must be elementwise with solveBatched for the batched path). */
  readonly solver?: string;
}


export function runEsBatchingBench(options: EsBatchingOptions = {}): EsBatchingResult[] {
  const dimensions = options.dimensions ?? [20, 100];
  const directionCounts = options.directions ?? [4, 16, 64];
  const innerIterations = options.innerIterations ?? 20;
  const repeats = options.repeats ?? 5;
  const solverName = options.solver ?? 'gd';
  const results: EsBatchingResult[] = [];
  for (const d of dimensions) {
    const problem = new QuadraticFixture({ innerDimension: d, conditionNumber: 10, seed: 1 });
    const oracles = createOracles(problem);
    const solver = registry.create('innerSolver', solverName, { maxIterations: innerIterations });
    if (!solver.elementwise || !solver.solveBatched) {
      throw new Error(
        `inner solver '${solverName}' cannot solve stacked problems (elementwise with solveBatched)`,
      );
    }
    const rng = new Random(2);
    const x: TensorTree = treeKeep({ x: rng.normalTensor([d]) });
    const y0: TensorTree = treeKeep({ y: tf.zeros([d]) });
    const inner = tidy(() => solver.solve({ oracles, x, y0, maxIterations: innerIterations }));
    treeKeep(inner.y);
    for (const Q of directionCounts) {
      const time = (batchedSolves: boolean): number => {
        const es = new EvolutionStrategiesEstimator({ directions: Q, batchedSolves });
        const samples: number[] = [];
        for (let r = 0; r <= repeats; r++) {
          const t0 = performance.now();
          const est = es.estimate({ problem, oracles, x, inner, solver, y0, rng: new Random(r), step: r });
          treeDispose(est.hypergradient);
          if (r > 0) samples.push(performance.now() - t0); // the first run warms up kernels and caches
        }
        return median(samples);
      };
      const batchedMs = time(true);
      const oneByOneMs = time(false);
      results.push({
        dimension: d,
        directions: Q,
        innerIterations,
        batchedMs,
        oneByOneMs,
        speedup: oneByOneMs / batchedMs,
      });
    }
    treeDispose(x);
    treeDispose(y0);
    treeDispose(inner.y);
    problem.dispose();
  }
  return results;
}

if (require.main === module) {
  for (const r of runEsBatchingBench()) {
    console.log(
      `d=${r.dimension} Q=${r.directions} N=${r.innerIterations}: batched ${r.batchedMs.toFixed(1)} ms, ` +
        `one by one ${r.oneByOneMs.toFixed(1)} ms, ratio ${r.speedup.toFixed(2)}`,
    );
  }
}
