/**
 * One ESJ meta-training step of the full-width ResNet-12 (12.4 M parameters) on the CPU backend, with small
 * images and a tiny task: the pipeline is built by names (problem 'few-shot', inner solver 'gd', estimator
 * 'es', outer optimizer 'gd') and the step must give a finite, non-zero hypergradient that moves x.
 */
import * as tf from '@tensorflow/tfjs-core';
import { createPipeline, treeClone, treeDispose, treeSize } from '@bilevel/core';
import { treeRelativeError } from '@bilevel/core/testing';
import '@bilevel/estimators';
import '@bilevel/meta-learning';
import '@bilevel/solvers';

it('runs a ResNet-12 ESJ meta-training step (16×16 images, 2-way 1-shot, one task)', () => {
  const before = tf.memory().numTensors;
  const pipeline = createPipeline({
    problem: {
      name: 'few-shot',
      options: {
        dataset: 'synthetic',
        imageSize: 16,
        channels: 3,
        syntheticClasses: 6,
        syntheticImagesPerClass: 4,
        ways: 2,
        shots: 1,
        queries: 1,
        metaBatchSize: 1,
        evalEpisodes: 1,
        backbone: { name: 'resnet12' },
      },
    },
    innerSolver: { name: 'gd', options: { stepSize: 0.002, maxIterations: 5 } },
    estimator: { name: 'es', options: { directions: 1 } },
    outerOptimizer: { name: 'gd', options: { learningRate: 0.01 } },
    trainer: { steps: 1, warmStart: false, evalEvery: 0 },
  });
  const { trainer } = pipeline;
  expect(treeSize(trainer.x)).toBe(12_424_320);
  const x0 = treeClone(trainer.x);
  const t0 = performance.now();
  const event = trainer.stepOnce();
  const seconds = (performance.now() - t0) / 1000;
  console.log(
    `ResNet-12 ESJ step on '${tf.getBackend()}': ${seconds.toFixed(1)} s, ‖∇Φ‖ = ${event.hypergradientNorm.toExponential(3)}, ` +
      `outer loss ${event.outerLoss.toFixed(4)}, oracle calls ${JSON.stringify(event.oracleCalls)}`,
  );
  expect(Number.isFinite(event.outerLoss)).toBe(true);
  expect(event.hypergradientNorm).toBeGreaterThan(0);
  expect(Number.isFinite(event.hypergradientNorm)).toBe(true);
  expect(event.diagnostics.perturbedSolves).toBe(1);
  // x moved by α‖∇Φ‖ (gradient descent with α = 0.01).
  const moved = treeRelativeError(trainer.x, x0);
  const norm0 = Math.sqrt(Object.values(x0).reduce((s, t) => s + tf.tidy(() => tf.sum(tf.square(t)).dataSync()[0]), 0));
  expect(moved * norm0).toBeCloseTo(0.01 * event.hypergradientNorm, 3);
  treeDispose(x0);
  pipeline.dispose();
  expect(tf.memory().numTensors).toBe(before);
});
