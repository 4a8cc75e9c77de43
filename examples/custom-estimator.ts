// Write and register a custom hypergradient estimator (docs/guide-custom-estimator.md): AID-NS whose step size
// is chosen automatically from the largest eigenvalue of the inner Hessian, registered in one line and then
// used by name like a built-in estimator. Runs in a few seconds.
//
//   npx tsc -p examples/tsconfig.run.json && node examples/run-compiled.js custom-estimator
import { initBackend } from '@bilevel/backend';
import {
  ConfigError,
  createPipeline,
  inject,
  injectable,
  PLUGIN_OPTIONS,
  registerEstimator,
  registry,
  tidy,
  treeFlatten,
  treeSpec,
  treeUnflatten,
  z,
  type Estimate,
  type EstimateContext,
  type HypergradientEstimator,
  type PluginState,
} from '@bilevel/core';
import {
  implicitHypergradient,
  innerHessian,
  linearSystemBatch,
  OracleCallMeter,
  outerGradients,
} from '@bilevel/estimators';
import { neumannSeries } from '@bilevel/linalg';
import '@bilevel/problems'; // registers 'quadratic', …
import type { QuadraticProblem } from '@bilevel/problems';
import '@bilevel/solvers'; // registers 'gd', …
import * as tf from '@tensorflow/tfjs-core';

/** The options, validated by the registry (unknown keys refused) before the estimator is created. */
const AutoNeumannOptionsSchema = z
  .object({
    terms: z.number().int().positive().default(20).describe('K: terms of the Neumann series'),
    powerIterations: z.number().int().positive().default(3).describe('power-iteration steps per estimate'),
  })
  .strict();
type AutoNeumannOptions = z.output<typeof AutoNeumannOptionsSchema>;

/**
 * AID-NS with η = 1/λ̂, where λ̂ ≈ λ_max(∇²_yy g) comes from power iteration warm-started from the previous
 * outer step's eigenvector:
 *
 *     u = η Σ_{k<K} (I − η∇²_yy g)^k ∇_y f,        ∇Φ ≈ ∇ₓf − ∇²ₓᵧg · u.
 *
 * Cost per estimate: powerIterations + K Hessian-vector products, one mixed product, one outer gradient.
 */
@injectable()
class AutoNeumannEstimator implements HypergradientEstimator {
  readonly name = 'auto-neumann';
  /** The eigenvector estimate, kept across outer steps as a plain array (so it fits in a checkpoint). */
  private eigenvector: Float32Array | null = null;

  constructor(@inject(PLUGIN_OPTIONS) private readonly options: AutoNeumannOptions) {}

  estimate(context: EstimateContext): Estimate {
    const meter = new OracleCallMeter(context.oracles); // counts the oracle calls of this estimate
    const { hypergradient, diagnostics } = tidy(() => {
      const batch = linearSystemBatch(context); // undefined unless the problem is stochastic
      const hessian = innerHessian(context, batch); // v ↦ ∇²_yy g(x, y_N)·v through the counted oracles
      const { gradX, gradY } = outerGradients(context); // ∇ₓf and ∇_y f at (x, y_N)
      const spec = treeSpec(gradY);
      const start =
        this.eigenvector?.length === spec.total ? this.eigenvector : context.rng.normalArray(spec.total);
      let v = tf.tensor1d(start);
      v = tf.div(v, tf.norm(v));
      let lambda = 0;
      for (let i = 0; i < this.options.powerIterations; i++) {
        const hv = treeFlatten(hessian(treeUnflatten(v, spec)));
        lambda = tf.norm(hv).dataSync()[0];
        v = tf.div(hv, lambda);
      }
      this.eigenvector = Float32Array.from(v.dataSync());
      const solution = neumannSeries(hessian, gradY, { terms: this.options.terms, stepSize: 1 / lambda });
      return {
        hypergradient: implicitHypergradient(context, gradX, solution.x, batch),
        diagnostics: { lambdaMax: lambda, relativeResidual: solution.relativeResidual },
      };
    });
    return { hypergradient, diagnostics: { ...diagnostics, ...meter.diagnostics() } };
  }

  getState(): PluginState {
    return this.eigenvector ? Array.from(this.eigenvector) : null;
  }

  setState(state: PluginState): void {
    this.eigenvector = Array.isArray(state) ? Float32Array.from(state as number[]) : null;
  }
}

// One line: from now on 'auto-neumann' is an estimator like 'cg' or 'es' — in code, and in a CLI config that
// lists this module under `plugins`.
registerEstimator(
  'auto-neumann',
  AutoNeumannEstimator,
  AutoNeumannOptionsSchema,
  'AID-NS with η = 1/λ_max(∇²_yy g)',
);

async function main(): Promise<void> {
  await initBackend();
  const described = registry.list('estimator').find((p) => p.name === 'auto-neumann');
  console.log(
    `registered: ${described?.name} — ${described?.description}; options ${described?.options.map((o) => o.name).join(', ')}`,
  );

  for (const estimator of [
    { name: 'auto-neumann', options: { terms: 20 } },
    { name: 'neumann', options: { terms: 20 } },
  ]) {
    const pipeline = createPipeline({
      problem: { name: 'quadratic', options: { dimension: 30 } },
      innerSolver: { name: 'gd', options: { stepSize: 0.5, maxIterations: 30 } },
      estimator,
      outerOptimizer: { name: 'gd', options: { learningRate: 0.5 } },
      trainer: { steps: 30 },
    });
    let early = NaN; // relative error of the 5th estimate (near x* ∇Φ → 0, and relative errors lose meaning)
    let lambda = NaN;
    pipeline.trainer.on('step', (e) => {
      // The quadratic problem has a closed-form ∇Φ, so the trainer reports each estimate's relative error.
      if (e.step === 5) early = e.metrics.hypergradientRelativeError;
      lambda = e.diagnostics.lambdaMax;
    });
    const result = await pipeline.trainer.run();
    const lambdaMax = Math.max(...(pipeline.problem as QuadraticProblem).eigenvalues);
    console.log(
      `${estimator.name}: ∇Φ relative error at step 5 ${early.toExponential(2)}, ` +
        `x error ${result.finalMetrics.xRelativeError.toExponential(2)}, ${result.oracleCalls.hessianVector} Hessian-vector products` +
        (estimator.name === 'auto-neumann'
          ? `; λ̂ = ${lambda.toFixed(4)} (true λ_max = ${lambdaMax.toFixed(4)})`
          : ''),
    );
    pipeline.dispose();
  }

  try {
    registry.create('estimator', 'auto-neumann', { terms: 0 });
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    console.log(`rejected: ${e.message}`);
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
