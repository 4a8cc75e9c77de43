import * as tf from '@tensorflow/tfjs-core';
import {
  backtrackingArmijo,
  cubicMinimizer,
  disposeTrial,
  strongWolfe,
  sufficientDecrease,
  type Trial,
  type TrialPoint,
} from './line-search';

/** A line search on a scalar function φ with derivative dφ; records the trial steps. */
function scalarTrial(
  phi: (a: number) => number,
  dphi: (a: number) => number,
): { trial: Trial; steps: number[] } {
  const steps: number[] = [];
  const trial: Trial = (alpha) => {
    steps.push(alpha);
    return {
      alpha,
      y: tf.tensor1d([alpha]),
      grad: tf.tensor1d([dphi(alpha)]),
      value: phi(alpha),
      slope: dphi(alpha),
      gradientNorm: Math.abs(dphi(alpha)),
    };
  };
  return { trial, steps };
}

const wolfe = { c1: 1e-4, c2: 0.9, maxLineSearchSteps: 20, valueNoise: 0 };
const armijo = { c1: 1e-4, backtrackingFactor: 0.5, maxLineSearchSteps: 20, valueNoise: 0 };

function expectStrongWolfe(
  p: TrialPoint | null,
  phi: (a: number) => number,
  dphi: (a: number) => number,
  c2: number,
) {
  expect(p).not.toBeNull();
  const a = (p as TrialPoint).alpha;
  expect(phi(a)).toBeLessThanOrEqual(phi(0) + 1e-4 * a * dphi(0));
  expect(Math.abs(dphi(a))).toBeLessThanOrEqual(-c2 * dphi(0));
}

describe('line searches', () => {
  it('cubicMinimizer is exact for a cubic', () => {
    // φ(α) = α³ − 3α has its local minimum at α = 1.
    const phi = (a: number) => a ** 3 - 3 * a;
    const dphi = (a: number) => 3 * a * a - 3;
    expect(cubicMinimizer(0, phi(0), dphi(0), 2, phi(2), dphi(2))).toBeCloseTo(1, 12);
    expect(cubicMinimizer(2, phi(2), dphi(2), -0.5, phi(-0.5), dphi(-0.5))).toBeCloseTo(1, 12);
  });

  it.each([
    [
      'a quadratic with its minimum beyond α₀ (extrapolation)',
      (a: number) => (a - 7) ** 2,
      (a: number) => 2 * (a - 7),
    ],
    ['a quartic where α₀ overshoots (zoom)', (a: number) => a ** 4 - 4 * a, (a: number) => 4 * a ** 3 - 4],
    [
      'a function that is NaN beyond α = 0.6',
      (a: number) => (a > 0.6 ? NaN : (a - 0.5) ** 2),
      (a: number) => (a > 0.6 ? NaN : 2 * (a - 0.5)),
    ],
  ])('strong Wolfe finds a point meeting both conditions on %s', (_name, phi, dphi) => {
    const before = tf.memory().numTensors;
    for (const c2 of [0.9, 0.1]) {
      const { trial } = scalarTrial(phi, dphi);
      const p = strongWolfe(trial, { value: phi(0), slope: dphi(0), alpha0: 1 }, { ...wolfe, c2 });
      expectStrongWolfe(p, phi, dphi, c2);
      disposeTrial(p);
    }
    // Every rejected trial point was released.
    expect(tf.memory().numTensors).toBe(before);
  });

  it('strong Wolfe accepts the unit step when it already satisfies the conditions', () => {
    const { trial, steps } = scalarTrial(
      (a) => (a - 1) ** 2,
      (a) => 2 * (a - 1),
    );
    const p = strongWolfe(trial, { value: 1, slope: -2, alpha0: 1 }, wolfe);
    expect(steps).toEqual([1]);
    disposeTrial(p);
  });

  it('backtracking halves the step until sufficient decrease holds', () => {
    // φ(α) = (α − 0.1)²: from α₀ = 1, the first step below about 0.2 decreases enough.
    const phi = (a: number) => (a - 0.1) ** 2;
    const dphi = (a: number) => 2 * (a - 0.1);
    const { trial, steps } = scalarTrial(phi, dphi);
    const p = backtrackingArmijo(trial, { value: phi(0), slope: dphi(0), alpha0: 1 }, armijo);
    expect(steps).toEqual([1, 0.5, 0.25, 0.125]);
    expect(p?.alpha).toBe(0.125);
    disposeTrial(p);
  });

  it('both searches give up (null) when no step decreases φ, releasing every trial', () => {
    const before = tf.memory().numTensors;
    // A wrong slope: φ increases although φ'(0) is claimed negative.
    const phi = (a: number) => a * a + 1;
    const { trial, steps } = scalarTrial(phi, (a) => 2 * a);
    expect(
      backtrackingArmijo(trial, { value: 1, slope: -1, alpha0: 1 }, { ...armijo, maxLineSearchSteps: 6 }),
    ).toBeNull();
    expect(steps.length).toBe(6);
    expect(
      strongWolfe(trial, { value: 1, slope: -1, alpha0: 1 }, { ...wolfe, maxLineSearchSteps: 8 }),
    ).toBeNull();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('judges decrease from the slope when values are within float32 noise (approximate Wolfe)', () => {
    // φ(α) = 10⁴ + 10⁻⁶(α − 1)² evaluated with one float32 ulp (~1e-3 at 10⁴) of rounding noise, which
    // here always falls upwards: no trial looks lower than φ(0) in float32.
    const phi = (a: number) => Math.fround(1e4 + 1e-6 * (a - 1) ** 2 + (a > 0 ? 1e-3 : 0));
    const dphi = (a: number) => 2e-6 * (a - 1);
    const start = { value: phi(0), slope: dphi(0), alpha0: 1 };
    const { trial } = scalarTrial(phi, dphi);
    expect(backtrackingArmijo(trial, start, { ...armijo, maxLineSearchSteps: 5 })).toBeNull();
    const p = backtrackingArmijo(trial, start, { ...armijo, valueNoise: 1e-6 });
    expect(p?.alpha).toBe(1);
    disposeTrial(p);
    const q = strongWolfe(trial, start, { ...wolfe, valueNoise: 1e-6 });
    expect(q?.alpha).toBe(1);
    disposeTrial(q);
    // The slope test still refuses a step past the minimum by much: φ'(α) > (2c₁ − 1)φ'(0).
    const far = scalarTrial(phi, dphi).trial(3);
    expect(sufficientDecrease(far, start, 1e-4, 1e-6)).toBe(false);
    disposeTrial(far);
  });
});
