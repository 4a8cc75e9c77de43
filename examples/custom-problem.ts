// Add a problem (docs/guide-add-problem.md): ridge regression with one L2 penalty per feature, tuned on
// validation data. The inner problem fits the weights w at penalties exp(x); the outer problem picks x so that
// w does well on held-out data — features that carry no signal should end with large penalties. Registered
// by name, then solved by the built-in solvers and estimators. Runs in a few seconds.
//
//   npx tsc -p examples/tsconfig.run.json && node examples/run-compiled.js custom-problem
import { initBackend } from '@bilevel/backend';
import {
  createPipeline,
  exp,
  inject,
  injectable,
  PLUGIN_OPTIONS,
  registerProblem,
  z,
  type BilevelProblem,
  type TensorTree,
} from '@bilevel/core';
import { makeRegression } from '@bilevel/datasets';
import '@bilevel/estimators'; // registers 'cg', …
import '@bilevel/solvers'; // registers 'lbfgs', …
import * as tf from '@tensorflow/tfjs-core';

const RidgeOptionsSchema = z
  .object({
    features: z.number().int().positive().default(20).describe('number of features d'),
    relevant: z.number().int().positive().default(5).describe('features with a nonzero true weight'),
    trainSamples: z.number().int().positive().default(30).describe('samples of the inner (training) loss'),
    validationSamples: z.number().int().positive().default(200).describe('samples of the outer loss'),
    noise: z.number().min(0).default(0.5).describe('standard deviation of the target noise'),
    seed: z.number().int().min(0).default(0).describe('seed of the data'),
  })
  .strict();
type RidgeOptions = z.output<typeof RidgeOptionsSchema>;

/**
 * Ridge regression with one penalty per feature, x ∈ ℝᵈ (log-penalties) and y = { w ∈ ℝᵈ }:
 *
 *     g(x, w) = (1/2n) ‖A w − t‖² + ½ Σ_j exp(x_j) w_j²        (training data A, t)
 *     f(x, w) = (1/2m) ‖V w − s‖²                               (validation data V, s)
 */
@injectable()
class RidgeRegressionProblem implements BilevelProblem {
  readonly name = 'ridge-regression';
  readonly mainMetric = 'validationRmse';
  readonly mainMetricHigherIsBetter = false;
  private readonly train: { a: tf.Tensor2D; t: tf.Tensor1D };
  private readonly validation: { a: tf.Tensor2D; t: tf.Tensor1D };

  constructor(@inject(PLUGIN_OPTIONS) private readonly options: RidgeOptions) {
    const { features: d, relevant, trainSamples: n, validationSamples: m, noise, seed } = options;
    const weights = Array.from({ length: d }, (_, j) => (j < relevant ? 1 : 0));
    const data = makeRegression({ samples: n + m, features: d, weights, noise, seed });
    const all = tf.tensor2d(data.inputs, [n + m, d]);
    const targets = tf.tensor1d(data.targets);
    // Created outside any tf.tidy, so these tensors live until dispose().
    this.train = { a: tf.slice(all, [0, 0], [n, d]), t: tf.slice(targets, [0], [n]) };
    this.validation = { a: tf.slice(all, [n, 0], [m, d]), t: tf.slice(targets, [n], [m]) };
    tf.dispose([all, targets]);
  }

  initialX(): TensorTree {
    return { logPenalty: tf.fill([this.options.features], Math.log(0.1)) };
  }

  initialY(): TensorTree {
    return { w: tf.zeros([this.options.features]) };
  }

  /** g(x, w); core's `exp` keeps second derivatives exact (tf.exp cannot be differentiated twice). */
  innerLoss(x: TensorTree, y: TensorTree): tf.Scalar {
    return tf.tidy(() => {
      const residual = tf.sub(tf.squeeze(tf.matMul(this.train.a, tf.reshape(y.w, [-1, 1]))), this.train.t);
      const fit = tf.div(tf.sum(tf.square(residual)), 2 * this.options.trainSamples);
      const penalty = tf.mul(0.5, tf.sum(tf.mul(exp(x.logPenalty), tf.square(y.w))));
      return tf.add(fit, penalty) as tf.Scalar;
    });
  }

  outerLoss(_x: TensorTree, y: TensorTree): tf.Scalar {
    return tf.tidy(
      () =>
        tf.div(
          tf.sum(tf.square(this.residual(this.validation, y))),
          2 * this.options.validationSamples,
        ) as tf.Scalar,
    );
  }

  evaluate(x: TensorTree, y: TensorTree): Record<string, number> {
    return tf.tidy(() => {
      const rmse = (set: { a: tf.Tensor2D; t: tf.Tensor1D }) =>
        Math.sqrt(tf.mean(tf.square(this.residual(set, y))).dataSync()[0]);
      const penalties = tf.exp(x.logPenalty).dataSync();
      const r = this.options.relevant;
      const mean = (v: ArrayLike<number>) => Array.from(v).reduce((a, b) => a + b, 0) / v.length;
      return {
        trainRmse: rmse(this.train),
        validationRmse: rmse(this.validation),
        meanPenaltyRelevant: mean(penalties.slice(0, r)),
        meanPenaltyIrrelevant: mean(penalties.slice(r)),
      };
    });
  }

  dispose(): void {
    tf.dispose([this.train.a, this.train.t, this.validation.a, this.validation.t]);
  }

  private residual(set: { a: tf.Tensor2D; t: tf.Tensor1D }, y: TensorTree): tf.Tensor1D {
    return tf.sub(tf.squeeze(tf.matMul(set.a, tf.reshape(y.w, [-1, 1]))), set.t) as tf.Tensor1D;
  }
}

registerProblem(
  'ridge-regression',
  RidgeRegressionProblem,
  RidgeOptionsSchema,
  'ridge regression, one L2 penalty per feature',
);

async function main(): Promise<void> {
  await initBackend();
  const pipeline = createPipeline({
    problem: { name: 'ridge-regression', options: { features: 20, relevant: 5 } },
    innerSolver: { name: 'lbfgs', options: { maxIterations: 30, tolerance: 1e-5 } },
    estimator: { name: 'cg', options: { maxIterations: 20 } },
    outerOptimizer: { name: 'adam', options: { learningRate: 0.2 } },
    trainer: { steps: 60, evalEvery: 20 },
  });
  pipeline.trainer.on('step', (e) => {
    if (e.metrics.validationRmse !== undefined) {
      const m = e.metrics;
      console.log(
        `step ${e.step}: validation RMSE ${m.validationRmse.toFixed(3)} (train ${m.trainRmse.toFixed(3)}), ` +
          `mean penalty: relevant features ${m.meanPenaltyRelevant.toFixed(3)}, others ${m.meanPenaltyIrrelevant.toFixed(3)}`,
      );
    }
  });
  const result = await pipeline.trainer.run();
  console.log(
    `done: ${result.steps} steps, ${result.elapsedSeconds.toFixed(1)} s, final validation RMSE ${result.finalMetrics.validationRmse.toFixed(3)}`,
  );
  pipeline.dispose();
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
