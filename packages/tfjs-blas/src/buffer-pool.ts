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
 * "tainted" and left to the garbage collector. The pool holds at most `maxBytes`, dropping its oldest arrays
 * first. Handing out and taking back an array cost O(1); small arrays are pooled too (a fresh 100-float
 * array costs about 1 µs of allocation and zero fill, as much as the native kernel that fills it).
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
  private hits = 0;
  private readonly owned = new WeakSet<ArrayBufferLike>();

  constructor(
    /** Upper bound on the bytes kept for reuse. */
    readonly maxBytes: number,
    /** Arrays shorter than this are not pooled. */
    readonly minLength: number = 64,
  ) {}

  /** Bytes held for reuse. */
  get bytes(): number {
    return this.held;
  }

  /** How many arrays were handed out again so far. */
  get reused(): number {
    return this.hits;
  }

  /** An array of `length` floats with arbitrary contents (a reused one when available). */
  alloc(length: number): Float32Array {
    if (length < this.minLength) return new Float32Array(length);
    const reused = this.free.get(length)?.pop();
    if (reused) {
      this.hits++;
      this.held -= reused.byteLength;
      this.stamps.delete(reused);
      return reused;
    }
    const fresh = new Float32Array(length);
    this.owned.add(fresh.buffer);
    return fresh;
  }

  /** `values` may be held elsewhere from now on: never reuse it. */
  taint(values: unknown): void {
    if (ArrayBuffer.isView(values)) this.owned.delete(values.buffer);
  }

  /** The tensor that held `values` was disposed: keep the array for reuse when that is safe. */
  release(values: unknown): void {
    if (!ArrayBuffer.isView(values) || !this.owned.has(values.buffer)) return;
    const array = values as Float32Array;
    if (array.byteOffset !== 0 || array.byteLength !== array.buffer.byteLength) return;
    if (array.byteLength > this.maxBytes || this.stamps.has(array)) return;
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
    while (this.held > this.maxBytes) this.evictOldest();
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
