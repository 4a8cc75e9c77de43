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
import { ALLOWED_IMPORTS, layeringProblems } from '../../check-packs/layers';
import { packageImports } from '../../check-packs/package-imports';

describe('walking skeleton: the quadratic toy (d = 100) through createPipeline', () => {
  for (const estimator of ['exact', 'cg']) {
    it(`${estimator} reaches ‖x − x*‖/‖x*‖ < 1e-4 with x* = (A⁻¹ + I)⁻¹z₀ in closed form`, () => {
      const pipeline = createPipeline({
        problem: { name: 'quadratic', options: { dimension: 100, seed: 3 } },
        innerSolver: { name: 'lbfgs', options: { maxIterations: 40, tolerance: 1e-7 } },
        estimator: {
          name: estimator,
          options: estimator === 'cg' ? { maxIterations: 40, tolerance: 1e-7 } : {},
        },
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

// One import scanner for the whole repository (check-packs uses it to check declared dependencies), and one
// statement of the package map (tools/check-packs/layers.js, which check-packs enforces too).
const packages = readdirSync(join(root, 'packages')).map((d) => {
  const dir = join(root, 'packages', d);
  const json = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name: string };
  return { name: json.name, imports: packageImports(dir) };
});
const MAP = Object.keys(ALLOWED_IMPORTS);

describe('the package map', () => {
  it('holds every package of the map', () => {
    expect(packages.map((p) => p.name).sort()).toEqual([...MAP].sort());
  });

  it.each(MAP)('%s imports only packages below it (and core imports no plugin)', (name) => {
    const pkg = packages.find((p) => p.name === name)!;
    expect(layeringProblems(name, pkg.imports)).toEqual([]);
  });

  it('has no cycle: every package sits above all it may import', () => {
    const depth = new Map<string, number>();
    const visit = (name: string, path: string[]): number => {
      if (path.includes(name)) throw new Error(`cycle in the package map: ${[...path, name].join(' → ')}`);
      if (!depth.has(name)) {
        depth.set(name, 1 + Math.max(-1, ...ALLOWED_IMPORTS[name].map((d) => visit(d, [...path, name]))));
      }
      return depth.get(name)!;
    };
    for (const name of MAP) visit(name, []);
    expect(depth.get('@bilevel/core')).toBe(0);
    expect(depth.get('@bilevel/linalg')).toBe(1);
    expect(depth.get('@bilevel/solvers')).toBe(2);
  });

  it('names the file and the import of an upward or sideways import', () => {
    const upward = layeringProblems('@bilevel/core', new Map([['@bilevel/linalg', 'src/trainer.ts']]));
    expect(upward).toEqual([
      'src/trainer.ts imports @bilevel/linalg, which @bilevel/core may not import (the package map allows no ' +
        '@bilevel package; see tools/check-packs/layers.js)',
    ]);
    const sideways = layeringProblems(
      '@bilevel/estimators',
      new Map([
        ['@bilevel/linalg', 'src/implicit.ts'],
        ['@bilevel/solvers', 'src/qnbo-estimator.ts'],
        ['zod', 'src/index.ts'],
      ]),
    );
    expect(sideways).toHaveLength(1);
    expect(sideways[0]).toMatch(
      /^src\/qnbo-estimator\.ts imports @bilevel\/solvers, which @bilevel\/estimators may not import/,
    );
    expect(layeringProblems('@bilevel/unknown', new Map())[0]).toMatch(/not in the package map/);
  });
});
