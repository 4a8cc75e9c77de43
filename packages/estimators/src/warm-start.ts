import * as tf from '@tensorflow/tfjs-core';
import {
  type TensorTree,
  type TreeData,
  treeDispose,
  treeFromData,
  treeMap,
  treeSpec,
  treeToData,
} from '@bilevel/core';

/** Checkpoint form of a {@link WarmStart}: the kept solution as plain arrays, or null. */
export interface WarmStartState {
  /** The kept solution, or null when there is none yet. */
  readonly warmStart: TreeData | null;
}

/**
 * The solution u of the previous outer step's linear system, kept (tf.keep) across steps to start the next
 * solve from it (Ji, Yang & Liang, 2021: warm-started AID). Released by {@link WarmStart.dispose}.
 */
export class WarmStart {
  private u: TensorTree | null = null;

  /** The kept solution when it has the structure of `like` (else null: the problem changed). */
  get(like: TensorTree): TensorTree | null {
    if (!this.u) return null;
    const a = treeSpec(this.u);
    const b = treeSpec(like);
    const same =
      a.names.length === b.names.length &&
      a.names.every((n, i) => n === b.names[i] && a.shapes[i].join(',') === b.shapes[i].join(','));
    return same ? this.u : null;
  }

  /** Keeps a copy of `u` (the caller keeps ownership of `u`). */
  set(u: TensorTree): void {
    const next = treeMap(u, (t) => tf.keep(tf.clone(t)));
    treeDispose(this.u);
    this.u = next;
  }

  /** The kept solution as tree data (exact float32 entries, JSON-serializable). */
  getState(): WarmStartState {
    return { warmStart: this.u ? treeToData(this.u) : null };
  }

  /** Restores a state from {@link WarmStart.getState}, replacing (and releasing) the kept solution. */
  setState(state: unknown): void {
    const s = state as Partial<WarmStartState> | null | undefined;
    if (!s || typeof s !== 'object' || !('warmStart' in s)) {
      throw new Error('estimator state: expected an object { warmStart: TreeData | null }');
    }
    treeDispose(this.u);
    this.u = null;
    if (s.warmStart) this.u = treeMap(treeFromData(s.warmStart), (t) => tf.keep(t));
  }

  /** Releases the kept solution. */
  dispose(): void {
    treeDispose(this.u);
    this.u = null;
  }
}
