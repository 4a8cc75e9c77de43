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
 * first.
 */
export class BufferPool {
  private readonly free = new Map<number, Float32Array[]>();
  /** Arrays of each length in the order they came back, for eviction. */
  private readonly order: Float32Array[] = [];
  private held = 0;
  private hits = 0;
  private readonly owned = new WeakSet<ArrayBufferLike>();

  constructor(
    /** Upper bound on the bytes kept for reuse. */
    readonly maxBytes: number,
    /** Arrays shorter than this are not pooled (small ones are cheap to allocate). */
    readonly minLength: number = 4096,
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
    if (length >= this.minLength) {
      const list = this.free.get(length);
      const reused = list?.pop();
      if (reused) {
        this.hits++;
        this.held -= reused.byteLength;
        const at = this.order.lastIndexOf(reused);
        if (at >= 0) this.order.splice(at, 1);
        return reused;
      }
    }
    const fresh = new Float32Array(length);
    if (length >= this.minLength) this.owned.add(fresh.buffer);
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
    if (array.byteLength > this.maxBytes) return;
    let list = this.free.get(array.length);
    if (!list) {
      list = [];
      this.free.set(array.length, list);
    }
    list.push(array);
    this.order.push(array);
    this.held += array.byteLength;
    while (this.held > this.maxBytes && this.order.length > 0) {
      const old = this.order.shift() as Float32Array;
      const same = this.free.get(old.length) as Float32Array[];
      same.splice(same.indexOf(old), 1);
      if (same.length === 0) this.free.delete(old.length);
      this.held -= old.byteLength;
      this.owned.delete(old.buffer);
    }
  }

  /** Drops every held array. */
  clear(): void {
    this.free.clear();
    this.order.length = 0;
    this.held = 0;
  }
}
