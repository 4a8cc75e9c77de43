import * as tf from '@tensorflow/tfjs-core';
import { inject, injectable } from 'tsyringe';
import { z } from 'zod';
import type { PluginState } from './estimator';
import { PLUGIN_OPTIONS, registerOuterOptimizer } from './registry';
import {
  type TensorTree,
  treeDispose,
  treeFromData,
  treeKeep,
  treeMap,
  treeToData,
  treeZerosLike,
  treeZip,
  type TreeData,
} from './tree';

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

/** Options of the outer `gd` optimizer. */
export const GdOptionsSchema = z
  .object({
    learningRate: z.number().positive().default(0.1).describe('step size α in x ← x − α∇Φ'),
  })
  .strict();
/** Validated options of {@link GradientDescentOptimizer}. */
export type GdOptions = z.output<typeof GdOptionsSchema>;

/** Plain gradient descent: x ← x − α ∇Φ(x). */
@injectable()
export class GradientDescentOptimizer implements OuterOptimizer {
  readonly name = 'gd';
  private lrScale = 1;
  constructor(
    /** The validated options. */
    @inject(PLUGIN_OPTIONS) readonly options: GdOptions,
  ) {}

  step(x: TensorTree, gradient: TensorTree): TensorTree {
    const lr = this.options.learningRate * this.lrScale;
    return tf.tidy(() => treeZip(x, gradient, (a, g) => tf.sub(a, tf.mul(g, lr))));
  }

  scaleLearningRate(factor: number): void {
    this.lrScale *= factor;
  }

  getState(): PluginState {
    return { lrScale: this.lrScale };
  }

  setState(state: PluginState): void {
    this.lrScale = (state as { lrScale: number }).lrScale;
  }
}

/** Options of the outer `momentum` optimizer. */
export const MomentumOptionsSchema = z
  .object({
    /** Step size α in x ← x − αv. */
    learningRate: z.number().positive().default(0.1),
    momentum: z.number().min(0).max(1).default(0.9).describe('β in v ← βv + ∇Φ'),
    /** Nesterov's look-ahead: x ← x − α(∇Φ + βv) instead of x ← x − αv. */
    nesterov: z.boolean().default(false),
  })
  .strict();
/** Validated options of {@link MomentumOptimizer}. */
export type MomentumOptions = z.output<typeof MomentumOptionsSchema>;

/** Heavy-ball momentum, optionally Nesterov: v ← βv + g; x ← x − α(v or g + βv). */
@injectable()
export class MomentumOptimizer implements OuterOptimizer {
  readonly name = 'momentum';
  private velocity: TensorTree | null = null;
  private lrScale = 1;
  constructor(
    /** The validated options. */
    @inject(PLUGIN_OPTIONS) readonly options: MomentumOptions,
  ) {}

  step(x: TensorTree, gradient: TensorTree): TensorTree {
    const { momentum: beta, nesterov } = this.options;
    const lr = this.options.learningRate * this.lrScale;
    const old = this.velocity ?? treeZerosLike(gradient);
    const v = tf.tidy(() => treeZip(old, gradient, (vi, g) => tf.add(tf.mul(vi, beta), g)));
    treeDispose(old);
    this.velocity = treeKeep(v);
    return tf.tidy(() =>
      treeZip(x, gradient, (a, g, n) => {
        const dir = nesterov ? tf.add(g, tf.mul(v[n], beta)) : v[n];
        return tf.sub(a, tf.mul(dir, lr));
      }),
    );
  }

  scaleLearningRate(factor: number): void {
    this.lrScale *= factor;
  }

  getState(): PluginState {
    return { lrScale: this.lrScale, velocity: this.velocity ? treeToData(this.velocity) : null };
  }

  setState(state: PluginState): void {
    treeDispose(this.velocity);
    const s = state as { lrScale: number; velocity: TreeData | null };
    this.lrScale = s.lrScale;
    this.velocity = s.velocity ? treeKeep(treeFromData(s.velocity)) : null;
  }

  dispose(): void {
    treeDispose(this.velocity);
    this.velocity = null;
  }
}

/** Options of the outer `adam` optimizer. */
export const AdamOptionsSchema = z
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
export type AdamOptions = z.output<typeof AdamOptionsSchema>;

/** Adam (Kingma & Ba, 2015) with bias correction. */
@injectable()
export class AdamOptimizer implements OuterOptimizer {
  readonly name = 'adam';
  private m: TensorTree | null = null;
  private v: TensorTree | null = null;
  private t = 0;
  private lrScale = 1;
  constructor(
    /** The validated options. */
    @inject(PLUGIN_OPTIONS) readonly options: AdamOptions,
  ) {}

  step(x: TensorTree, gradient: TensorTree): TensorTree {
    const { beta1: b1, beta2: b2, epsilon } = this.options;
    const lr = this.options.learningRate * this.lrScale;
    this.t += 1;
    const m0 = this.m ?? treeZerosLike(gradient);
    const v0 = this.v ?? treeZerosLike(gradient);
    const m = tf.tidy(() => treeZip(m0, gradient, (mi, g) => tf.add(tf.mul(mi, b1), tf.mul(g, 1 - b1))));
    const v = tf.tidy(() =>
      treeZip(v0, gradient, (vi, g) => tf.add(tf.mul(vi, b2), tf.mul(tf.square(g), 1 - b2))),
    );
    treeDispose(m0);
    treeDispose(v0);
    this.m = treeKeep(m);
    this.v = treeKeep(v);
    const c1 = 1 - Math.pow(b1, this.t);
    const c2 = 1 - Math.pow(b2, this.t);
    return tf.tidy(() =>
      treeMap(x, (a, n) => {
        const mh = tf.div(m[n], c1);
        const vh = tf.div(v[n], c2);
        return tf.sub(a, tf.mul(tf.div(mh, tf.add(tf.sqrt(vh), epsilon)), lr));
      }),
    );
  }

  scaleLearningRate(factor: number): void {
    this.lrScale *= factor;
  }

  getState(): PluginState {
    return {
      t: this.t,
      lrScale: this.lrScale,
      m: this.m ? treeToData(this.m) : null,
      v: this.v ? treeToData(this.v) : null,
    };
  }

  setState(state: PluginState): void {
    this.dispose();
    const s = state as { t: number; lrScale: number; m: TreeData | null; v: TreeData | null };
    this.t = s.t;
    this.lrScale = s.lrScale;
    this.m = s.m ? treeKeep(treeFromData(s.m)) : null;
    this.v = s.v ? treeKeep(treeFromData(s.v)) : null;
  }

  dispose(): void {
    treeDispose(this.m);
    treeDispose(this.v);
    this.m = null;
    this.v = null;
  }
}

registerOuterOptimizer('gd', GradientDescentOptimizer, GdOptionsSchema, 'gradient descent on x');
registerOuterOptimizer(
  'momentum',
  MomentumOptimizer,
  MomentumOptionsSchema,
  'heavy-ball / Nesterov momentum on x',
);
registerOuterOptimizer('adam', AdamOptimizer, AdamOptionsSchema, 'Adam on x');
