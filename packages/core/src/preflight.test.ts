import * as tf from '@tensorflow/tfjs-core';
import { ConfigError } from './errors';
import { GradientDescentOptimizer } from './optimizer';
import { createOracles } from './oracles';
import type { Batch, BilevelProblem } from './problem';
import { QuadraticFixture } from './testing';
import type { Random } from './random';
import type { Estimate, EstimateContext, HypergradientEstimator } from './estimator';
import type { InnerResult, InnerSolveRequest, InnerSolver } from './solver';
import { Trainer } from './trainer';
import { type TensorTree, treeMap } from './tree';

const fixture = new QuadraticFixture({ innerDimension: 5, conditionNumber: 3, seed: 2 });
afterAll(() => fixture.dispose());

/** The fixture as a user-defined problem, with any member replaced. */
function userProblem(overrides: Partial<BilevelProblem> = {}): BilevelProblem {
  return {
    name: 'my-problem',
    initialX: () => fixture.initialX(),
    initialY: () => fixture.initialY(),
    innerLoss: (x, y) => fixture.innerLoss(x, y),
    outerLoss: (x, y) => fixture.outerLoss(x, y),
    hypergradient: (x) => fixture.hypergradient(x),
    ...overrides,
  };
}

class OneGdStep implements InnerSolver {
  readonly name = 'one-gd-step';
  readonly elementwise = true;
  readonly maxIterations = 1;
  solve(req: InnerSolveRequest): InnerResult {
    const y = tf.tidy(() =>
      treeMap(req.oracles.innerGradY(req.x, req.y0, req.batches?.(0)), (g, n) =>
        tf.sub(req.y0[n], tf.mul(g, 0.1)),
      ),
    );
    return { y, iterations: 1, gradientNorm: 1, converged: false };
  }
}

class OuterGradientOnly implements HypergradientEstimator {
  readonly name = 'outer-gradient-only';
  estimate(ctx: EstimateContext): Estimate {
    const { value, gradX, gradY } = ctx.oracles.outerGrads(ctx.x, ctx.inner.y, ctx.outerBatch);
    value.dispose();
    Object.values(gradY).forEach((t) => t.dispose());
    return { hypergradient: gradX, diagnostics: {} };
  }
}

function trainer(problem: BilevelProblem): Trainer {
  return new Trainer({
    problem,
    oracles: createOracles(problem),
    solver: new OneGdStep(),
    estimator: new OuterGradientOnly(),
    optimizer: new GradientDescentOptimizer({ learningRate: 0.1 }),
    options: { evalEvery: 0 },
  });
}

/** The error (a ConfigError) that a trainer on `problem` raises in its constructor or first step. */
function firstError(problem: BilevelProblem): ConfigError {
  const before = tf.memory().numTensors;
  let t: Trainer | null = null;
  try {
    t = trainer(problem);
    t.stepOnce();
  } catch (e) {
    t?.dispose();
    expect(tf.memory().numTensors).toBe(before);
    expect(e).toBeInstanceOf(ConfigError);
    expect((e as ConfigError).path).toBe('problem');
    return e as ConfigError;
  }
  t?.dispose();
  throw new Error('expected an error');
}

describe('problem preflight (a user-defined problem whose shapes do not fit)', () => {
  it('names the problem, the call and both shapes when initialY does not fit the inner loss', () => {
    const e = firstError(userProblem({ initialY: () => ({ y: tf.zeros([4]) }) }));
    expect(e.message).toMatch(
      /^problem 'my-problem': innerLoss\(x₀, y₀\) failed with x \{x: \[5\]\}, y \{y: \[4\]\}: /,
    );
    expect(e.message).toMatch(/matMul|shape/i);
  });

  it('names x of the wrong shape', () => {
    const e = firstError(userProblem({ initialX: () => ({ x: tf.zeros([3]) }) }));
    expect(e.message).toMatch(
      /problem 'my-problem': innerLoss\(x₀, y₀\) failed with x \{x: \[3\]\}, y \{y: \[5\]\}/,
    );
  });

  it('refuses a loss that is not a scalar', () => {
    const e = firstError(
      userProblem({ outerLoss: (x, y) => tf.square(tf.sub(y.y, x.x)) as unknown as tf.Scalar }),
    );
    expect(e.message).toBe(
      "problem 'my-problem': outerLoss(x₀, y₀) returned a tensor of shape [5]; a loss must be a scalar (reduce it with tf.sum or tf.mean)",
    );
  });

  it('names a gradient that fails', () => {
    const noGradient = tf.customGrad((...inputs: (tf.Tensor | tf.GradSaveFunc)[]) => ({
      value: tf.sum(inputs[0] as tf.Tensor),
      gradFunc: () => {
        throw new Error('no gradient here');
      },
    }));
    const e = firstError(
      userProblem({ innerLoss: (x, y) => tf.add(fixture.innerLoss(x, y), noGradient(y.y)) as tf.Scalar }),
    );
    expect(e.message).toBe(
      "problem 'my-problem': the gradient of innerLoss failed with x {x: [5]}, y {y: [5]}: no gradient here — do initialX/initialY return the shapes the losses expect?",
    );
  });

  it('refuses initial values that are not records of float32 tensors', () => {
    expect(
      firstError(userProblem({ initialX: () => tf.zeros([5]) as unknown as TensorTree })).message,
    ).toMatch(/initialX must return a record of named tensors.*got a bare tensor/);
    expect(firstError(userProblem({ initialY: () => ({ y: tf.zeros([5], 'int32') }) })).message).toBe(
      "problem 'my-problem': initialY entry 'y' has dtype int32; parameters must be float32",
    );
    expect(firstError(userProblem({ initialY: () => ({}) })).message).toMatch(
      /initialY returned an empty record/,
    );
    expect(
      firstError(
        userProblem({
          initialY: () => {
            throw new Error('no data');
          },
        }),
      ).message,
    ).toBe("problem 'my-problem': initialY failed (x {x: [5]}): no data");
  });

  it('compares the closed-form hypergradient and projectX with the shape of x', () => {
    expect(firstError(userProblem({ hypergradient: () => ({ x: tf.zeros([5, 1]) }) })).message).toBe(
      "problem 'my-problem': the closed-form hypergradient(x₀) entry 'x' has shape [5, 1] but x entry 'x' has shape [5]",
    );
    expect(firstError(userProblem({ projectX: () => ({ w: tf.zeros([5]) }) })).message).toBe(
      "problem 'my-problem': projectX(x₀) has entries [w] but x has [x]",
    );
  });

  it('passes a correct problem, and leaves a stateful sampler where it was', () => {
    let drawn = 0;
    const problem = userProblem({
      sampleInnerBatch: (rng: Random): Batch => {
        drawn += 1;
        return { noise: tf.scalar(rng.normal()) };
      },
      innerLoss: (x, y, batch) =>
        tf.tidy(() => tf.add(fixture.innerLoss(x, y), tf.mul(batch?.noise ?? 0, 0))) as tf.Scalar,
      getState: () => ({ drawn }),
      setState: (s) => {
        drawn = (s as { drawn: number }).drawn;
      },
    });
    const t = trainer(problem);
    t.preflight();
    expect(drawn).toBe(0);
    const before = tf.memory().numTensors;
    t.preflight();
    expect(tf.memory().numTensors).toBe(before);
    t.stepOnce();
    expect(drawn).toBe(1);
    expect(t.getState().problem).toEqual({ drawn: 1 });
    t.dispose();
  });

  it('refuses a saved state made for other shapes', () => {
    const t = trainer(userProblem());
    const state = t.getState();
    expect(() => t.setState({ ...state, y: { y: { shape: [4], values: [0, 0, 0, 0] } } })).toThrow(
      /the saved state does not fit problem 'my-problem': saved y vs the y of this problem: tensor 'y' has shape \[4\] vs \[5\]/,
    );
    t.dispose();
  });
});
