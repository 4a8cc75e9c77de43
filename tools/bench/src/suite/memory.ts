import * as tf from '@tensorflow/tfjs-core';

/** What a {@link MemoryMeter} saw. Bytes throughout. */
export interface MemoryReport {
  /** Resident set size when the meter started (after the problem and its data were built). */
  readonly rssStart: number;
  /** Largest resident set size sampled after an outer step. */
  readonly rssPeak: number;
  /** The process's high-water resident set size (`process.resourceUsage().maxRSS`): everything, evaluations included. */
  readonly maxRss: number;
  /** Largest `tf.memory().numBytes` sampled after an outer step (what survives a step: data, x, y, plugin state). */
  readonly tensorBytesAtSteps: number;
  /**
   * Largest `tf.memory().numBytes` at any tensor allocation during the outer steps (evaluations excluded), or
   * NaN when the engine could not be observed. numBytes counts every tensor, so a reshape or another view of
   * one buffer counts that buffer again.
   */
  readonly tensorBytesHighWater: number;
  /**
   * Largest total size of the tensor data tfjs held during the outer steps with views counted once: numBytes when
   * the meter started (the data, x, y) plus the largest growth of the distinct data buffers since; NaN when the
   * engine could not be observed.
   */
  readonly bufferBytesHighWater: number;
  /** Samples taken (one per outer step). */
  readonly samples: number;
}

interface TensorInfo {
  readonly bytes: number;
  readonly backend: unknown;
}

/** The parts of tfjs-core's engine (internal, version 4) the meter wraps. */
interface ObservableEngine {
  trackTensor: (tensor: tf.Tensor, backend: unknown) => void;
  removeDataId: (dataId: object, backend: unknown) => void;
  state: { numBytes: number; tensorInfo: WeakMap<object, TensorInfo> };
}

function observable(engine: unknown): engine is ObservableEngine {
  const e = engine as Partial<ObservableEngine>;
  return (
    typeof e.trackTensor === 'function' &&
    typeof e.removeDataId === 'function' &&
    typeof e.state?.numBytes === 'number' &&
    typeof e.state.tensorInfo?.get === 'function'
  );
}

/**
 * Samples the process's resident set size and tfjs' tensor bytes after every outer step, and keeps the
 * high-water marks of tensor bytes *within* steps by observing the tfjs engine: its `trackTensor` (every new
 * tensor) and `removeDataId` (a buffer released) are wrapped while the meter lives, at the cost of a few
 * comparisons per tensor.
 */
export class MemoryMeter {
  private readonly rssStart = process.memoryUsage.rss();
  private rssPeak = this.rssStart;
  private tensorPeakAtSteps = tf.memory().numBytes;
  private highWater = tf.memory().numBytes;
  private buffers = 0;
  private buffersHighWater = 0;
  private samples = 0;
  private measuring = false;
  private readonly restore: (() => void) | null;

  constructor() {
    const engine: unknown = tf.engine();
    if (!observable(engine)) {
      this.restore = null;
      this.highWater = NaN;
      this.buffersHighWater = NaN;
      return;
    }
    const { state } = engine;
    // The engine keeps its buffers in a WeakMap (not iterable): start from numBytes, then follow the buffers.
    this.buffers = state.numBytes;
    this.buffersHighWater = this.buffers;
    const track = engine.trackTensor;
    const remove = engine.removeDataId;
    engine.trackTensor = (tensor, backend) => {
      const isNew = !state.tensorInfo.has(tensor.dataId);
      track.call(engine, tensor, backend);
      if (isNew) this.buffers += state.tensorInfo.get(tensor.dataId)?.bytes ?? 0;
      if (this.measuring) {
        if (state.numBytes > this.highWater) this.highWater = state.numBytes;
        if (this.buffers > this.buffersHighWater) this.buffersHighWater = this.buffers;
      }
    };
    engine.removeDataId = (dataId, backend) => {
      const info = state.tensorInfo.get(dataId);
      remove.call(engine, dataId, backend);
      if (info && !state.tensorInfo.has(dataId)) this.buffers -= info.bytes;
    };
    this.restore = () => {
      engine.trackTensor = track;
      engine.removeDataId = remove;
    };
  }

  /** Turns the within-step observation on (training) or off (evaluations). */
  setMeasuring(on: boolean): void {
    this.measuring = on;
  }

  /** One sample, after an outer step. */
  sample(): void {
    this.samples++;
    this.rssPeak = Math.max(this.rssPeak, process.memoryUsage.rss());
    this.tensorPeakAtSteps = Math.max(this.tensorPeakAtSteps, tf.memory().numBytes);
  }

  report(): MemoryReport {
    return {
      rssStart: this.rssStart,
      rssPeak: this.rssPeak,
      maxRss: process.resourceUsage().maxRSS * 1024,
      tensorBytesAtSteps: this.tensorPeakAtSteps,
      tensorBytesHighWater: this.highWater,
      bufferBytesHighWater: this.buffersHighWater,
      samples: this.samples,
    };
  }

  dispose(): void {
    this.restore?.();
  }
}
