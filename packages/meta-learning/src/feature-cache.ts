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

/** What {@link FeatureCache.features} returns, beyond the features' values. */
export interface FeatureRequest {
  /** The shape of the returned features (same values, e.g. [tasks, n / tasks, D]); default [n, D]. */
  readonly shape?: number[];
  /**
   * When the lookup misses while a gradient is being computed, run the backbone on the tape (and cache a
   * copy), instead of the cached op whose gradient repeats the forward pass: for features that are
   * differentiated with respect to the parameters at their first use (the outer loss), one forward pass
   * instead of two. Features first used where only the head is differentiated should not set it (the tape
   * would record the backbone for nothing).
   */
  readonly recordOnMiss?: boolean;
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

  /**
   * Training-mode features [n, D] of images at parameters `params`, differentiable with respect to `params`.
   * See {@link FeatureRequest} for the output shape and for features that are differentiated at once.
   */
  features(params: TensorTree, images: tf.Tensor4D, options: CachedForwardOptions): tf.Tensor2D;
  features(params: TensorTree, images: tf.Tensor4D, options: CachedForwardOptions, request: FeatureRequest): tf.Tensor;
  features(
    params: TensorTree,
    images: tf.Tensor4D,
    options: CachedForwardOptions,
    request: FeatureRequest = {},
  ): tf.Tensor {
    const { shape } = request;
    const names = treeNames(params);
    const tensors = names.map((n) => params[n]);
    const direct = (keepCopy: (flat: tf.Tensor2D) => void = () => undefined) => {
      const f = this.backbone.forward(params, images, { training: true, ...options });
      keepCopy(f);
      return shape ? tf.reshape(f, shape) : f;
    };
    if (tensors.some((t) => t instanceof tf.Variable)) return direct();
    const key = `${tensors.map((t) => t.id).join(',')}|${images.id}|${options.groups}|${options.seed}`;
    if (request.recordOnMiss && tf.engine().state.gradientDepth > 0 && !this.lookup(key)) {
      // Forward pass on the tape, backpropagated directly; a copy serves later lookups.
      this.missCount++;
      return direct((flat) => this.insert(key, tf.keep(tf.clone(flat))));
    }
    const backbone = this.backbone;
    const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
      const inputs = args.slice(0, names.length + 1) as tf.Tensor[];
      const ps = treeFromTensors(names, inputs.slice(0, names.length));
      const img = inputs[names.length] as tf.Tensor4D;
      let cached = this.lookup(key);
      if (cached) {
        this.hitCount++;
      } else {
        this.missCount++;
        cached = tf.keep(backbone.forward(ps, img, { training: true, ...options }));
        this.insert(key, cached);
      }
      const flatShape = cached.shape;
      return {
        // A new tensor on the cached data (reshape and clone both share it).
        value: shape ? tf.reshape(cached, shape) : tf.clone(cached),
        gradFunc: (dy: tf.Tensor) => {
          const xs = inputs.slice(0, names.length);
          const flatDy = shape ? tf.reshape(dy, flatShape) : dy;
          const grads = vectorJacobianProduct(
            () => tf.sum(tf.mul(backbone.forward(treeFromTensors(names, xs), img, { training: true, ...options }), flatDy)),
            xs,
          );
          return [...grads, tf.zerosLike(img)];
        },
      };
    });
    return op(...tensors, images);
  }

  private lookup(key: string): tf.Tensor2D | undefined {
    const t = this.entries.get(key);
    return t && !t.isDisposed ? t : undefined;
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
