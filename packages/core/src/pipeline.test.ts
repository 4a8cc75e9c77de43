import * as tf from '@tensorflow/tfjs-core';
import { container, inject, injectable } from 'tsyringe';
import { z } from 'zod';
import { ConfigError, DivergenceError } from './errors';
import type { EstimateContext, Estimate, HypergradientEstimator } from './estimator';
import { createPipeline, type PipelineSpec } from './pipeline';
import { QuadraticFixture } from './testing';
import { PLUGIN_OPTIONS, PluginRegistry, registerEstimator, registry as globalRegistry } from './registry';
import type { InnerResult, InnerSolveRequest, InnerSolver } from './solver';
import { treeAxpy, treeSub } from './tree';
import './optimizer';

/** Inner "solver" for the fixture: y = y0 + (y*(x) − y0) exactly (closed form), as a stand-in plugin. */
class ClosedFormSolver implements InnerSolver {
  readonly name = 'closed-form';
  readonly elementwise = false;
  readonly maxIterations = 1;
  solve(req: InnerSolveRequest): InnerResult {
    const p = req.oracles.problem as QuadraticFixture;
    return { y: p.innerSolution(req.x), iterations: 1, gradientNorm: 0, converged: true };
  }
}

/** ∇Φ from the fixture's own closed form, scaled: a user-defined estimator with options. */
const ScaledOptions = z
  .object({
    scale: z.number().positive().default(1),
    mode: z.enum(['closed-form', 'zero']).default('closed-form'),
    nanAtSteps: z.array(z.number().int()).default([]),
    throwAtStep: z.number().int().optional(),
  })
  .strict();
@injectable()
class ScaledClosedFormEstimator implements HypergradientEstimator {
  readonly name = 'scaled-closed-form';
  constructor(@inject(PLUGIN_OPTIONS) readonly options: z.output<typeof ScaledOptions>) {}
  estimate(ctx: EstimateContext): Estimate {
    const p = ctx.problem as QuadraticFixture;
    const g = p.hypergradient(ctx.x);
    if (ctx.step === this.options.throwAtStep) throw new Error('solver exploded');
    const scale = this.options.nanAtSteps.includes(ctx.step) ? NaN : this.options.scale;
    const h = this.options.mode === 'zero' ? treeSub(g, g) : treeAxpy(scale - 1, g, g);
    return { hypergradient: h, diagnostics: { scale: this.options.scale } };
  }
}

function makeRegistry(): PluginRegistry {
  const r = new PluginRegistry(container.createChildContainer());
  for (const def of globalRegistry.list('outerOptimizer')) {
    r.register(globalRegistry.get('outerOptimizer', def.name) as Parameters<PluginRegistry['register']>[0]);
  }
  r.register({
    kind: 'problem',
    name: 'quadratic-fixture',
    description: 'test quadratic',
    options: z
      .object({ dimension: z.number().int().positive().default(20), seed: z.number().int().default(0) })
      .strict(),
    create: (o: { dimension: number; seed: number }) =>
      new QuadraticFixture({ innerDimension: o.dimension, conditionNumber: 5, seed: o.seed }),
  });
  r.register({
    kind: 'innerSolver',
    name: 'closed-form',
    description: 'test solver',
    options: z.object({}).strict(),
    useClass: ClosedFormSolver,
  });
  // The one registration line a user writes:
  registerEstimator('scaled-closed-form', ScaledClosedFormEstimator, ScaledOptions, 'test estimator', r);
  return r;
}

const baseSpec: PipelineSpec = {
  problem: { name: 'quadratic-fixture', options: { dimension: 20 } },
  innerSolver: 'closed-form',
  estimator: 'scaled-closed-form',
  outerOptimizer: { name: 'gd', options: { learningRate: 0.5 } },
  trainer: { steps: 60, evalEvery: 0 },
  seed: 1,
};

describe('registry and createPipeline', () => {
  it('uses an estimator registered in one line by name, and reaches the closed-form optimum', async () => {
    const r = makeRegistry();
    const p = createPipeline(baseSpec, r);
    expect(p.estimator).toBeInstanceOf(ScaledClosedFormEstimator);
    const res = await p.trainer.run();
    expect(res.steps).toBe(60);
    const fix = p.problem as QuadraticFixture;
    const g = fix.hypergradientArray(p.trainer.x.x.dataSync());
    const norm = Math.sqrt(g.reduce((s, v) => s + v * v, 0));
    expect(norm).toBeLessThan(1e-4);
    p.dispose();
  });

  it('names an unknown plugin and lists the registered ones', () => {
    const r = makeRegistry();
    expect(() => createPipeline({ ...baseSpec, estimator: 'nope' }, r)).toThrow(
      /unknown estimator 'nope'; registered: scaled-closed-form/,
    );
  });

  it('names the field of an invalid option with the allowed values', () => {
    const r = makeRegistry();
    const bad = (options: Record<string, unknown>) => () =>
      createPipeline({ ...baseSpec, estimator: { name: 'scaled-closed-form', options } }, r);
    expect(bad({ scale: -1 })).toThrow(ConfigError);
    expect(bad({ scale: -1 })).toThrow(/estimator\.options\.scale: Number must be greater than 0 \(got -1\)/);
    expect(bad({ mode: 'fast' })).toThrow(
      /estimator\.options\.mode: must be one of 'closed-form', 'zero' \(got "fast"\)/,
    );
    expect(bad({ scael: 2 })).toThrow(/unknown option\(s\) 'scael'/);
    expect(() => createPipeline({ ...baseSpec, trainer: { steps: 0 } }, r)).toThrow(/trainer\.steps/);
    expect(() => createPipeline({ ...baseSpec, oracles: { secondOrder: 'magic' as 'autodiff' } }, r)).toThrow(
      /oracles\.secondOrder: must be one of 'autodiff', 'finite-difference'/,
    );
  });

  it('lists plugins with their option docs', () => {
    const r = makeRegistry();
    const est = r.list('estimator')[0];
    expect(est.name).toBe('scaled-closed-form');
    expect(est.options.map((o) => [o.name, o.default])).toEqual([
      ['scale', 1],
      ['mode', 'closed-form'],
      ['nanAtSteps', []],
      ['throwAtStep', undefined],
    ]);
  });

  it('keeps the tensor count flat over 200 trainer iterations', () => {
    const r = makeRegistry();
    const p = createPipeline(
      { ...baseSpec, outerOptimizer: { name: 'adam', options: { learningRate: 0.01 } } },
      r,
    );
    for (let i = 0; i < 5; i++) p.trainer.stepOnce();
    const before = tf.memory().numTensors;
    for (let i = 0; i < 200; i++) p.trainer.stepOnce();
    expect(tf.memory().numTensors).toBe(before);
    p.dispose();
  });

  it('gives identical metrics for the same seed and resumes exactly from a saved state', () => {
    const r = makeRegistry();
    const spec = { ...baseSpec, outerOptimizer: { name: 'momentum', options: { learningRate: 0.05 } } };
    const a = createPipeline(spec, r);
    const b = createPipeline(spec, r);
    const la = Array.from({ length: 10 }, () => a.trainer.stepOnce().outerLoss);
    const lb = Array.from({ length: 10 }, () => b.trainer.stepOnce().outerLoss);
    expect(la).toEqual(lb);
    const saved = JSON.parse(JSON.stringify(a.trainer.getState()));
    const cont = Array.from({ length: 5 }, () => a.trainer.stepOnce().outerLoss);
    const c = createPipeline(spec, r);
    c.trainer.setState(saved);
    const resumed = Array.from({ length: 5 }, () => c.trainer.stepOnce().outerLoss);
    expect(resumed).toEqual(cont);
    [a, b, c].forEach((p) => p.dispose());
  });

  it('stops on tolerance and reports non-finite estimates with the step', async () => {
    const r = makeRegistry();
    const p = createPipeline({ ...baseSpec, trainer: { steps: 500, tolerance: 1e-3 } }, r);
    const res = await p.trainer.run();
    expect(res.stoppedBy).toBe('tolerance');
    expect(res.steps).toBeLessThan(500);
    p.dispose();

    const q = createPipeline(
      { ...baseSpec, estimator: { name: 'scaled-closed-form', options: { scale: 1e300 } } },
      r,
    );
    expect(() => q.trainer.stepOnce()).toThrow(DivergenceError);
    q.dispose();
  });

  it('stops when interrupted through an AbortSignal', async () => {
    const r = makeRegistry();
    const p = createPipeline({ ...baseSpec, trainer: { steps: 1000 } }, r);
    const ac = new AbortController();
    p.trainer.on('step', (e) => {
      if (e.step === 3) ac.abort();
    });
    const res = await p.trainer.run({ signal: ac.signal });
    expect(res.stoppedBy).toBe('interrupt');
    expect(res.steps).toBe(3);
    p.dispose();
  });

  it('applies the non-finite policies: stop names the step, skip keeps x, shrink lowers the step size', () => {
    const r = makeRegistry();
    const est = { name: 'scaled-closed-form', options: { nanAtSteps: [2, 3] } };
    const stop = createPipeline({ ...baseSpec, estimator: est }, r);
    stop.trainer.stepOnce();
    stop.trainer.stepOnce();
    expect(() => stop.trainer.stepOnce()).toThrow(/hypergradient norm became NaN at outer step 3/);
    stop.dispose();

    const skip = createPipeline({ ...baseSpec, estimator: est, trainer: { onNonFinite: 'skip' } }, r);
    skip.trainer.stepOnce();
    skip.trainer.stepOnce();
    const before = Array.from(skip.trainer.x.x.dataSync());
    const ev = skip.trainer.stepOnce();
    expect(ev.skipped).toBe(true);
    expect(Array.from(skip.trainer.x.x.dataSync())).toEqual(before);
    skip.dispose();

    const shrink = createPipeline({ ...baseSpec, estimator: est, trainer: { onNonFinite: 'shrink' } }, r);
    for (let i = 0; i < 4; i++) shrink.trainer.stepOnce();
    expect((shrink.optimizer.getState?.() as { lrScale: number }).lrScale).toBeCloseTo(0.25, 10);
    shrink.dispose();

    const many = createPipeline(
      {
        ...baseSpec,
        estimator: { ...est, options: { nanAtSteps: [0, 1, 2] } },
        trainer: { onNonFinite: 'skip', maxConsecutiveSkips: 2 },
      },
      r,
    );
    many.trainer.stepOnce();
    many.trainer.stepOnce();
    expect(() => many.trainer.stepOnce()).toThrow(/at outer step 3/);
    many.dispose();
  });

  it('flags a run whose iterates blow up past the divergence bound, however short, naming the step', async () => {
    const r = makeRegistry();
    // The estimate scaled by 1e6 with step 0.5: x is multiplied by about -5e5 per step.
    const exploding = { ...baseSpec, estimator: { name: 'scaled-closed-form', options: { scale: 1e6 } } };
    // Reference: the same run with the bound out of the way, its losses and hypergradient norms.
    const free = createPipeline({ ...exploding, trainer: { steps: 3, evalEvery: 0, divergenceBound: 1e300 } }, r);
    const seen: number[] = [];
    free.trainer.on('step', (e) => seen.push(Math.max(Math.abs(e.outerLoss), e.hypergradientNorm)));
    const done = await free.trainer.run();
    free.dispose();
    expect(done.steps).toBe(3);
    expect(done.finalOuterLoss).toBeGreaterThan(1e20); // it did explode, and nothing said so
    // The first step whose loss or hypergradient passes 1e12 is the one the guarded run names (or, when only the
    // final x does, the last step).
    const firstBad = seen.findIndex((v) => v > 1e12) + 1 || 3;

    const guarded = createPipeline({ ...exploding, trainer: { steps: 3, evalEvery: 0 } }, r);
    await expect(guarded.trainer.run()).rejects.toThrow(
      new RegExp(`at outer step ${firstBad}, past the divergence bound 1000000000000 \\(trainer\\.divergenceBound\\)`),
    );
    guarded.dispose();

    // A run that blows up only on its last update is caught by the final evaluation.
    const late = createPipeline({ ...exploding, trainer: { steps: 1, evalEvery: 0 } }, r);
    const lateFree = createPipeline({ ...exploding, trainer: { steps: 1, evalEvery: 0, divergenceBound: 1e300 } }, r);
    const lateLoss = (await lateFree.trainer.run()).finalOuterLoss;
    lateFree.dispose();
    expect(Math.abs(lateLoss)).toBeGreaterThan(1e12); // its one step stays under the bound; its final x does not
    await expect(late.trainer.run()).rejects.toThrow(/outer loss at the final x reached 2\.45e\+12 at outer step 1, past the divergence bound/);
    late.dispose();

    // A run that stays under the bound finishes.
    const calm = createPipeline({ ...baseSpec, trainer: { steps: 3, evalEvery: 0 } }, r);
    await expect(calm.trainer.run()).resolves.toMatchObject({ steps: 3, stoppedBy: 'steps' });
    calm.dispose();
  });

  it('refuses infinite, NaN and oversized numbers in a spec, naming them', () => {
    const r = makeRegistry();
    const refused = (spec: PipelineSpec): string => {
      try {
        createPipeline(spec, r).dispose();
      } catch (e) {
        expect(e).toBeInstanceOf(ConfigError);
        return (e as Error).message;
      }
      throw new Error('accepted');
    };
    expect(refused({ ...baseSpec, seed: 2 ** 32 })).toMatch(/^seed: Number must be less than or equal to 4294967295 \(got 4294967296\)/);
    expect(refused({ ...baseSpec, trainer: { steps: 1e20 } })).toMatch(/^trainer\.steps: must be at most 4294967295 \(2\^32 - 1\) \(got 100000000000000000000\)/);
    expect(refused({ ...baseSpec, trainer: { timeLimitSeconds: Infinity } })).toMatch(/^trainer\.timeLimitSeconds: must be a finite number \(got Infinity\)/);
    expect(refused({ ...baseSpec, outerOptimizer: { name: 'gd', options: { learningRate: NaN } } })).toMatch(
      /^outerOptimizer\.options\.learningRate: must be a number, not NaN \(got NaN\)/,
    );
    expect(refused({ ...baseSpec, estimator: { name: 'scaled-closed-form', options: { nanAtSteps: [1, -Infinity] } } })).toMatch(
      /estimator\.options\.nanAtSteps\.1: .*\(got -Infinity\)/,
    );
  });

  it('clips the hypergradient norm', () => {
    const r = makeRegistry();
    const p = createPipeline(
      {
        ...baseSpec,
        outerOptimizer: { name: 'gd', options: { learningRate: 1 } },
        trainer: { clipNorm: 1e-3 },
      },
      r,
    );
    const x0 = Array.from(p.trainer.x.x.dataSync());
    p.trainer.stepOnce();
    const x1 = Array.from(p.trainer.x.x.dataSync());
    const moved = Math.sqrt(x1.reduce((s, v, i) => s + (v - x0[i]) ** 2, 0));
    expect(moved).toBeCloseTo(1e-3, 6);
    p.dispose();
  });

  it('wraps errors from plugins with the outer step', () => {
    const r = makeRegistry();
    const p = createPipeline(
      { ...baseSpec, estimator: { name: 'scaled-closed-form', options: { throwAtStep: 1 } } },
      r,
    );
    p.trainer.stepOnce();
    expect(() => p.trainer.stepOnce()).toThrow(/at outer step 2: solver exploded/);
    p.dispose();
  });
});
