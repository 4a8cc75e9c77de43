import * as tf from '@tensorflow/tfjs-core';
import {
  treeAdd,
  treeAxpy,
  treeDot,
  treeFlatten,
  treeFromData,
  treeIsFinite,
  treeNorm,
  treeScale,
  treeSpec,
  treeStack,
  treeToData,
  treeUnflatten,
  treeUnstack,
  assertSameStructure,
} from './tree';

function tree() {
  return {
    w: tf.tensor2d([
      [1, 2],
      [3, 4],
    ]),
    b: tf.tensor1d([5, -6]),
  };
}

describe('tensor-tree algebra', () => {
  it('adds, scales and forms axpy entry by entry', () => {
    const a = tree();
    const b = tree();
    const s = treeAdd(a, b);
    expect(Array.from(s.w.dataSync())).toEqual([2, 4, 6, 8]);
    const t = treeScale(a, -0.5);
    expect(Array.from(t.b.dataSync())).toEqual([-2.5, 3]);
    const u = treeAxpy(2, a, b);
    expect(Array.from(u.b.dataSync())).toEqual([15, -18]);
  });

  it('computes dot products and norms over all tensors', () => {
    const a = tree();
    expect(treeDot(a, a).dataSync()[0]).toBeCloseTo(1 + 4 + 9 + 16 + 25 + 36, 5);
    expect(treeNorm(a).dataSync()[0]).toBeCloseTo(Math.sqrt(91), 5);
  });

  it('flattens in sorted name order and unflattens back', () => {
    const a = tree();
    const v = treeFlatten(a);
    expect(Array.from(v.dataSync())).toEqual([5, -6, 1, 2, 3, 4]);
    const back = treeUnflatten(v, treeSpec(a));
    expect(back.w.shape).toEqual([2, 2]);
    expect(Array.from(back.w.dataSync())).toEqual([1, 2, 3, 4]);
    expect(() => treeUnflatten(tf.zeros([5]), treeSpec(a))).toThrow(/5 entries, the tree needs 6/);
  });

  it('names the mismatch when structures differ', () => {
    expect(() => assertSameStructure(tree(), { w: tf.zeros([2, 2]), c: tf.zeros([2]) })).toThrow(
      /names differ/,
    );
    expect(() => assertSameStructure(tree(), { w: tf.zeros([2, 3]), b: tf.zeros([2]) })).toThrow(
      /'w' has shape \[2, 2\] vs \[2, 3\]/,
    );
  });

  it('detects non-finite entries', () => {
    expect(treeIsFinite(tree())).toBe(true);
    expect(treeIsFinite({ a: tf.tensor1d([1, NaN]) })).toBe(false);
    expect(treeIsFinite({ a: tf.tensor1d([Infinity]) })).toBe(false);
  });

  it('round-trips through plain data and stacks / unstacks', () => {
    const a = tree();
    const b = treeFromData(treeToData(a));
    expect(Array.from(b.w.dataSync())).toEqual([1, 2, 3, 4]);
    const st = treeStack([a, b, a]);
    expect(st.w.shape).toEqual([3, 2, 2]);
    const parts = treeUnstack(st);
    expect(parts).toHaveLength(3);
    expect(Array.from(parts[1].b.dataSync())).toEqual([5, -6]);
  });
});
