/** An array made by the pool, with its state: handed out (in use) or free (in a free list since `stamp`). */
interface Slot {
  readonly array: Float32Array;
  free: boolean;
  stamp: number;
}

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
  /** Free arrays' slots by length, newest last. */
  private readonly free = new Map<number, Slot[]>();
  /**
   * The slot of every array made here that may still be reused: neither tainted nor dropped. Weak, so that the
   * array of a tensor that is garbage-collected without being disposed goes with it. One lookup here is all a
   * release costs beyond the free list (a set of owned buffers and a map of free arrays' stamps, updated on every
   * hand-out and return, took 5.5 % of a quadratic qNBO step).
   */
  private readonly slots = new WeakMap<Float32Array, Slot>();
  /**
   * Free slots in the order they came back, for eviction, with the stamp each had then (parallel arrays, from
   * `head` on); an entry is stale (skipped) when its slot was handed out again since.
   */
  private queueSlots: Slot[] = [];
  private queueStamps: number[] = [];
  private head = 0;
  private freeCount = 0;
  private nextStamp = 0;
  private held = 0;
  private live = 0;
  private peak = 0;
  private hits = 0;

  private max: number;
  private floor: number;

  constructor(
    /** Upper bound on the bytes kept for reuse. */
    maxBytes: number,
    /**
     * Arrays shorter than this are not pooled. 17 floats is the first length V8 allocates off its heap (the
     * costly kind, see kernel-utils); shorter ones are cheap to make.
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
    const slot = this.free.get(length)?.pop();
    let array: Float32Array;
    if (slot) {
      this.hits++;
      slot.free = false;
      this.freeCount--;
      array = slot.array;
      this.held -= array.byteLength;
    } else {
      array = new Float32Array(length);
      this.slots.set(array, { array, free: false, stamp: -1 });
    }
    this.live += array.byteLength;
    if (this.live > this.peak) this.peak = this.live;
    return array;
  }

  /** `values` may be held elsewhere from now on: never reuse it. */
  taint(values: unknown): void {
    if (!ArrayBuffer.isView(values) || (values as Float32Array).length < this.minLength) return;
    const slot = this.slots.get(values as Float32Array);
    if (!slot) return;
    this.slots.delete(slot.array);
    // An array in use leaves the count (a free one cannot be read out: no tensor holds it).
    if (!slot.free) this.live -= slot.array.byteLength;
  }

  /** The tensor that held `values` was disposed: keep the array for reuse when that is safe. */
  release(values: unknown): void {
    if (!ArrayBuffer.isView(values) || (values as Float32Array).length < this.minLength) return;
    // Not made here, tainted, dropped, a view of a pooled array (another object), or released already.
    const slot = this.slots.get(values as Float32Array);
    if (!slot || slot.free) return;
    const array = slot.array;
    this.live -= array.byteLength;
    if (array.byteLength > this.budget) {
      this.slots.delete(array);
      return;
    }
    let list = this.free.get(array.length);
    if (!list) {
      list = [];
      this.free.set(array.length, list);
    }
    list.push(slot);
    slot.free = true;
    slot.stamp = this.nextStamp++;
    this.freeCount++;
    this.queueSlots.push(slot);
    this.queueStamps.push(slot.stamp);
    this.held += array.byteLength;
    const budget = this.budget;
    while (this.held > budget) this.evictOldest();
    // Stale entries pile up at the front as arrays are handed out again: drop them now and then.
    if (this.head > 1024 && this.head * 2 > this.queueSlots.length) {
      this.queueSlots = this.queueSlots.slice(this.head);
      this.queueStamps = this.queueStamps.slice(this.head);
      this.head = 0;
    }
    if (this.queueSlots.length - this.head > 4 * this.freeCount + 1024) this.compact();
  }

  /** Drops the oldest free array. */
  private evictOldest(): void {
    while (this.head < this.queueSlots.length) {
      const slot = this.queueSlots[this.head];
      const stamp = this.queueStamps[this.head++];
      if (!slot.free || slot.stamp !== stamp) continue;
      const same = this.free.get(slot.array.length) as Slot[];
      // The oldest free array of a length is the first of its list (lists grow at the end).
      const at = same[0] === slot ? 0 : same.indexOf(slot);
      same.splice(at, 1);
      if (same.length === 0) this.free.delete(slot.array.length);
      slot.free = false;
      this.freeCount--;
      this.slots.delete(slot.array);
      this.held -= slot.array.byteLength;
      return;
    }
  }

  /** Removes the stale entries of the eviction queue. */
  private compact(): void {
    const slots: Slot[] = [];
    const stamps: number[] = [];
    for (let i = this.head; i < this.queueSlots.length; i++) {
      const slot = this.queueSlots[i];
      if (slot.free && slot.stamp === this.queueStamps[i]) {
        slots.push(slot);
        stamps.push(this.queueStamps[i]);
      }
    }
    this.queueSlots = slots;
    this.queueStamps = stamps;
    this.head = 0;
  }

  /** Drops every held array. */
  clear(): void {
    for (const list of this.free.values()) {
      for (const slot of list) {
        slot.free = false;
        this.slots.delete(slot.array);
      }
    }
    this.free.clear();
    this.queueSlots = [];
    this.queueStamps = [];
    this.head = 0;
    this.freeCount = 0;
    this.held = 0;
  }
}
