import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, DataError } from './errors';
import type { Batch, BilevelProblem } from './problem';
import type { Random } from './random';
import { type TensorTree, treeFromTensors, treeNames, treeTensors } from './tree';

/** `{w: [3, 4], b: [4]}`: a tree's names and shapes, for error messages. */
export function describeTreeShapes(tree: TensorTree): string {
  return `{${treeNames(tree)
    .map((n) => `${n}: [${tree[n].shape.join(', ')}]`)
    .join(', ')}}`;
}

function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** A {@link ConfigError} that names the problem (`path` 'problem'). */
export function problemError(problem: BilevelProblem, message: string): ConfigError {
  return new ConfigError(`problem '${problem.name}': ${message}`, 'problem');
}

/**
 * Checks what a problem's `initialX` / `initialY` returned: a non-empty record of float32 tensors. Throws a
 * {@link ConfigError} naming the problem, the function and the offending entry.
 */
export function checkParameterTree(
  problem: BilevelProblem,
  what: 'initialX' | 'initialY',
  tree: unknown,
): void {
  if (tree === null || typeof tree !== 'object' || Array.isArray(tree) || tree instanceof tf.Tensor) {
    throw problemError(
      problem,
      `${what} must return a record of named tensors, e.g. { w: tensor } (got ${tree instanceof tf.Tensor ? 'a bare tensor' : typeof tree})`,
    );
  }
  const entries = Object.entries(tree as Record<string, unknown>);
  if (entries.length === 0) throw problemError(problem, `${what} returned an empty record (no parameters)`);
  for (const [name, t] of entries) {
    if (!(t instanceof tf.Tensor)) {
      throw problemError(problem, `${what} entry '${name}' is not a tensor (got ${typeof t})`);
    }
    if (t.dtype !== 'float32') {
      throw problemError(problem, `${what} entry '${name}' has dtype ${t.dtype}; parameters must be float32`);
    }
  }
}

/**
 * Runs a problem function, turning any error it raises into a {@link ConfigError} that names the problem, the
 * call and the shapes of x and y — instead of a bare tfjs message from deep inside the first outer step.
 */
function attempt<T>(
  problem: BilevelProblem,
  call: string,
  x: TensorTree,
  y: TensorTree | null,
  fn: () => T,
): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof ConfigError || e instanceof DataError) throw e;
    const shapes = `x ${describeTreeShapes(x)}${y ? `, y ${describeTreeShapes(y)}` : ''}`;
    throw problemError(
      problem,
      `${call} failed with ${shapes}: ${messageOf(e)} — do initialX/initialY return the shapes the losses expect?`,
    );
  }
}

function checkScalar(problem: BilevelProblem, call: string, value: unknown): tf.Scalar {
  if (!(value instanceof tf.Tensor)) {
    throw problemError(problem, `${call} must return a scalar tensor (got ${typeof value})`);
  }
  if (value.rank !== 0) {
    throw problemError(
      problem,
      `${call} returned a tensor of shape [${value.shape.join(', ')}]; a loss must be a scalar (reduce it with tf.sum or tf.mean)`,
    );
  }
  return value as tf.Scalar;
}

/** Compares a returned tree with the structure (names and shapes) of a reference, naming the first mismatch. */
function checkSameShapes(
  problem: BilevelProblem,
  what: string,
  got: TensorTree,
  like: TensorTree,
  likeName: string,
): void {
  const a = treeNames(got);
  const b = treeNames(like);
  if (a.length !== b.length || a.some((n, i) => n !== b[i])) {
    throw problemError(
      problem,
      `${what} has entries [${a.join(', ')}] but ${likeName} has [${b.join(', ')}]`,
    );
  }
  for (const n of b) {
    const sa = got[n].shape;
    const sb = like[n].shape;
    if (sa.length !== sb.length || sa.some((d, i) => d !== sb[i])) {
      throw problemError(
        problem,
        `${what} entry '${n}' has shape [${sa.join(', ')}] but ${likeName} entry '${n}' has shape [${sb.join(', ')}]`,
      );
    }
  }
}

/**
 * After an error inside `tf.engine().gradients` tfjs leaves its gradient tape behind, holding the tensors its
 * nodes saved for the backward pass; outside any gradient computation the tape is stale, so release it.
 */
function discardStaleTape(): void {
  const state = (
    tf.engine() as unknown as {
      state: { gradientDepth: number; activeTape: { saved?: tf.Tensor[] }[] | null };
    }
  ).state;
  if (state.gradientDepth !== 0 || !state.activeTape) return;
  for (const node of state.activeTape) for (const t of node.saved ?? []) t.dispose();
  state.activeTape = null;
}

/**
 * Gradients of `loss` with respect to y, and to x when `x` is given, from one forward and one backward pass;
 * entries the loss does not depend on count as zero.
 */
function gradients(
  loss: () => tf.Scalar,
  x: TensorTree | null,
  y: TensorTree,
): { gx: TensorTree | null; gy: TensorTree } {
  const xs = x ? treeTensors(x) : [];
  const all = [...xs, ...treeTensors(y)];
  let grads: (tf.Tensor | null)[];
  try {
    grads = tf.engine().gradients(loss, all, undefined, true).grads;
  } catch (e) {
    discardStaleTape();
    throw e;
  }
  const filled = grads.map((g, i) => (g == null ? tf.zerosLike(all[i]) : g));
  return {
    gx: x ? treeFromTensors(treeNames(x), filled.slice(0, xs.length)) : null,
    gy: treeFromTensors(treeNames(y), filled.slice(xs.length)),
  };
}

/** Options of the preflight check. */
export interface PreflightOptions {
  /** Also check the closed-form hypergradient's shape (when the problem has one and it will be used). */
  readonly closedForm?: boolean;
}

/**
 * One evaluation of a problem at its starting point (x₀, y₀), before the first outer step: the inner and
 * outer losses (on a task and minibatches drawn from `rng`, as a step would) with the gradients every step
 * takes — ∇_y g, and ∇ₓf, ∇_y f (∇ₓg is left out: for a large x such as a backbone it is a whole extra backward
 * pass) — and, when present, `projectX` and the closed-form hypergradient. Each must accept the shapes of
 * x₀ and y₀, the losses must be scalars, and every returned tree must have the names and shapes of x or y.
 * Anything wrong raises a {@link ConfigError} naming the problem, the call and the mismatch, so a user's
 * problem with inconsistent shapes fails at once with a clear message rather than a tfjs stack from deep
 * inside a solver. The problem's own state (minibatch samplers) is restored afterwards, so the check does not
 * change the run. Nothing is charged to the oracle counters; every tensor made here is released.
 */
export function preflightProblem(
  problem: BilevelProblem,
  x: TensorTree,
  y: TensorTree,
  rng: Random,
  options: PreflightOptions = {},
): void {
  const saved = problem.getState?.();
  try {
    tf.tidy(() => {
      const task = problem.sampleTask
        ? attempt(problem, 'sampleTask', x, null, () => problem.sampleTask!(rng.fork('task')))
        : undefined;
      const innerBatch: Batch | undefined = problem.sampleInnerBatch
        ? attempt(problem, 'sampleInnerBatch', x, null, () =>
            problem.sampleInnerBatch!(rng.fork('inner'), task),
          )
        : task;
      const outerBatch: Batch | undefined = problem.sampleOuterBatch
        ? attempt(problem, 'sampleOuterBatch', x, null, () =>
            problem.sampleOuterBatch!(rng.fork('outer'), task),
          )
        : task;
      const losses: [string, () => tf.Scalar, boolean][] = [
        ['innerLoss', () => problem.innerLoss(x, y, innerBatch), false],
        ['outerLoss', () => problem.outerLoss(x, y, outerBatch), true],
      ];
      for (const [name, loss, withX] of losses) {
        const call = `${name}(x₀, y₀)`;
        // The forward pass first, on its own: an error thrown inside tfjs' gradient pass leaves tensors behind.
        checkScalar(problem, call, attempt(problem, call, x, y, loss));
        const { gx, gy } = attempt(problem, `the gradient of ${name}`, x, y, () =>
          gradients(loss, withX ? x : null, y),
        );
        if (gx) checkSameShapes(problem, `∇ₓ${name}`, gx, x, 'x');
        checkSameShapes(problem, `∇_y ${name}`, gy, y, 'y');
      }
      if (problem.projectX) {
        const px = attempt(problem, 'projectX(x₀)', x, null, () => problem.projectX!(x));
        checkSameShapes(problem, 'projectX(x₀)', px, x, 'x');
      }
      if (options.closedForm && problem.hypergradient) {
        const h = attempt(problem, 'hypergradient(x₀)', x, null, () => problem.hypergradient!(x));
        checkSameShapes(problem, 'the closed-form hypergradient(x₀)', h, x, 'x');
      }
    });
  } finally {
    if (saved !== undefined) problem.setState?.(saved);
  }
}
