import * as tf from '@tensorflow/tfjs-core';

/** Serializable state of a {@link Random}. */
export interface RandomState {
  /** The four 32-bit words of the xoshiro128** state. */
  readonly s: [number, number, number, number];
  /** The second normal deviate of the last Box–Muller pair, not yet returned (or null). */
  readonly spare: number | null;
}

function splitmix32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x9e3779b9) >>> 0;
    let z = a;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  };
}

function hashString(s: string): number {
  let h = 2166136261 >>> 0;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 16777619) >>> 0;
  }
  return h;
}

/**
 * Seeded random source (xoshiro128**, seeded by splitmix32). Every random choice of a run comes from one
 * of these, so the same seed gives the same run; `fork(label)` derives an independent stream, and the
 * state can be saved and restored for checkpoints.
 */
export class Random {
  private s: [number, number, number, number];
  private spare: number | null = null;

  constructor(seed: number | RandomState = 0) {
    if (typeof seed === 'number') {
      // Every non-negative safe integer is a seed of its own: the high bits (above 2^32) are mixed into the
      // state instead of being dropped (2^32 used to give seed 0's stream). Seeds below 2^32 keep their streams.
      if (!Number.isSafeInteger(seed) || seed < 0) {
        throw new RangeError(`Random: seed must be an integer in [0, 2^53) (got ${seed})`);
      }
      const high = Math.floor(seed / 4294967296);
      const sm = splitmix32((seed % 4294967296) ^ 0x5bd1e995);
      this.s = [sm(), sm(), sm(), sm()];
      if (high > 0) {
        const mix = splitmix32(high ^ 0x2545f491);
        for (let k = 0; k < 4; k++) this.s[k] = (this.s[k] ^ mix()) >>> 0;
      }
      if (this.s.every((v) => v === 0)) this.s[0] = 1;
    } else {
      this.s = [...seed.s] as [number, number, number, number];
      this.spare = seed.spare;
    }
  }

  /** A uniformly distributed 32-bit unsigned integer. */
  nextUint32(): number {
    const s = this.s;
    const result = Math.imul(rotl(Math.imul(s[1], 5) >>> 0, 7), 9) >>> 0;
    const t = (s[1] << 9) >>> 0;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return result;
  }

  /** Uniform on [0, 1). */
  uniform(): number {
    return this.nextUint32() / 4294967296;
  }

  /** Standard normal (Box–Muller, the second draw kept for the next call). */
  normal(): number {
    if (this.spare !== null) {
      const v = this.spare;
      this.spare = null;
      return v;
    }
    let u = 0;
    while (u <= 1e-300) u = this.uniform();
    const v = this.uniform();
    const r = Math.sqrt(-2 * Math.log(u));
    this.spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  }

  /** Integer uniform on [0, n). */
  int(n: number): number {
    if (!(n >= 1)) throw new Error(`Random.int: n must be >= 1 (got ${n})`);
    return Math.floor(this.uniform() * n);
  }

  /** A random permutation of 0..n-1 (Fisher–Yates). */
  permutation(n: number): Int32Array {
    const p = new Int32Array(n);
    for (let i = 0; i < n; i++) p[i] = i;
    for (let i = n - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const t = p[i];
      p[i] = p[j];
      p[j] = t;
    }
    return p;
  }

  /** `count` distinct indices from 0..n-1, in random order. */
  sample(n: number, count: number): Int32Array {
    if (count > n) throw new Error(`Random.sample: cannot draw ${count} distinct items from ${n}`);
    return this.permutation(n).slice(0, count);
  }

  /** `n` independent standard normal deviates. */
  normalArray(n: number): Float32Array {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = this.normal();
    return a;
  }

  /** `n` independent deviates uniform on [lo, hi). */
  uniformArray(n: number, lo = 0, hi = 1): Float32Array {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = lo + (hi - lo) * this.uniform();
    return a;
  }

  /** Tensor of i.i.d. N(mean, std²) entries. */
  normalTensor(shape: number[], mean = 0, std = 1): tf.Tensor {
    const n = shape.reduce((a, b) => a * b, 1);
    const a = this.normalArray(n);
    if (mean !== 0 || std !== 1) for (let i = 0; i < n; i++) a[i] = mean + std * a[i];
    return tf.tensor(a, shape, 'float32');
  }

  /** Tensor of i.i.d. U[lo, hi) entries. */
  uniformTensor(shape: number[], lo = 0, hi = 1): tf.Tensor {
    const n = shape.reduce((a, b) => a * b, 1);
    return tf.tensor(this.uniformArray(n, lo, hi), shape, 'float32');
  }

  /** An independent stream derived from this one and a label (this stream advances by one draw). */
  fork(label = ''): Random {
    return new Random((this.nextUint32() ^ hashString(label)) >>> 0);
  }

  /** The generator's state, JSON-serializable (saved in checkpoints). */
  getState(): RandomState {
    return { s: [...this.s] as [number, number, number, number], spare: this.spare };
  }

  /** Restores a state from {@link Random.getState}, so the sequence continues exactly. */
  setState(state: RandomState): void {
    this.s = [...state.s] as [number, number, number, number];
    this.spare = state.spare;
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}
