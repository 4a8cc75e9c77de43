import * as tf from '@tensorflow/tfjs-core';

/**
 * A record of named tensors: the outer variable x and the inner variable y of a bilevel problem are
 * tensor trees, so a problem may have any parameter shapes. Names are always visited in sorted order,
 * which makes flattening and every reduction deterministic.
 */
export type TensorTree = { readonly [name: string]: tf.Tensor };

/** Shapes of a tree, enough to turn a flat vector back into the tree. */
export interface TreeSpec {
  /** Tensor names, sorted. */
  readonly names: readonly string[];
  /** Shape of each tensor, in the order of `names`. */
  readonly shapes: readonly (readonly number[])[];
  /** Number of scalars of each tensor, in the order of `names`. */
  readonly sizes: readonly number[];
  /** Total number of scalars. */
  readonly total: number;
}

/** The tree's names in the canonical (sorted) order. */
export function treeNames(tree: TensorTree): string[] {
  return Object.keys(tree).sort();
}

/** The names, shapes and sizes of a tree (what {@link treeUnflatten} needs). */
export function treeSpec(tree: TensorTree): TreeSpec {
  const names = treeNames(tree);
  const shapes = names.map((n) => tree[n].shape.slice());
  const sizes = names.map((n) => tree[n].size);
  return { names, shapes, sizes, total: sizes.reduce((a, b) => a + b, 0) };
}

/** Throws an error naming the first mismatch when two trees do not have the same names and shapes. */
export function assertSameStructure(a: TensorTree, b: TensorTree, what = 'trees'): void {
  const na = treeNames(a);
  const nb = treeNames(b);
  if (na.length !== nb.length || na.some((n, i) => n !== nb[i])) {
    throw new Error(`${what}: names differ ([${na.join(', ')}] vs [${nb.join(', ')}])`);
  }
  for (const n of na) {
    const sa = a[n].shape;
    const sb = b[n].shape;
    if (sa.length !== sb.length || sa.some((d, i) => d !== sb[i])) {
      throw new Error(`${what}: tensor '${n}' has shape [${sa.join(', ')}] vs [${sb.join(', ')}]`);
    }
  }
}

/** A new tree with `fn` applied to each tensor (and its name). */
export function treeMap(tree: TensorTree, fn: (t: tf.Tensor, name: string) => tf.Tensor): TensorTree {
  const out: Record<string, tf.Tensor> = {};
  for (const n of treeNames(tree)) out[n] = fn(tree[n], n);
  return out;
}

/** A new tree combining the same-named tensors of two trees of the same structure with `fn`. */
export function treeZip(
  a: TensorTree,
  b: TensorTree,
  fn: (x: tf.Tensor, y: tf.Tensor, name: string) => tf.Tensor,
): TensorTree {
  assertSameStructure(a, b);
  const out: Record<string, tf.Tensor> = {};
  for (const n of treeNames(a)) out[n] = fn(a[n], b[n], n);
  return out;
}

/** a + b, tensor by tensor. */
export function treeAdd(a: TensorTree, b: TensorTree): TensorTree {
  return treeZip(a, b, (x, y) => tf.add(x, y));
}

/** a − b, tensor by tensor. */
export function treeSub(a: TensorTree, b: TensorTree): TensorTree {
  return treeZip(a, b, (x, y) => tf.sub(x, y));
}

/** −a, tensor by tensor. */
export function treeNeg(a: TensorTree): TensorTree {
  return treeMap(a, (x) => tf.neg(x));
}

/** s·a, for a number or a scalar tensor s. */
export function treeScale(a: TensorTree, s: number | tf.Scalar): TensorTree {
  return treeMap(a, (x) => tf.mul(x, s));
}

/** alpha·x + y. */
export function treeAxpy(alpha: number | tf.Scalar, x: TensorTree, y: TensorTree): TensorTree {
  return treeZip(x, y, (u, v) => tf.add(tf.mul(u, alpha), v));
}

/** ⟨a, b⟩ summed over every tensor of the trees, as a scalar tensor. */
export function treeDot(a: TensorTree, b: TensorTree): tf.Scalar {
  assertSameStructure(a, b);
  return tf.tidy(() => {
    const names = treeNames(a);
    if (names.length === 0) return tf.scalar(0);
    const parts = names.map((n) => tf.sum(tf.mul(a[n], b[n])));
    return (parts.length === 1 ? parts[0] : tf.addN(parts)) as tf.Scalar;
  });
}

/** ‖a‖², the sum of squares of every entry, as a scalar tensor. */
export function treeNormSquared(a: TensorTree): tf.Scalar {
  return treeDot(a, a);
}

/** Euclidean norm of the whole tree, as a scalar tensor. */
export function treeNorm(a: TensorTree): tf.Scalar {
  return tf.tidy(() => tf.sqrt(treeNormSquared(a)));
}

/** A tree of zeros shaped like `a`. */
export function treeZerosLike(a: TensorTree): TensorTree {
  return treeMap(a, (x) => tf.zerosLike(x));
}

/** A copy of `a` (new tensors). */
export function treeClone(a: TensorTree): TensorTree {
  return treeMap(a, (x) => tf.clone(x));
}

/** All tensors of the tree concatenated, in canonical order, into one flat vector. */
export function treeFlatten(a: TensorTree): tf.Tensor1D {
  return tf.tidy(() => {
    const names = treeNames(a);
    if (names.length === 0) return tf.tensor1d([]);
    const flat = names.map((n) => tf.reshape(a[n], [-1]));
    return (flat.length === 1 ? tf.clone(flat[0]) : tf.concat(flat)) as tf.Tensor1D;
  });
}

/** Inverse of {@link treeFlatten}. */
export function treeUnflatten(v: tf.Tensor, spec: TreeSpec): TensorTree {
  if (v.size !== spec.total) {
    throw new Error(`treeUnflatten: vector has ${v.size} entries, the tree needs ${spec.total}`);
  }
  return tf.tidy(() => {
    const flat = tf.reshape(v, [-1]);
    const parts = spec.names.length === 1 ? [flat] : tf.split(flat, spec.sizes.slice());
    const out: Record<string, tf.Tensor> = {};
    spec.names.forEach((n, i) => {
      out[n] = tf.reshape(parts[i], spec.shapes[i].slice());
    });
    return out;
  });
}

/** Total number of scalars in the tree. */
export function treeSize(a: TensorTree): number {
  let s = 0;
  for (const n of Object.keys(a)) s += a[n].size;
  return s;
}

/** Disposes every tensor of the tree; does nothing for `undefined` or `null`. */
export function treeDispose(a: TensorTree | undefined | null): void {
  if (!a) return;
  for (const n of Object.keys(a)) a[n].dispose();
}

/** Marks every tensor of the tree to survive the enclosing `tf.tidy`. */
export function treeKeep<T extends TensorTree>(a: T): T {
  for (const n of Object.keys(a)) tf.keep(a[n]);
  return a;
}

/** Tensors of a tree, in canonical order (for `tf.tidy` return values and gradient calls). */
export function treeTensors(a: TensorTree): tf.Tensor[] {
  return treeNames(a).map((n) => a[n]);
}

/** Builds a tree from tensors given in the order of `names`. */
export function treeFromTensors(names: readonly string[], tensors: readonly tf.Tensor[]): TensorTree {
  const out: Record<string, tf.Tensor> = {};
  names.forEach((n, i) => {
    out[n] = tensors[i];
  });
  return out;
}

/** Whether every entry of the tree is finite (one synchronous read). */
export function treeIsFinite(a: TensorTree): boolean {
  const names = treeNames(a);
  if (names.length === 0) return true;
  const bad = tf.tidy(() => {
    const counts = names.map((n) => tf.sum(tf.cast(tf.logicalNot(tf.isFinite(a[n])), 'int32')));
    return counts.length === 1 ? counts[0] : tf.addN(counts);
  });
  const v = bad.dataSync()[0];
  bad.dispose();
  return v === 0;
}

/**
 * The entries of one tensor of a {@link TreeData} copy: a `Float32Array` holding the exact float32 bits (4 bytes
 * an entry; checkpoint files store it as raw binary) that `JSON.stringify` writes as a plain number array, so
 * a state holding it stays JSON-serializable.
 */
export class Float32Values extends Float32Array {
  /** The entries as a plain number array (what `JSON.stringify` writes). */
  toJSON(): number[] {
    return Array.from(this);
  }
}

/** Plain serializable copy of a tree (for checkpoints and tests). */
export interface TreeData {
  readonly [name: string]: {
    /** Tensor shape. */
    readonly shape: number[];
    /**
     * Entries in row-major order: a {@link Float32Values} from {@link treeToData}, or a plain number array
     * (e.g. after a trip through `JSON.parse`).
     */
    readonly values: Float32Array | number[];
  };
}

/**
 * A copy of the tree that survives the tensors and `JSON.stringify` (reads every tensor synchronously). The
 * entries are {@link Float32Values}: the exact float32 bits, 4 bytes an entry.
 */
export function treeToData(a: TensorTree): TreeData {
  const out: Record<string, { shape: number[]; values: Float32Values }> = {};
  for (const n of treeNames(a)) {
    // A copy (the CPU backend hands out its own buffer); same element type, so the bits are kept as they are.
    out[n] = { shape: a[n].shape.slice(), values: new Float32Values(a[n].dataSync()) };
  }
  return out;
}

/** Float32 tensors built from a {@link TreeData} copy (the tensors do not share memory with `d`). */
export function treeFromData(d: TreeData): TensorTree {
  const out: Record<string, tf.Tensor> = {};
  for (const n of Object.keys(d).sort()) {
    const v = d[n].values;
    // tfjs keeps a Float32Array it is given as the tensor's storage: hand it a copy.
    out[n] = tf.tensor(Array.isArray(v) ? v : new Float32Array(v), d[n].shape, 'float32');
  }
  return out;
}

/**
 * Stacks trees of the same structure along a new leading axis: the batched form of B trees, used where a
 * problem can evaluate a batch of outer variables at once.
 */
export function treeStack(trees: readonly TensorTree[]): TensorTree {
  if (trees.length === 0) throw new Error('treeStack: no trees');
  for (let i = 1; i < trees.length; i++) assertSameStructure(trees[0], trees[i], `treeStack: tree ${i}`);
  const out: Record<string, tf.Tensor> = {};
  for (const n of treeNames(trees[0])) out[n] = tf.stack(trees.map((t) => t[n]));
  return out;
}

/** Inverse of {@link treeStack}. */
export function treeUnstack(a: TensorTree): TensorTree[] {
  const names = treeNames(a);
  if (names.length === 0) return [];
  const parts = names.map((n) => tf.unstack(a[n]));
  const count = parts[0].length;
  const out: TensorTree[] = [];
  for (let i = 0; i < count; i++) {
    const t: Record<string, tf.Tensor> = {};
    names.forEach((n, j) => {
      t[n] = parts[j][i];
    });
    out.push(t);
  }
  return out;
}

/** The entry at `index` of the leading axis of every tensor of a stacked tree. */
export function treeSlice0(a: TensorTree, index: number): TensorTree {
  return treeMap(a, (x) => tf.squeeze(tf.slice(x, [index], [1]), [0]));
}

/**
 * Disposes the tensors of `old` that `next` does not share, and returns `next`: the safe way to replace
 * a kept tree by its successor when some tensors may be carried over unchanged.
 */
export function treeReplace(old: TensorTree, next: TensorTree): TensorTree {
  const keep = new Set(Object.keys(next).map((n) => next[n]));
  for (const n of Object.keys(old)) if (!keep.has(old[n])) old[n].dispose();
  return next;
}

/**
 * `tf.tidy` for any result: tensors found anywhere in the returned value (objects, arrays, trees) survive,
 * every other tensor made inside is disposed. Plain numbers and strings pass through.
 */
export function tidy<T>(fn: () => T): T {
  return tf.tidy(fn as unknown as () => tf.TensorContainer) as unknown as T;
}
