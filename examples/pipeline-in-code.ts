// Compose a pipeline in code (docs/guide-pipeline.md): qNBO's quadratic toy problem solved with AID-CG and
// with ESJ, chosen by name with validated options; progress from the trainer's events; final metrics and the
// cost in oracle calls. Runs in a few seconds on any backend.
//
//   npx tsc -p examples/tsconfig.run.json && node examples/run-compiled.js pipeline-in-code
import { initBackend } from '@bilevel/backend';
import { ConfigError, createPipeline, type PipelineSpec } from '@bilevel/core';
import '@bilevel/estimators'; // registers 'es', 'qnbo', 'cg', 'neumann', 'fixed-point', 'itd', 'exact'
import '@bilevel/problems'; // registers 'quadratic', 'hyper-representation', 'hyperparameter-optimization', 'hyper-cleaning'
import '@bilevel/solvers'; // registers 'gd', 'adam', 'bfgs', 'lbfgs', 'sr1'

async function main(): Promise<void> {
  await initBackend(); // tensorflow (if installed) > cpu-blas > wasm > cpu; BILEVEL_BACKEND overrides

  // The problem, the inner solver and the trainer settings are shared; each method brings its estimator and outer
  // step size (ESJ's estimate is noisy, so it takes smaller steps).
  const common: Omit<PipelineSpec, 'estimator'> = {
    problem: { name: 'quadratic', options: { dimension: 20 } },
    innerSolver: { name: 'gd', options: { stepSize: 0.5, maxIterations: 20 } },
    trainer: { steps: 60 },
    seed: 0,
  };
  const methods: Pick<PipelineSpec, 'estimator' | 'outerOptimizer'>[] = [
    {
      estimator: { name: 'cg', options: { maxIterations: 10 } },
      outerOptimizer: { name: 'gd', options: { learningRate: 0.5 } },
    },
    {
      estimator: { name: 'es', options: { directions: 20 } },
      outerOptimizer: { name: 'gd', options: { learningRate: 0.1 } },
    },
  ];

  for (const method of methods) {
    const pipeline = createPipeline({ ...common, ...method });
    const { name } = pipeline.estimator;
    pipeline.trainer.on('step', (e) => {
      if (e.step % 20 === 0) {
        console.log(
          `  ${name} step ${e.step}: Φ = ${e.outerLoss.toFixed(4)}, ‖x − x*‖/‖x*‖ = ${e.metrics.xRelativeError.toExponential(2)}`,
        );
      }
    });
    const result = await pipeline.trainer.run();
    const calls = Object.values(result.oracleCalls).reduce((a, b) => a + b, 0);
    console.log(
      `${name}: ${result.steps} steps in ${result.elapsedSeconds.toFixed(2)} s, stopped by ${result.stoppedBy}; ` +
        `final relative error ${result.finalMetrics.xRelativeError.toExponential(2)}, ${calls} oracle calls ` +
        `(${result.oracleCalls.hessianVector} Hessian-vector products)`,
    );
    pipeline.dispose();
  }

  // A bad option fails before anything is created, naming the field.
  try {
    createPipeline({ ...common, estimator: { name: 'cg', options: { maxIterations: -1 } } });
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    console.log(`rejected: ${e.message}`);
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
