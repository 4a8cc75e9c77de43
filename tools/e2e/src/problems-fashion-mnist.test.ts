/**
 * Hyper-cleaning and hyperparameter optimization on real Fashion-MNIST, at a reduced size (the full-size run is
 * examples/hyper-cleaning-fashion-mnist.ts). Skipped, with a message, when the data is not installed.
 */
import { createPipeline, type StepEvent } from '@bilevel/core';
import { findFashionMnist } from '@bilevel/datasets';
import '@bilevel/estimators';
import '@bilevel/problems';
import '@bilevel/solvers';

const folder = findFashionMnist();
if (!folder) {
  console.warn(
    'SKIPPED: problems on real Fashion-MNIST — data not found (apt-get install dataset-fashion-mnist, or set BILEVEL_DATA_PATH)',
  );
}

(folder ? describe : describe.skip)('problems on real Fashion-MNIST', () => {
  it('AID-CG hyper-cleaning separates clean from corrupted samples and beats the noisy-label model', () => {
    const pipeline = createPipeline({
      problem: {
        name: 'hyper-cleaning',
        options: {
          trainSamples: 400,
          validationSamples: 400,
          testSamples: 1000,
          corruptionRate: 0.5,
          innerL2: 0.001,
        },
      },
      innerSolver: { name: 'lbfgs', options: { maxIterations: 20, tolerance: 1e-4 } },
      estimator: { name: 'cg', options: { maxIterations: 20, tolerance: 1e-3 } },
      outerOptimizer: { name: 'adam', options: { learningRate: 0.3 } },
      trainer: { steps: 10, evalEvery: 1 },
    });
    const events: StepEvent[] = [];
    for (let i = 0; i < 10; i++) events.push(pipeline.trainer.stepOnce());
    const final = pipeline.trainer.finalEvaluation().metrics;
    pipeline.dispose();
    // Step 1 reports x₀ (all weights 0.5): the model fit to every noisy label.
    const noisy = events[0].metrics.testAccuracy;
    // At this small size (400 samples, 10 steps) the separation is partial; random flags would score F1 ≈ 0.5.
    expect(final.testAccuracy).toBeGreaterThan(noisy + 0.1);
    expect(final.cleanF1).toBeGreaterThan(0.65);
    expect(final.meanWeightClean).toBeGreaterThan(final.meanWeightCorrupted + 0.2);
  });

  it('hyperparameter optimization with one penalty per pixel lowers the validation loss', () => {
    const pipeline = createPipeline({
      problem: {
        name: 'hyperparameter-optimization',
        options: { dataset: 'fashion-mnist', trainSamples: 300, validationSamples: 300, testSamples: 1000 },
      },
      innerSolver: { name: 'lbfgs', options: { maxIterations: 20 } },
      estimator: { name: 'cg', options: { maxIterations: 10 } },
      outerOptimizer: { name: 'adam', options: { learningRate: 0.1 } },
      trainer: { steps: 5, evalEvery: 0 },
    });
    const events: StepEvent[] = [];
    for (let i = 0; i < 5; i++) events.push(pipeline.trainer.stepOnce());
    const final = pipeline.trainer.finalEvaluation().metrics;
    pipeline.dispose();
    expect(events[4].outerLoss).toBeLessThan(events[0].outerLoss);
    expect(final.testAccuracy).toBeGreaterThan(0.7);
  });
});
