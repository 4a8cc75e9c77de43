import * as tf from '@tensorflow/tfjs-core';
import { inject, injectable } from 'tsyringe';
import { z } from 'zod';
import type { PluginState } from './estimator';
import { PLUGIN_OPTIONS, registerOuterOptimizer } from './registry';
import { type TensorTree, treeDispose, treeFromData, treeKeep, treeToData, type TreeData } from './tree';
import { adamRule, momentumRule, type UpdateRule } from './update-rule';

/** Updates the outer variable x from a hypergradient. */
export interface OuterOptimizer {
  /** The optimizer's registered name. */
  readonly name: string;
  /** Returns the new x; neither `x` nor `gradient` is disposed. */
  step(x: TensorTree, gradient: TensorTree): TensorTree;
  /** Multiplies the step size by `factor` from now on (divergence policy 'shrink'). */
  scaleLearningRate?(factor: number): void;
  /** State carried across steps (step-size scale, moments), JSON-serializable, for checkpoints. */
  getState?(): PluginState;
  /** Restores a state from {@link OuterOptimizer.getState}. */
  setState?(state: PluginState): void;
  /** Releases tensors kept across steps (velocity, moments). */
  dispose?(): void;
}

/**
 * An outer optimizer made of an {@link UpdateRule}: it keeps the rule's state tree across outer steps and
 * checkpoints it with `getState` / `setState`, the same path for every rule. The inner solvers `gd` and `adam`
 * run the same rules on y.
 */
export class RuleOptimizer implements OuterOptimizer {
  private state: TensorTree | null = null;
  private updates = 0;
  private lrScale = 1;

  constructor(
    /** The optimizer's registered name. */
    readonly name: string,
    /** The update rule applied to x. */
    readonly rule: UpdateRule,
  ) {}

  step(x: TensorTree, gradient: TensorTree): TensorTree {
    const old = this.state ?? tf.tidy(() => this.rule.init(x));
    const out = tf.tidy(() => this.rule.update(x, gradient, old, this.updates, this.lrScale));
    treeDispose(old);
    this.state = treeKeep(out.state);
    this.updates += 1;
    return out.params;
  }

  scaleLearningRate(factor: number): void {
    this.lrScale *= factor;
  }

  /**
   * `{ t, lrScale, <group>: TreeData, … }`: the update count, the step-size factor, and the rule's state tree
   * grouped by the prefix of its names (`m` and `v` of Adam, `velocity` of momentum; nothing for gd). This
   * is also the form the outer optimizers of earlier versions saved, so their checkpoints resume.
   */
  getState(): PluginState {
    const saved: Record<string, unknown> = { t: this.updates, lrScale: this.lrScale };
    if (this.state) {
      const data = treeToData(this.state);
      for (const name of Object.keys(data)) {
        const cut = name.indexOf('/');
        const group = name.slice(0, cut);
        const entries = (saved[group] ?? {}) as Record<string, TreeData[string]>;
        entries[name.slice(cut + 1)] = data[name];
        saved[group] = entries;
      }
    }
    return saved;
  }

  /** Restores a state from {@link RuleOptimizer.getState}. */
  setState(saved: PluginState): void {
    const s = (saved ?? {}) as Record<string, unknown>;
    if (typeof s.lrScale !== 'number') {
      throw new Error(
        `outer optimizer '${this.name}': the saved state has no step-size scale (lrScale); it is not an optimizer state`,
      );
    }
    const flat: Record<string, TreeData[string]> = {};
    let groups = 0;
    for (const [group, entries] of Object.entries(s)) {
      if (group === 't' || group === 'lrScale' || entries === null) continue;
      if (typeof entries !== 'object') {
        throw new Error(`outer optimizer '${this.name}': saved state entry '${group}' is not a tensor tree`);
      }
      groups++;
      for (const [n, d] of Object.entries(entries as TreeData)) flat[`${group}/${n}`] = d;
    }
    this.dispose();
    // Earlier versions of momentum saved no update count (momentum does not use it).
    this.updates = typeof s.t === 'number' ? s.t : groups > 0 ? 1 : 0;
    this.lrScale = s.lrScale;
    this.state = groups > 0 ? treeKeep(treeFromData(flat)) : null;
  }

  dispose(): void {
    treeDispose(this.state);
    this.state = null;
  }
}

/** Options of the outer `gd` optimizer. */
export const GradientDescentOptimizerOptionsSchema = z
  .object({
    learningRate: z.number().positive().default(0.1).describe('step size α in x ← x − α∇Φ'),
  })
  .strict();
/** Validated options of {@link GradientDescentOptimizer}. */
export type GradientDescentOptimizerOptions = z.output<typeof GradientDescentOptimizerOptionsSchema>;

/** Plain gradient descent: x ← x − α ∇Φ(x) ({@link momentumRule} with β = 0). */
@injectable()
export class GradientDescentOptimizer extends RuleOptimizer {
  constructor(
    /** The validated options. */
    @inject(PLUGIN_OPTIONS) readonly options: GradientDescentOptimizerOptions,
  ) {
    super('gd', momentumRule({ learningRate: options.learningRate, momentum: 0, nesterov: false }));
  }
}

/** Options of the outer `momentum` optimizer. */
export const MomentumOptimizerOptionsSchema = z
  .object({
    /** Step size α in x ← x − αv. */
    learningRate: z.number().positive().default(0.1),
    momentum: z.number().min(0).max(1).default(0.9).describe('β in v ← βv + ∇Φ'),
    /** Nesterov's look-ahead: x ← x − α(∇Φ + βv) instead of x ← x − αv. */
    nesterov: z.boolean().default(false),
  })
  .strict();
/** Validated options of {@link MomentumOptimizer}. */
export type MomentumOptimizerOptions = z.output<typeof MomentumOptimizerOptionsSchema>;

/** Heavy-ball momentum, optionally Nesterov: v ← βv + g; x ← x − α(v or g + βv) ({@link momentumRule}). */
@injectable()
export class MomentumOptimizer extends RuleOptimizer {
  constructor(
    /** The validated options. */
    @inject(PLUGIN_OPTIONS) readonly options: MomentumOptimizerOptions,
  ) {
    super('momentum', momentumRule(options));
  }
}

/** Options of the outer `adam` optimizer. */
export const AdamOptimizerOptionsSchema = z
  .object({
    /** Step size α. */
    learningRate: z.number().positive().default(0.001),
    /** Decay β₁ of the first-moment estimate. */
    beta1: z.number().min(0).lt(1).default(0.9),
    /** Decay β₂ of the second-moment estimate. */
    beta2: z.number().min(0).lt(1).default(0.999),
    /** ε added to √v̂. */
    epsilon: z.number().positive().default(1e-8),
  })
  .strict();
/** Validated options of {@link AdamOptimizer}. */
export type AdamOptimizerOptions = z.output<typeof AdamOptimizerOptionsSchema>;

/** Adam (Kingma & Ba, 2015) with bias correction ({@link adamRule}). */
@injectable()
export class AdamOptimizer extends RuleOptimizer {
  constructor(
    /** The validated options. */
    @inject(PLUGIN_OPTIONS) readonly options: AdamOptimizerOptions,
  ) {
    super('adam', adamRule(options));
  }
}

registerOuterOptimizer(
  'gd',
  GradientDescentOptimizer,
  GradientDescentOptimizerOptionsSchema,
  'gradient descent on x',
);
registerOuterOptimizer(
  'momentum',
  MomentumOptimizer,
  MomentumOptimizerOptionsSchema,
  'heavy-ball / Nesterov momentum on x',
);
registerOuterOptimizer('adam', AdamOptimizer, AdamOptimizerOptionsSchema, 'Adam on x');
