/**
 * Few-shot meta-learning on real Omniglot with ESJ — the meta-learning setting of ESJ (Sow, Ji & Liang,
 * NeurIPS 2022), ANIL-style, at a size that trains on a CPU in minutes.
 *
 * A Conv-4 backbone φ_x (the outer variable x) is meta-trained on the characters of the Omniglot background
 * alphabets, except a few held-out alphabets. Each outer step draws a meta-batch of 5-way 1-shot tasks; the
 * inner problem fits a linear head per task on the support features,
 *
 *     y*(x) = argmin_y Σ_b CE(φ_x(S_b) W_bᵀ + c_b, Y_b) + (λ/2)‖W_b‖²          (gradient descent, from zero)
 *
 * and the outer loss is the query cross-entropy of those heads. The hypergradient comes from ESJ: ∇ₓf plus an
 * evolution-strategies estimate of the response Jacobian from perturbed inner solves — no second-order
 * product is formed. Accuracy is measured before and after meta-training, with the same procedure: a head
 * fitted on the support features of each held-out task, then query accuracy —
 *
 * - 5-way 1-shot tasks (5 queries per class) of the held-out alphabets' characters;
 * - the 20 one-shot runs of Lake et al. (2015): 20-way 1-shot on the evaluation alphabets, which are not in
 *   the background sets at all.
 *
 * Needs the Omniglot zips (`images_background*.zip`, `all_runs.zip`) in an `omniglot/` folder found through
 * BILEVEL_DATA_PATH (or `--path`). How to run it from the repository root without installing anything:
 *
 *     npx tsc -p examples/tsconfig.run.json            # compiles this file and the packages to /tmp/bilevel-examples
 *     BILEVEL_DATA_PATH=$PWD/../shared/data node examples/run-compiled.js few-shot-omniglot
 *
 * Flags (defaults in brackets): --steps N [1000] outer steps, --minutes M [20] training time limit,
 * --backend auto|cpu|wasm|cpu-blas [auto], --filters F [32], --meta-batch B [4], --queries Q [5] training
 * queries per class, --estimator es|cg|neumann|itd|qnbo [es], --directions D [1], --smoothing μ [0.01],
 * --distribution per-tensor-unit|gaussian|sphere [per-tensor-unit] and --unbiased (ES; the default is the
 * authors' unscaled unit vector per tensor), --inner-steps K [20] and --inner-step α [0.05] (GD on the
 * heads), --lambda λ [0.01], --lr η [0.003] (Adam on x), --eval-episodes E [300], --test-alphabets a,b,… [Balinese,Early_Aramaic,Tagalog],
 * --no-rotations, --seed S [0], --progress-every N [50], --path DIR, --json FILE (write the results).
 */
import { writeFileSync } from 'node:fs';
import { initBackend } from '@bilevel/backend';
import { createOracles, registry, Trainer } from '@bilevel/core';
import '@bilevel/estimators';
import {
  Conv4Backbone,
  evaluateOneShotRuns,
  FewShotProblem,
  findOmniglot,
  loadOmniglot,
  loadOneShotRuns,
} from '@bilevel/meta-learning';
import '@bilevel/solvers';
import * as tf from '@tensorflow/tfjs-core';

function flags(argv: readonly string[]): Map<string, string> {
  const out = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) throw new Error(`unexpected argument '${a}'`);
    const next = argv[i + 1];
    if (next === undefined || next.startsWith('--')) out.set(a.slice(2), 'true');
    else {
      out.set(a.slice(2), next);
      i++;
    }
  }
  return out;
}

const KNOWN = new Set([
  'minutes', 'steps', 'backend', 'filters', 'meta-batch', 'queries', 'estimator', 'directions', 'smoothing',
  'inner-steps', 'inner-step', 'lambda', 'lr', 'eval-episodes', 'test-alphabets', 'no-rotations', 'seed',
  'progress-every', 'path', 'json', 'distribution', 'unbiased',
]);

function fmt(m: Record<string, number>): string {
  return `${(100 * m.testAccuracy).toFixed(1)}% ± ${(100 * m.testAccuracyCi95).toFixed(1)} (nearest prototype ${(100 * m.testPrototypeAccuracy).toFixed(1)}%)`;
}

async function main(): Promise<void> {
  const f = flags(process.argv.slice(3));
  for (const k of f.keys()) if (!KNOWN.has(k)) throw new Error(`unknown flag --${k}`);
  const num = (k: string, d: number): number => {
    const v = f.get(k);
    if (v === undefined) return d;
    const n = Number(v);
    if (!Number.isFinite(n)) throw new Error(`--${k} needs a number (got '${v}')`);
    return n;
  };
  const backend = await initBackend({ backend: (f.get('backend') ?? 'auto') as 'auto' });
  const path = f.get('path');
  if (!findOmniglot(path)) {
    console.error('Omniglot not found: set BILEVEL_DATA_PATH to a folder holding omniglot/ (or pass --path).');
    process.exit(2);
  }
  const seed = num('seed', 0);
  const testAlphabets = (f.get('test-alphabets') ?? 'Balinese,Early_Aramaic,Tagalog').split(',');
  let t = performance.now();
  const all = loadOmniglot({ path, imageSize: 28 });
  const { train: background, test } = all.splitByGroups(testAlphabets);
  const train = f.has('no-rotations') ? background : background.withRotations();
  const runs = loadOneShotRuns({ path, imageSize: 28 });
  const loadSeconds = (performance.now() - t) / 1000;
  console.log(
    `Omniglot: ${all.numClasses} background characters (${all.count} images) → ${background.numClasses} for ` +
      `meta-training (${train.numClasses} classes with rotations), ${test.numClasses} held out ` +
      `(${testAlphabets.join(', ')}); ${runs.length} one-shot runs; loaded in ${loadSeconds.toFixed(1)} s`,
  );

  const settings = {
    ways: 5,
    shots: 1,
    queries: num('queries', 5),
    metaBatchSize: num('meta-batch', 4),
    headWeightDecay: num('lambda', 0.01),
    evalEpisodes: num('eval-episodes', 300),
    evalQueries: 5,
    evalInnerSteps: 100,
    evalBatchSize: 20,
    seed,
  };
  const backbone = new Conv4Backbone({ filters: num('filters', 32), imageSize: 28, channels: 1 });
  const problem = new FewShotProblem({ backbone, train, test, settings });
  const estimatorName = f.get('estimator') ?? 'es';
  const estimatorOptions: Record<string, Record<string, unknown>> = {
    // ES directions as in the authors' code: a uniform unit vector per tensor, unscaled (see the ES options).
    es: {
      directions: num('directions', 1),
      smoothing: num('smoothing', 0.01),
      distribution: f.get('distribution') ?? 'per-tensor-unit',
      unbiased: f.has('unbiased'),
    },
    cg: { maxIterations: 10 },
    neumann: { terms: 10, stepSize: num('inner-step', 0.05) },
    itd: { steps: num('inner-steps', 20), stepSize: num('inner-step', 0.05) },
    qnbo: {},
  };
  if (!estimatorOptions[estimatorName]) throw new Error(`--estimator must be one of ${Object.keys(estimatorOptions).join(', ')}`);
  const solver = registry.create('innerSolver', 'gd', {
    stepSize: num('inner-step', 0.05),
    maxIterations: num('inner-steps', 20),
  });
  const estimator = registry.create('estimator', estimatorName, estimatorOptions[estimatorName]);
  const optimizer = registry.create('outerOptimizer', 'adam', { learningRate: num('lr', 0.003) });
  const minutes = num('minutes', 20);
  const trainer = new Trainer({
    problem,
    oracles: createOracles(problem),
    solver,
    estimator,
    optimizer,
    seed,
    // Every step brings new tasks: each inner solve starts from zero heads.
    options: { steps: num('steps', 1000), warmStart: false, evalEvery: 0, timeLimitSeconds: minutes * 60 },
  });
  console.log(
    `backend ${backend.name}; Conv-4 with ${backbone.options.filters} filters (${backbone.parameterCount()} parameters); ` +
      `5-way 1-shot, ${settings.queries} queries/class, ${settings.metaBatchSize} tasks/step; estimator ${estimatorName} ` +
      `${JSON.stringify(estimatorOptions[estimatorName])}; inner GD ${solver.maxIterations} steps; Adam lr ${num('lr', 0.003)}`,
  );

  t = performance.now();
  const before5 = problem.evaluate(trainer.x);
  const beforeRuns = evaluateOneShotRuns(problem, trainer.x, runs);
  const evalSeconds = (performance.now() - t) / 1000;
  console.log(`before: 5-way 1-shot ${fmt(before5)}; 20-way one-shot runs ${fmt(beforeRuns)} [${evalSeconds.toFixed(1)} s]`);

  const progressEvery = num('progress-every', 50);
  const cpu0 = process.cpuUsage();
  let lossSum = 0;
  let lossCount = 0;
  const history: { step: number; seconds: number; outerLoss: number }[] = [];
  while (trainer.step < trainer.options.steps && trainer.elapsedSeconds < minutes * 60) {
    const ev = trainer.stepOnce();
    lossSum += ev.outerLoss;
    lossCount++;
    if (ev.step % progressEvery === 0) {
      const mean = lossSum / lossCount;
      history.push({ step: ev.step, seconds: ev.elapsedSeconds, outerLoss: mean });
      console.log(
        `step ${ev.step}: ${ev.elapsedSeconds.toFixed(0)} s, mean query loss ${mean.toFixed(3)}, ‖∇Φ‖ ${ev.hypergradientNorm.toFixed(3)}, ` +
          `tensors ${tf.memory().numTensors} (${(tf.memory().numBytes / 1e6).toFixed(1)} MB), resident set ${(process.memoryUsage().rss / 1e6).toFixed(0)} MB`,
      );
      lossSum = 0;
      lossCount = 0;
    }
  }
  const trainSeconds = trainer.elapsedSeconds;
  const cpu = process.cpuUsage(cpu0);
  const trainCpuSeconds = (cpu.user + cpu.system) / 1e6;
  t = performance.now();
  const after5 = problem.evaluate(trainer.x);
  const afterRuns = evaluateOneShotRuns(problem, trainer.x, runs);
  console.log(
    `after ${trainer.step} steps: ${(trainSeconds / 60).toFixed(1)} min of training (wall clock; ` +
      `${(trainCpuSeconds / 60).toFixed(1)} min of CPU time used by this process, all threads):`,
  );
  console.log(`  5-way 1-shot on held-out characters: ${fmt(before5)} → ${fmt(after5)}`);
  console.log(`  20-way one-shot runs:                ${fmt(beforeRuns)} → ${fmt(afterRuns)}`);
  console.log(`  evaluation ${((performance.now() - t) / 1000).toFixed(1)} s; oracle calls ${JSON.stringify(trainer.oracles.counts)}`);
  const json = f.get('json');
  if (json) {
    writeFileSync(
      json,
      JSON.stringify(
        {
          backend: backend.name,
          settings,
          filters: backbone.options.filters,
          estimator: { name: estimatorName, options: estimatorOptions[estimatorName] },
          steps: trainer.step,
          trainSeconds,
          trainCpuSeconds,
          loadSeconds,
          before: { fiveWay: before5, oneShotRuns: beforeRuns },
          after: { fiveWay: after5, oneShotRuns: afterRuns },
          history,
        },
        null,
        2,
      ),
    );
  }
  trainer.dispose();
  problem.dispose();
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
