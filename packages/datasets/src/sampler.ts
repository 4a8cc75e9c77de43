import { Random, type RandomState } from '@bilevel/core';

/** Serializable state of a {@link MinibatchSampler} (for checkpoints). */
export interface MinibatchSamplerState {
  /** Completed epochs. */
  readonly epoch: number;
  /** Position in the current epoch's order. */
  readonly position: number;
  /** The current epoch's order of sample indices. */
  readonly order: number[];
  /** State of the sampler's random source. */
  readonly rng: RandomState;
}

/**
 * Minibatches of sample indices, epoch by epoch without replacement: each epoch is a fresh seeded
 * permutation of 0..n−1 and consecutive batches take consecutive slices of it. A batch that would cross
 * the end of an epoch takes the rest of this epoch and continues in the next one (so every batch has
 * `batchSize` distinct indices when batchSize ≤ n, and every sample is seen once per epoch).
 */
export class MinibatchSampler {
  private order: Int32Array;
  private position = 0;
  private epochCount = 0;
  private readonly rng: Random;

  constructor(
    /** Number of samples n. */
    readonly size: number,
    /** Indices per batch. */
    readonly batchSize: number,
    seed: number | Random = 0,
  ) {
    if (!Number.isInteger(size) || size < 1)
      throw new RangeError(`sampler: data size must be an integer >= 1 (got ${size})`);
    if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > size) {
      throw new RangeError(`sampler: batch size must be an integer in 1..${size} (got ${batchSize})`);
    }
    this.rng = typeof seed === 'number' ? new Random(seed) : seed;
    this.order = this.rng.permutation(size);
  }

  /** Completed epochs so far. */
  get epoch(): number {
    return this.epochCount;
  }

  /**
   * The next batch. When `rng` is given, the permutation of a new epoch is drawn from it instead of the
   * sampler's own stream (so a caller's seeded stream decides the data order).
   */
  next(rng?: Random): Int32Array {
    const out = new Int32Array(this.batchSize);
    let filled = 0;
    while (filled < this.batchSize) {
      if (this.position >= this.size) {
        // A batch crossing the epoch boundary must not repeat the indices it already took.
        this.order = (rng ?? this.rng).permutation(this.size);
        if (filled > 0) this.moveToBack(out.subarray(0, filled));
        this.position = 0;
        this.epochCount += 1;
      }
      const take = Math.min(this.batchSize - filled, this.size - this.position);
      out.set(this.order.subarray(this.position, this.position + take), filled);
      filled += take;
      this.position += take;
    }
    return out;
  }

  /** Reorders the new epoch so the indices already in the current batch come last (they stay in this epoch). */
  private moveToBack(taken: Int32Array): void {
    const used = new Set(taken);
    const front: number[] = [];
    const back: number[] = [];
    for (const i of this.order) (used.has(i) ? back : front).push(i);
    this.order = Int32Array.from([...front, ...back]);
  }

  /** The sampler's state, JSON-serializable (saved in checkpoints). */
  getState(): MinibatchSamplerState {
    return {
      epoch: this.epochCount,
      position: this.position,
      order: Array.from(this.order),
      rng: this.rng.getState(),
    };
  }

  /** Restores a state from {@link MinibatchSampler.getState}; the data size must match. */
  setState(state: MinibatchSamplerState): void {
    if (state.order.length !== this.size)
      throw new Error(`sampler state is for ${state.order.length} samples, not ${this.size}`);
    this.order = Int32Array.from(state.order);
    this.position = state.position;
    this.epochCount = state.epoch;
    this.rng.setState(state.rng);
  }
}
