import type { Batch, BatchSchedule, EstimateContext } from '@bilevel/core';

/**
 * The step's inner minibatch schedule, checked: a batch whose tensors were already disposed raises an error
 * that says so, instead of failing deep inside a kernel. (The schedule replays memoized batches; their
 * tensors must live for the whole outer step — a batch first drawn inside a `tf.tidy` is disposed with it.)
 */
export function checkedBatches(context: EstimateContext): BatchSchedule | undefined {
  const schedule = context.innerBatches;
  if (!schedule) return undefined;
  return (k: number): Batch | undefined => {
    const batch = schedule(k);
    if (batch) {
      for (const name of Object.keys(batch)) {
        if (batch[name].isDisposed) {
          throw new Error(
            `estimator: inner minibatch ${k} of outer step ${context.step} ('${name}') was already disposed; the ` +
              'batch schedule must keep the tensors of the batches it memoizes alive for the whole outer step ' +
              '(a batch first drawn inside tf.tidy — e.g. in an inner solver loop — is disposed with that tidy)',
          );
        }
      }
    }
    return batch;
  };
}
