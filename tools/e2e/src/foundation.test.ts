/**
 * The foundation's promises, checked across packages: the walking skeleton (createPipeline on the quadratic
 * toy, d = 100, converging to the closed-form x*), the layering of the package map, and that every package
 * declares exactly the packages its library code imports.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { join, resolve } from 'node:path';
import { createPipeline } from '@bilevel/core';
import '@bilevel/estimators';
import '@bilevel/problems';
import '@bilevel/solvers';

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
  '@bilevel/meta-learning',
  '@bilevel/problems',
  '@bilevel/datasets',
  '@bilevel/estimators',
  '@bilevel/solvers',
  '@bilevel/backend',
  '@bilevel/tfjs-blas',
  '@bilevel/core',
];

interface Pkg {
  name: string;
  dir: string;
  deps: Set<string>;
  imports: Set<string>;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    if (statSync(p).isDirectory()) return f === 'test-utils' ? [] : sourceFiles(p);
    return /\.ts$/.test(f) && !/\.test\.ts$/.test(f) ? [p] : [];
  });
}

function packageOf(spec: string): string {
  const parts = spec.split('/');
  return spec.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0];
}

const packages: Pkg[] = readdirSync(join(root, 'packages')).map((d) => {
  const dir = join(root, 'packages', d);
  const json = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
  const imports = new Set<string>();
  for (const file of sourceFiles(join(dir, 'src'))) {
    const text = readFileSync(file, 'utf8');
    // Static imports and exports (`import type` included: declarations need the package too), and require().
    const re = /(?:^|\n)\s*(?:import|export)\s[^;]*?from\s+'([^']+)'|(?:^|\n)\s*import\s+'([^']+)'|require\('([^']+)'\)/g;
    for (const m of text.matchAll(re)) {
      const spec = m[1] ?? m[2] ?? m[3];
      if (spec.startsWith('.') || spec.startsWith('node:')) continue;
      imports.add(packageOf(spec));
    }
  }
  const deps = new Set([...Object.keys(json.dependencies ?? {}), ...Object.keys(json.peerDependencies ?? {})]);
  return { name: json.name as string, dir, deps, imports };
});
const NODE_BUILTINS = new Set(builtinModules);

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

  it.each(LAYERS)('%s declares exactly the packages its library code imports', (name) => {
    const pkg = packages.find((p) => p.name === name)!;
    const external = [...pkg.imports].filter((i) => !NODE_BUILTINS.has(i));
    const undeclared = external.filter((i) => !pkg.deps.has(i));
    const unused = [...pkg.deps].filter((d) => !pkg.imports.has(d));
    expect({ undeclared, unused }).toEqual({ undeclared: [], unused: [] });
  });
});
