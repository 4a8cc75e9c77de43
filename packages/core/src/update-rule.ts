import * as tf from '@tensorflow/tfjs-core';
import { type TensorTree, treeNames } from './tree';

/**
 * One iterative update on a tensor tree, split into pure `init` and `update` functions (the shape of optax's
 * gradient transformations): the rule holds no tensors of its own, its state is a tensor tree that the caller
 * owns, disposes and checkpoints. The same rule drives an inner solver (GD, momentum, Adam on y) and an outer
 * optimizer (on x), so each update is written once.
 *
 * Every rule here is elementwise: entry i of the result depends only on entry i of `params`, `grads` and
 * `state`, so B problems stacked along a leading axis are updated together by one call.
 */
export interface UpdateRule {
  /** The rule's name (`gd`, `momentum`, `adam`). */
  readonly name: string;
  /** The state for a starting point: a tree of tensors, empty for rules without state. */
  init(params: TensorTree): TensorTree;
  /**
   * The next point and state from `params`, their gradient `grads` and `state`, at update `step` (0 for the
   * first). `scale` multiplies the step size (the trainer's divergence policy shrinks it); default 1.
   * Creates new tensors; disposes none of its arguments.
   */
  update(
    params: TensorTree,
    grads: TensorTree,
    state: TensorTree,
    step: number,
    scale?: number,
  ): {
    /** The next point. */
    params: TensorTree;
    /** The next state. */
    state: TensorTree;
  };
}

/** Settings of {@link momentumRule}. */
export interface MomentumRuleSettings {
  /** Step size α. */
  readonly learningRate: number;
  /** Heavy-ball β in v ← βv + g (0: plain gradient descent, no state). */
  readonly momentum: number;
  /** Nesterov's look-ahead: p ← p − α(g + βv) instead of p ← p − αv. */
  readonly nesterov: boolean;
}

/**
 * Gradient descent p ← p − αg, or with heavy-ball momentum (Polyak, 1964) v ← βv + g, p ← p − αv, or
 * Nesterov's variant p ← p − α(g + βv) (the form of Sutskever et al., 2013). State: `velocity/<name>` per
 * parameter, none when β = 0.
 */
export function momentumRule(settings: MomentumRuleSettings): UpdateRule {
  const { learningRate, momentum: beta, nesterov } = settings;
  if (beta === 0) {
    return {
      name: 'gd',
      init: () => ({}),
      update: (params, grads, _state, _step, scale = 1) => {
        const lr = learningRate * scale;
        const next: Record<string, tf.Tensor> = {};
        for (const n of treeNames(params)) next[n] = tf.sub(params[n], tf.mul(grads[n], lr));
        return { params: next, state: {} };
      },
    };
  }
  return {
    name: 'momentum',
    init: (params) => {
      const state: Record<string, tf.Tensor> = {};
      for (const n of treeNames(params)) state[`velocity/${n}`] = tf.zerosLike(params[n]);
      return state;
    },
    update: (params, grads, state, _step, scale = 1) => {
      const lr = learningRate * scale;
      const next: Record<string, tf.Tensor> = {};
      const velocity: Record<string, tf.Tensor> = {};
      for (const n of treeNames(params)) {
        const v = tf.add(tf.mul(stateEntry(state, 'velocity', n), beta), grads[n]);
        velocity[`velocity/${n}`] = v;
        const direction = nesterov ? tf.add(grads[n], tf.mul(v, beta)) : v;
        next[n] = tf.sub(params[n], tf.mul(direction, lr));
      }
      return { params: next, state: velocity };
    },
  };
}

/** Settings of {@link adamRule}. */
export interface AdamRuleSettings {
  /** Step size α. */
  readonly learningRate: number;
  /** Decay β₁ of the first-moment estimate. */
  readonly beta1: number;
  /** Decay β₂ of the second-moment estimate. */
  readonly beta2: number;
  /** ε added to √v̂. */
  readonly epsilon: number;
}

/**
 * Adam (Kingma & Ba, ICLR 2015) with bias correction, at update k (from 0):
 *
 *     m ← β₁m + (1 − β₁)g,   v ← β₂v + (1 − β₂)g²,   p ← p − α m̂ / (√v̂ + ε),
 *     m̂ = m / (1 − β₁^(k+1)),  v̂ = v / (1 − β₂^(k+1)).
 *
 * State: `m/<name>` and `v/<name>` per parameter.
 */
export function adamRule(settings: AdamRuleSettings): UpdateRule {
  const { learningRate, beta1: b1, beta2: b2, epsilon } = settings;
  return {
    name: 'adam',
    init: (params) => {
      const state: Record<string, tf.Tensor> = {};
      for (const n of treeNames(params)) {
        state[`m/${n}`] = tf.zerosLike(params[n]);
        state[`v/${n}`] = tf.zerosLike(params[n]);
      }
      return state;
    },
    update: (params, grads, state, step, scale = 1) => {
      const lr = learningRate * scale;
      const c1 = 1 - Math.pow(b1, step + 1);
      const c2 = 1 - Math.pow(b2, step + 1);
      const next: Record<string, tf.Tensor> = {};
      const moments: Record<string, tf.Tensor> = {};
      for (const n of treeNames(params)) {
        const g = grads[n];
        const m = tf.add(tf.mul(stateEntry(state, 'm', n), b1), tf.mul(g, 1 - b1));
        const v = tf.add(tf.mul(stateEntry(state, 'v', n), b2), tf.mul(tf.square(g), 1 - b2));
        moments[`m/${n}`] = m;
        moments[`v/${n}`] = v;
        const direction = tf.div(tf.div(m, c1), tf.add(tf.sqrt(tf.div(v, c2)), epsilon));
        next[n] = tf.sub(params[n], tf.mul(direction, lr));
      }
      return { params: next, state: moments };
    },
  };
}

/** `state[<prefix>/<name>]`, with an error naming the missing entry (a state from another rule or tree). */
function stateEntry(state: TensorTree, prefix: string, name: string): tf.Tensor {
  const t = state[`${prefix}/${name}`];
  if (!t) {
    throw new Error(
      `update rule: the state has no '${prefix}/${name}' (state entries: ${treeNames(state).join(', ') || 'none'}); ` +
        'it was not made by this rule for these parameters',
    );
  }
  return t;
}
