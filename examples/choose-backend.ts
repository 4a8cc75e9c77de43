// Choose a backend (docs/guide-backends.md): list what can run here, start the one asked for (or the fastest),
// and time one hypergradient step on it. A backend that is not installed fails with a message saying how to
// install it. Runs in a few seconds.
//
//   npx tsc -p examples/tsconfig.run.json
//   node examples/run-compiled.js choose-backend            # auto: tensorflow > cpu-blas > wasm > cpu
//   node examples/run-compiled.js choose-backend --backend wasm   # or BILEVEL_BACKEND=wasm
import {
  BACKEND_CHOICES,
  type BackendChoice,
  BackendUnavailableError,
  initBackend,
  listBackends,
} from '@bilevel/backend';
import { createPipeline } from '@bilevel/core';
import '@bilevel/estimators';
import '@bilevel/problems';
import '@bilevel/solvers';
import * as tf from '@tensorflow/tfjs-core';

async function main(): Promise<void> {
  const flag = process.argv.indexOf('--backend');
  const asked = flag > 0 ? process.argv[flag + 1] : 'auto';
  if (!(BACKEND_CHOICES as readonly string[]).includes(asked))
    throw new Error(`backend must be one of ${BACKEND_CHOICES.join(', ')}`);

  // What could run here, fastest first (nothing is started yet).
  for (const b of listBackends()) console.log(`${b.available ? '✓' : '✗'} ${b.name.padEnd(10)} ${b.reason}`);

  // A GPU needs @tensorflow/tfjs-node-gpu installed next to bilevel; without it, asking for 'tensorflow' fails.
  try {
    await initBackend({ backend: 'tensorflow', log: () => {} });
  } catch (e) {
    if (!(e instanceof BackendUnavailableError)) throw e;
    console.log(`\nasking for 'tensorflow' here: ${e.message.split(':')[0]}`);
  }

  const selection = await initBackend({
    backend: asked as BackendChoice,
    log: (line) => console.log(`\n${line}`),
  });
  console.log(`running on ${tf.getBackend()} (chosen by ${selection.chosenBy})`);

  // The same pipeline runs on every backend; only the speed differs.
  const pipeline = createPipeline({
    problem: { name: 'quadratic', options: { dimension: 400 } },
    innerSolver: { name: 'gd', options: { stepSize: 0.5, maxIterations: 50 } },
    estimator: { name: 'cg', options: { maxIterations: 10 } },
    outerOptimizer: { name: 'gd', options: { learningRate: 0.5 } },
    trainer: { steps: 10, evalEvery: 0 },
  });
  const result = await pipeline.trainer.run();
  const calls = Object.values(result.oracleCalls).reduce((a, b) => a + b, 0);
  console.log(
    `${result.steps} outer steps (${calls} oracle calls) in ${result.elapsedSeconds.toFixed(2)} s on ${tf.getBackend()}; ` +
      `‖x − x*‖/‖x*‖ = ${result.finalMetrics.xRelativeError.toExponential(2)}`,
  );
  pipeline.dispose();
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
