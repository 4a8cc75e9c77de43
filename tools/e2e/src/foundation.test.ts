/**
 * The foundation's promises, checked across packages: the walking skeleton (createPipeline on the quadratic
 * toy, d = 100, converging to the closed-form x*) and the layering of the package map. (That every package
 * declares exactly what its library code imports is checked by tools/check-packs with the same scanner.)
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { createPipeline } from '@bilevel/core';
import '@bilevel/estimators';
import '@bilevel/problems';
import '@bilevel/solvers';
import { packageImports } from '../../check-packs/package-imports';

describe('walking skeleton: the quadratic toy (d = 100) through createPipeline', () => {
  for (const estimator of ['exact', 'cg']) {
    it(`${estimator} reaches ‖x − x*‖/‖x*‖ < 1e-4 with x* = (A⁻¹ + I)⁻¹z₀ in closed form`, () => {
      const pipeline = createPipeline({
        problem: { name: 'quadratic', options: { dimension: 100, seed: 3 } },
        innerSolver: { name: 'lbfgs', options: { maxIterations: 40, tolerance: 1e-7 } },
        estimator: { name: estimator, options: estimator === 'cg' ? { maxIterations: 40, tolerance: 1e-7 } : {} },
        outerOptimizer: { name: 'gd', options: { learningRate: 0.6 } },
        trainer: { steps: 40, evalEvery: 40 },
        seed: 0,
      });
      try {
        const first = pipeline.trainer.stepOnce();
        for (let i = 1; i < 40; i++) pipeline.trainer.stepOnce();
        const final = pipeline.trainer.finalEvaluation().metrics;
        // The closed-form diagnostics of the first step: the estimate is the exact ∇Φ up to float32.
        expect(first.metrics.hypergradientCosine).toBeGreaterThan(0.99999);
        expect(final.xRelativeError).toBeLessThan(1e-4);
      } finally {
        pipeline.dispose();
      }
    });
  }
});

const root = resolve(__dirname, '..', '..', '..');
// The package map, top to bottom: a package may import only packages below it.
const LAYERS = [
  '@bilevel/cli',
  '@bilevel/distributed',
  '@bilevel/meta-learning',
  '@bilevel/problems',
  '@bilevel/datasets',
  '@bilevel/estimators',
  '@bilevel/solvers',
  '@bilevel/backend',
  '@bilevel/tfjs-blas',
  '@bilevel/core',
];

// One import scanner for the whole repository (check-packs uses it to check declared dependencies).
const packages = readdirSync(join(root, 'packages')).map((d) => {
  const dir = join(root, 'packages', d);
  const json = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name: string };
  return { name: json.name, imports: new Set(packageImports(dir).keys()) };
});

describe('the package map', () => {
  it('holds every package of the map', () => {
    expect(packages.map((p) => p.name).sort()).toEqual([...LAYERS].sort());
  });

  it.each(LAYERS)('%s imports only packages below it (and core imports no plugin)', (name) => {
    const pkg = packages.find((p) => p.name === name)!;
    const level = LAYERS.indexOf(name);
    const upward = [...pkg.imports].filter((i) => LAYERS.includes(i) && LAYERS.indexOf(i) <= level);
    expect(upward).toEqual([]);
  });
});
