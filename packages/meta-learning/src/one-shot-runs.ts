import type { TensorTree } from '@bilevel/core';
import type { TaskArrays } from './episodes';
import type { FewShotProblem } from './few-shot-problem';
import type { OneShotRun } from './omniglot';

/** A one-shot run as a task: support image i has label i, queries carry the labels of class_labels.txt. */
export function oneShotRunTask(run: OneShotRun): TaskArrays {
  return {
    supportImages: run.support,
    supportLabels: Int32Array.from({ length: run.classes }, (_, i) => i),
    queryImages: run.query,
    queryLabels: run.queryLabels,
  };
}

/**
 * Accuracy on the 20-way one-shot runs of Lake et al. (2015) with the problem's evaluation procedure (a head
 * fitted on the 20 support features of each run, batch norm as in `evalBatchNorm`): the runs' mean query
 * accuracy (`testAccuracy`), its 95% half-width, the query loss and the nearest-prototype accuracy.
 */
export function evaluateOneShotRuns(
  problem: FewShotProblem,
  x: TensorTree,
  runs: readonly OneShotRun[],
): Record<string, number> {
  if (runs.length === 0) throw new Error('evaluateOneShotRuns: no runs');
  const ways = runs[0].classes;
  if (runs.some((r) => r.classes !== ways)) throw new Error('evaluateOneShotRuns: runs differ in their number of classes');
  return problem.evaluateTasks(x, runs.length, ways, (start, end) => runs.slice(start, end).map(oneShotRunTask));
}
