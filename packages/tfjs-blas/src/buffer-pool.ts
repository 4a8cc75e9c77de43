/**
 * Reuse of the output arrays of native kernels. A fresh `Float32Array` of a few megabytes costs more than
 * the kernel that fills it: the allocator maps new pages, the kernel's first writes fault them in one by one,
 * and every element is zero-filled before (measured: a 1e6-float Add took 1.3 ms, 0.1 ms of it arithmetic).
 * The pool keeps the arrays of disposed tensors, by length, and hands them to the next kernel that needs one
 * of that length (uninitialised: the native kernels write every element or clear their output first).
 *
 * An array is reused only while nothing else can hold it: it was made here, for a native kernel's output,
 * and since then it was never read out (`dataSync`, `data`, `bufferSync`: the engine hands out the backend's
 * own array) and never given to a JS kernel (which may keep a view of it, as Slice does). Such arrays are
 * "tainted" and left to the garbage collector. Handing out and taking back an array cost O(1); small arrays
 * are pooled too (a fresh 100-float array costs about 1 µs of allocation and zero fill, as much as the native
 * kernel that fills it).
 *
 * **How much it keeps.** The free arrays it holds stay within its budget, dropping the oldest first: twice the
 * most bytes its arrays ever took at once while in use (the peak of {@link BufferPool.liveBytes}), at least
 * `floorBytes` and at most `maxBytes`. Twice, because a step usually passes through phases whose arrays have
 * other lengths (the support and the query batch of a task, the forward and the backward pass), each of which
 * can come near the peak: with the peak alone, a few-shot ResNet-12 step (30 images at 84×84) kept handing its
 * arrays of one phase out of the pool to make room for the other's — 2 GB of fresh arrays a step, whose pages
 * the kernels then faulted in one by one (4–6 s of system time a step on 2 cores); with twice the peak it
 * allocates none after its second step, and the process's resident memory is lower than without the pool
 * (fewer arrays waiting for the garbage collector).
 */
export class BufferPool {
  /** Free arrays by length, newest last. */
  private readonly free = new Map<number, Float32Array[]>();
  /**
   * Free arrays in the order they came back, for eviction, as (array, stamp) entries from `head` on; an
   * entry is stale (skipped) when its array was handed out again since, which `stamps` tells.
   */
  private queue: { array: Float32Array; stamp: number }[] = [];
  private head = 0;
  /** The stamp each free array got when it came back (absent: handed out, or never pooled). */
  private readonly stamps = new Map<Float32Array, number>();
  private nextStamp = 0;
  private held = 0;
  private live = 0;
  private peak = 0;
  private hits = 0;
  private readonly owned = new WeakSet<ArrayBufferLike>();

  private max: number;
  private floor: number;

  constructor(
    /** Upper bound on the bytes kept for reuse. */
    maxBytes: number,
    /**
     * Arrays shorter than this are not pooled. 17 floats is the first length V8 allocates off its heap (the
     * costly kind, see kernel-utils); shorter ones are cheap to make and would be moved off by `.buffer`.
     */
    readonly minLength: number = 17,
    /** Bytes it may keep even before its arrays' peak in use reaches that much (at most `maxBytes`). */
    floorBytes: number = maxBytes,
  ) {
    this.max = maxBytes;
    this.floor = floorBytes;
  }

  /** Upper bound on the bytes kept for reuse (see {@link BufferPool.setLimits}). */
  get maxBytes(): number {
    return this.max;
  }

  /** Bytes it may keep whatever the peak in use (see {@link BufferPool.setLimits}). */
  get floorBytes(): number {
    return this.floor;
  }

  /** Bytes held for reuse. */
  get bytes(): number {
    return this.held;
  }

  /** Bytes of the arrays it handed out that are still in use (neither released nor tainted). */
  get liveBytes(): number {
    return this.live;
  }

  /** The most bytes its arrays took at once while in use. */
  get peakBytes(): number {
    return this.peak;
  }

  /** Bytes it may hold for reuse now: twice the peak in use, within [floorBytes, maxBytes]. */
  get budget(): number {
    return Math.min(this.max, Math.max(this.floor, 2 * this.peak));
  }

  /** Changes the limits; free arrays beyond the new budget are dropped at once. */
  setLimits(maxBytes: number, floorBytes: number = Math.min(this.floor, maxBytes)): void {
    if (!(maxBytes >= 0) || !(floorBytes >= 0)) {
      throw new RangeError(
        `BufferPool limits must be non-negative byte counts (got ${maxBytes}, ${floorBytes})`,
      );
    }
    this.max = maxBytes;
    this.floor = floorBytes;
    while (this.held > this.budget) this.evictOldest();
  }

  /** How many arrays were handed out again so far. */
  get reused(): number {
    return this.hits;
  }

  /** An array of `length` floats with arbitrary contents (a reused one when available). */
  alloc(length: number): Float32Array {
    if (length < this.minLength) return new Float32Array(length);
    const reused = this.free.get(length)?.pop();
    let array: Float32Array;
    if (reused) {
      this.hits++;
      this.held -= reused.byteLength;
      this.stamps.delete(reused);
      array = reused;
    } else {
      array = new Float32Array(length);
      this.owned.add(array.buffer);
    }
    this.live += array.byteLength;
    if (this.live > this.peak) this.peak = this.live;
    return array;
  }

  /** `values` may be held elsewhere from now on: never reuse it. */
  taint(values: unknown): void {
    // Arrays shorter than minLength are never pooled: skip them before touching `.buffer`, which for a small
    // typed array makes V8 move its data off the heap (a ~0.5 µs allocation on every scalar read).
    if (!ArrayBuffer.isView(values) || (values as Float32Array).length < this.minLength) return;
    if (!this.owned.delete(values.buffer)) return;
    // An array in use leaves the count (a free one cannot be read out: no tensor holds it).
    if (!this.stamps.has(values as Float32Array)) this.live -= values.buffer.byteLength;
  }

  /** The tensor that held `values` was disposed: keep the array for reuse when that is safe. */
  release(values: unknown): void {
    if (!ArrayBuffer.isView(values) || (values as Float32Array).length < this.minLength) return;
    if (!this.owned.has(values.buffer)) return;
    const array = values as Float32Array;
    if (array.byteOffset !== 0 || array.byteLength !== array.buffer.byteLength) return;
    if (this.stamps.has(array)) return;
    this.live -= array.byteLength;
    if (array.byteLength > this.budget) {
      this.owned.delete(array.buffer);
      return;
    }
    let list = this.free.get(array.length);
    if (!list) {
      list = [];
      this.free.set(array.length, list);
    }
    list.push(array);
    const stamp = this.nextStamp++;
    this.stamps.set(array, stamp);
    this.queue.push({ array, stamp });
    this.held += array.byteLength;
    const budget = this.budget;
    while (this.held > budget) this.evictOldest();
    // Stale entries pile up at the front as arrays are handed out again: drop them now and then.
    if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
    if (this.queue.length - this.head > 4 * this.stamps.size + 1024) this.compact();
  }

  /** Drops the oldest free array. */
  private evictOldest(): void {
    while (this.head < this.queue.length) {
      const { array, stamp } = this.queue[this.head++];
      if (this.stamps.get(array) !== stamp) continue;
      const same = this.free.get(array.length) as Float32Array[];
      // The oldest free array of a length is the first of its list (lists grow at the end).
      const at = same[0] === array ? 0 : same.indexOf(array);
      same.splice(at, 1);
      if (same.length === 0) this.free.delete(array.length);
      this.stamps.delete(array);
      this.held -= array.byteLength;
      this.owned.delete(array.buffer);
      return;
    }
  }

  /** Removes the stale entries of the eviction queue. */
  private compact(): void {
    this.queue = this.queue.slice(this.head).filter((e) => this.stamps.get(e.array) === e.stamp);
    this.head = 0;
  }

  /** Drops every held array. */
  clear(): void {
    this.free.clear();
    this.stamps.clear();
    this.queue = [];
    this.head = 0;
    this.held = 0;
  }
}
