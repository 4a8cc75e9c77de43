/**
 * Data hyper-cleaning on real Fashion-MNIST — the setting of ESJ (Sow, Ji & Liang, 2022) and qNBO (Fang et
 * al., ICLR 2025).
 *
 * 5,000 training images, half of their labels replaced by a different class; 5,000 clean validation images;
 * the 10,000 test images. A multinomial logistic regression (W, b) is trained on the training set with one
 * weight σ(x_i) per sample and an L2 penalty λ = 0.001:
 *
 *     g(x, W, b) = (1/n) Σ_i σ(x_i)·CE(W a_i + b, ỹ_i) + (λ/2)‖W‖²,     f = validation cross-entropy,
 *
 * and the weights x are tuned by hypergradient steps so that the model does well on the clean validation
 * data. Corrupted samples should end with σ(x_i) < 0.5: the run reports the test accuracy and the F1 score of
 * the samples flagged clean (σ(x_i) > 0.5) against the recorded corruption.
 *
 * Methods (each for up to 200 outer steps; the settings are in METHODS below):
 * - AID-CG: warm-started inner solver, conjugate gradient on ∇²_yy g·u = ∇_y f, ∇Φ ≈ ∇ₓf − ∇²_xy g·u;
 * - qNBO (BFGS): the inner problem solved by gradient warm-up steps then quasi-Newton steps, u from BFGS
 *   pairs built along ∇_y f (subroutine B);
 * - ESJ: the response Jacobian from evolution strategies (perturbed inner solves, no second-order products).
 *
 * Needs Fashion-MNIST (`apt-get install dataset-fashion-mnist`, or BILEVEL_DATA_PATH pointing at a folder
 * that holds `fashion-mnist/`). How to run it from the repository root without installing anything:
 *
 *     npx tsc -p examples/tsconfig.run.json            # compiles this file and the packages to /tmp/bilevel-examples
 *     node examples/run-compiled.js hyper-cleaning-fashion-mnist [--methods cg,qnbo,es] [--steps 200]
 *
 * Flags: --methods (comma list of cg, qnbo, es; 'none' for the baselines alone), --steps N, --eval-every K, --backend auto|cpu|wasm|cpu-blas,
 * --outer NAME:LR (replace the outer optimizer, e.g. gd:2000 or adam:0.1), --seed N, --baselines (also
 * train the model once with every weight 0.5 — all noisy labels — and once with the true clean samples only),
 * --train N --validation N --test N (smaller instances for a quick look), --json FILE (write the results).
 */
import { initBackend } from '@bilevel/backend';
import {
  createOracles,
  createPipeline,
  type PipelineSpec,
  registry,
  type StepEvent,
  tidy,
} from '@bilevel/core';
import '@bilevel/estimators';
import '@bilevel/problems';
import type { HyperCleaningProblem } from '@bilevel/problems';
import '@bilevel/solvers';
import * as tf from '@tensorflow/tfjs-core';
import { writeFileSync } from 'node:fs';

interface Method {
  /** Name in the report. */
  readonly label: string;
  /** The pipeline without the problem (filled in from the flags). */
  readonly spec: Omit<PipelineSpec, 'problem'>;
}

/**
 * The methods and their settings. The outer variable has one entry per training sample and its
 * hypergradient entries scale like 1/n, so the outer step is taken by Adam (scale-free) on x.
 */
const METHODS: Record<string, Method> = {
  cg: {
    label: 'AID-CG',
    spec: {
      innerSolver: { name: 'lbfgs', options: { maxIterations: 20, tolerance: 1e-4 } },
      estimator: { name: 'cg', options: { maxIterations: 20, tolerance: 1e-3 } },
      outerOptimizer: { name: 'adam', options: { learningRate: 0.3 } },
    },
  },
  qnbo: {
    label: 'qNBO (BFGS)',
    spec: {
      innerSolver: {
        name: 'lbfgs',
        options: { maxIterations: 20, tolerance: 1e-4, warmupSteps: 2, warmupStepSize: 0.5 },
      },
      estimator: { name: 'qnbo', options: { update: 'bfgs', passes: 10, maxPasses: 20 } },
      outerOptimizer: { name: 'adam', options: { learningRate: 0.3 } },
    },
  },
  es: {
    label: 'ESJ',
    spec: {
      innerSolver: { name: 'gd', options: { maxIterations: 20, stepSize: 0.2 } },
      estimator: { name: 'es', options: { directions: 10, smoothing: 0.01 } },
      outerOptimizer: { name: 'adam', options: { learningRate: 0.3 } },
    },
  },
};

function flag(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

function numberFlag(name: string, fallback: number): number {
  const v = flag(name);
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new Error(`--${name} needs a number (got '${v}')`);
  return n;
}

interface MethodResult {
  readonly method: string;
  readonly steps: number;
  readonly seconds: number;
  readonly testAccuracy: number;
  readonly cleanF1: number;
  readonly cleanPrecision: number;
  readonly cleanRecall: number;
  readonly corruptedF1: number;
  /** First step at which both goals held (test accuracy ≥ 0.80, clean F1 ≥ 0.85), if any. */
  readonly goalsMetAt: number | null;
  readonly oracleCalls: Record<string, number>;
  readonly settings: Omit<PipelineSpec, 'problem'>;
}

/**
 * Test accuracy of the inner model at fixed sample weights, solved to high accuracy (L-BFGS, 300 steps): the
 * two reference points of the problem — every sample weighted 0.5 (x = 0, the starting point) and the clean
 * samples only (x_i = ±30 from the recorded corruption, σ(±30) ≈ 1 or 1e-13).
 */
function baselines(options: Record<string, unknown>): { label: string; testAccuracy: number }[] {
  const problem = registry.create('problem', 'hyper-cleaning', options) as HyperCleaningProblem;
  const oracles = createOracles(problem);
  const solver = registry.create('innerSolver', 'lbfgs', { maxIterations: 300, tolerance: 1e-5 });
  const cases: [string, (i: number) => number][] = [
    ['all samples, noisy labels (x = 0)', () => 0],
    ['clean samples only (true flags)', (i) => (problem.corrupted[i] ? -30 : 30)],
  ];
  const out = cases.map(([label, logit]) =>
    tidy(() => {
      const x = {
        sampleLogits: tf.tensor1d(Float32Array.from({ length: problem.trainSamples }, (_, i) => logit(i))),
      };
      const y0 = problem.initialY();
      const inner = solver.solve({ oracles, x, y0 });
      return { label, testAccuracy: problem.evaluate(x, inner.y).testAccuracy };
    }),
  );
  problem.dispose();
  return out;
}

async function main(): Promise<void> {
  const backend = await initBackend({ backend: (flag('backend') ?? 'auto') as 'auto' });
  console.log(`backend: ${backend.name} (${backend.reason})`);
  const steps = numberFlag('steps', 200);
  const evalEvery = numberFlag('eval-every', 10);
  const problem = {
    name: 'hyper-cleaning',
    options: {
      trainSamples: numberFlag('train', 5000),
      validationSamples: numberFlag('validation', 5000),
      testSamples: numberFlag('test', 10000),
      corruptionRate: 0.5,
      innerL2: 0.001,
      seed: numberFlag('seed', 0),
    },
  };
  if (process.argv.includes('--baselines')) {
    for (const b of baselines(problem.options))
      console.log(`baseline: ${b.label}: test accuracy ${b.testAccuracy.toFixed(4)}`);
  }
  const chosen = (flag('methods') ?? 'cg,qnbo,es').split(',').filter((m) => m !== '' && m !== 'none');
  const results: MethodResult[] = [];
  for (const key of chosen) {
    const method = METHODS[key];
    if (!method) throw new Error(`unknown method '${key}'; known: ${Object.keys(METHODS).join(', ')}`);
    const outer = flag('outer');
    const spec = outer
      ? {
          ...method.spec,
          outerOptimizer: {
            name: outer.split(':')[0],
            options: { learningRate: Number(outer.split(':')[1]) },
          },
        }
      : method.spec;
    const pipeline = createPipeline({
      ...spec,
      problem,
      trainer: { steps, evalEvery, closedFormDiagnostics: false },
      seed: 0,
    });
    let goalsMetAt: number | null = null;
    pipeline.trainer.on('step', (e: StepEvent) => {
      const m = e.metrics;
      if (m.testAccuracy === undefined) return;
      if (goalsMetAt === null && m.testAccuracy >= 0.8 && m.cleanF1 >= 0.85) goalsMetAt = e.step;
      console.log(
        `${method.label.padEnd(12)} step ${String(e.step).padStart(3)}  ${e.elapsedSeconds.toFixed(1).padStart(7)} s  ` +
          `f ${e.outerLoss.toFixed(4)}  test acc ${m.testAccuracy.toFixed(4)}  clean F1 ${m.cleanF1.toFixed(4)}  ` +
          `(P ${m.cleanPrecision.toFixed(3)}, R ${m.cleanRecall.toFixed(3)})  inner ${e.innerIterations} it, ` +
          `‖∇_y g‖ ${e.innerGradientNorm.toExponential(1)}  ‖∇Φ‖ ${e.hypergradientNorm.toExponential(2)}`,
      );
    });
    const result = await pipeline.trainer.run();
    const m = result.finalMetrics;
    results.push({
      method: method.label,
      steps: result.steps,
      seconds: result.elapsedSeconds,
      testAccuracy: m.testAccuracy,
      cleanF1: m.cleanF1,
      cleanPrecision: m.cleanPrecision,
      cleanRecall: m.cleanRecall,
      corruptedF1: m.corruptedF1,
      goalsMetAt,
      oracleCalls: { ...result.oracleCalls },
      settings: spec,
    });
    pipeline.dispose();
  }
  console.log('\nmethod        steps   seconds  test acc  clean F1  goals met at step');
  for (const r of results) {
    console.log(
      `${r.method.padEnd(12)} ${String(r.steps).padStart(6)} ${r.seconds.toFixed(0).padStart(9)} ${r.testAccuracy.toFixed(4).padStart(9)} ` +
        `${r.cleanF1.toFixed(4).padStart(9)}  ${r.goalsMetAt ?? '—'}`,
    );
  }
  const out = flag('json');
  if (out) writeFileSync(out, JSON.stringify({ backend: backend.name, problem, results }, null, 2));
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
