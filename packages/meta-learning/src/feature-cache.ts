import * as tf from '@tensorflow/tfjs-core';
import { type TensorTree, treeFromTensors, treeNames } from '@bilevel/core';
import type { Backbone } from './backbone';

/** Training-mode forward options that change the features (batch-norm groups, DropBlock seed). */
export interface CachedForwardOptions {
  /** Independent batch-norm groups along the batch axis. */
  readonly groups: number;
  /** DropBlock seed. */
  readonly seed: number;
}

/**
 * Caches training-mode features φ_x(images) of a backbone, keyed by the identity of the parameter tensors
 * and of the image tensor (tfjs tensors are immutable, and their ids are never reused).
 *
 * An inner solve of the few-shot problem evaluates g(x, y) many times at the same x and support set; only
 * the head y changes, so the backbone pass is needed once. The cached features are returned through a
 * custom-gradient op whose gradient recomputes the backbone's vector-Jacobian product
 *
 *     ∂/∂x ⟨φ_x(images), dy⟩
 *
 * by reverse-mode autodiff of a fresh forward pass, so derivatives with respect to x (∇ₓg, ∇ₓf, the mixed
 * product ∇²_xy g·v, unrolled differentiation) are exactly those of the uncached computation, and derivatives
 * that do not involve x (∇_y g, ∇²_yy g·v) never touch the backbone. Parameters held in `tf.Variable`s (whose
 * values can change in place) are never cached.
 */
export class FeatureCache {
  private readonly entries = new Map<string, tf.Tensor2D>();
  private hitCount = 0;
  private missCount = 0;

  constructor(
    /** The backbone whose features are cached. */
    readonly backbone: Backbone,
    /** Most entries kept; the least recently used is dropped. */
    readonly capacity = 8,
  ) {
    if (!(capacity >= 1)) throw new Error(`FeatureCache: capacity must be >= 1 (got ${capacity})`);
  }

  /** Cache hits and misses so far. */
  get stats(): {
    /** Lookups answered from the cache. */
    hits: number;
    /** Lookups that ran the backbone. */
    misses: number;
  } {
    return { hits: this.hitCount, misses: this.missCount };
  }

  /** Training-mode features [n, D] of images at parameters `params`, differentiable with respect to `params`. */
  features(params: TensorTree, images: tf.Tensor4D, options: CachedForwardOptions): tf.Tensor2D {
    const names = treeNames(params);
    const tensors = names.map((n) => params[n]);
    if (tensors.some((t) => t instanceof tf.Variable)) {
      return this.backbone.forward(params, images, { training: true, ...options });
    }
    const key = `${tensors.map((t) => t.id).join(',')}|${images.id}|${options.groups}|${options.seed}`;
    const backbone = this.backbone;
    const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
      const inputs = args.slice(0, names.length + 1) as tf.Tensor[];
      const ps = treeFromTensors(names, inputs.slice(0, names.length));
      const img = inputs[names.length] as tf.Tensor4D;
      let cached = this.entries.get(key);
      if (cached && !cached.isDisposed) {
        this.hitCount++;
      } else {
        this.missCount++;
        cached = tf.keep(backbone.forward(ps, img, { training: true, ...options }));
        this.insert(key, cached);
      }
      return {
        value: tf.clone(cached),
        gradFunc: (dy: tf.Tensor) => {
          const xs = inputs.slice(0, names.length);
          const grads = vectorJacobianProduct(
            () => tf.sum(tf.mul(backbone.forward(treeFromTensors(names, xs), img, { training: true, ...options }), dy)),
            xs,
          );
          return [...grads, tf.zerosLike(img)];
        },
      };
    });
    return op(...tensors, images) as tf.Tensor2D;
  }

  private insert(key: string, value: tf.Tensor2D): void {
    const old = this.entries.get(key);
    if (old) {
      this.entries.delete(key);
      old.dispose();
    }
    this.entries.set(key, value);
    while (this.entries.size > this.capacity) {
      const [first, t] = this.entries.entries().next().value as [string, tf.Tensor2D];
      this.entries.delete(first);
      t.dispose();
    }
  }

  /** Drops every cached feature tensor. */
  clear(): void {
    for (const t of this.entries.values()) t.dispose();
    this.entries.clear();
  }

  /** Releases every cached feature tensor. */
  dispose(): void {
    this.clear();
  }
}

/**
 * ∇ of a scalar function with respect to `xs`, callable from inside a custom gradient during backprop.
 * tfjs keeps one tape per outermost gradient computation: an outermost `gradients` call made while another
 * one is still backpropagating would replace that tape and then clear it. The enclosing tape is restored.
 */
function vectorJacobianProduct(f: () => tf.Scalar, xs: tf.Tensor[]): tf.Tensor[] {
  const state = tf.engine().state;
  const enclosing = state.activeTape;
  try {
    const { value, grads } = tf.engine().gradients(f, xs, undefined, true);
    value.dispose();
    return grads.map((g, i) => g ?? tf.zerosLike(xs[i]));
  } finally {
    state.activeTape = enclosing;
  }
}
