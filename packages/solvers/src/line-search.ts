import * as tf from '@tensorflow/tfjs-core';

/** A trial point y + αd of a line search: its tensors and the numbers the search needs. */
export interface TrialPoint {
  /** The step α. */
  readonly alpha: number;
  /** The point y + αd (flat). */
  readonly y: tf.Tensor1D;
  /** ∇g(y + αd) (flat). */
  readonly grad: tf.Tensor1D;
  /** φ(α) = g(y + αd). */
  readonly value: number;
  /** φ'(α) = ∇g(y + αd)ᵀd. */
  readonly slope: number;
  /** ‖∇g(y + αd)‖. */
  readonly gradientNorm: number;
}

/** Evaluates φ at α (one gradient evaluation); the caller owns the returned tensors. */
export type Trial = (alpha: number) => TrialPoint;

/** Where a line search starts: φ(0), φ'(0) and the first trial step. */
export interface LineSearchStart {
  /** φ(0). */
  readonly value: number;
  /** φ'(0) = ∇gᵀd < 0. */
  readonly slope: number;
  /** First trial step. */
  readonly alpha0: number;
}

/** Options of {@link backtrackingArmijo}. */
export interface ArmijoOptions {
  /** Sufficient-decrease constant c₁. */
  readonly c1: number;
  /** Relative noise of g's values (see `sufficientDecrease`). */
  readonly valueNoise: number;
  /** Factor ρ of the trial steps α₀, ρα₀, ρ²α₀, … */
  readonly backtrackingFactor: number;
  /** Most trial points. */
  readonly maxLineSearchSteps: number;
}

/** Options of {@link strongWolfe}. */
export interface WolfeOptions {
  /** Sufficient-decrease constant c₁. */
  readonly c1: number;
  /** Relative noise of g's values (see `sufficientDecrease`). */
  readonly valueNoise: number;
  /** Curvature constant c₂ (c₁ < c₂ < 1). */
  readonly c2: number;
  /** Most trial points. */
  readonly maxLineSearchSteps: number;
}

/** Disposes the tensors of a trial point (nothing for null or undefined). */
export function disposeTrial(p: TrialPoint | null | undefined): void {
  if (p) tf.dispose([p.y, p.grad]);
}

function finite(p: TrialPoint): boolean {
  return Number.isFinite(p.value) && Number.isFinite(p.slope);
}

/**
 * Sufficient decrease, robust to float32 rounding of the loss. The Armijo condition
 * φ(α) ≤ φ(0) + c₁αφ'(0) is tested first; when φ(α) is within the noise band φ(0) + ε|φ(0)| (values too
 * close for float32 to order), the approximate Wolfe condition φ'(α) ≤ (2c₁ − 1)φ'(0) of Hager & Zhang
 * (SIAM J. Optim. 2005) decides from the slope instead, which float32 still resolves. With ε = 0 the
 * slope test still applies when φ(α) ≤ φ(0).
 */
export function sufficientDecrease(
  p: TrialPoint,
  start: LineSearchStart,
  c1: number,
  valueNoise: number,
): boolean {
  if (!finite(p)) return false;
  if (p.value <= start.value + c1 * p.alpha * start.slope) return true;
  return p.value <= start.value + valueNoise * Math.abs(start.value) && p.slope <= (2 * c1 - 1) * start.slope;
}

/**
 * Backtracking line search (Armijo rule; Nocedal & Wright, Alg. 3.1): the first α of α₀, ρα₀, ρ²α₀, …
 * with φ(α) ≤ φ(0) + c₁αφ'(0) (see `sufficientDecrease`). A non-finite φ(α) counts as too long a step. Returns null when no trial
 * within the budget decreases enough.
 */
export function backtrackingArmijo(
  trial: Trial,
  start: LineSearchStart,
  o: ArmijoOptions,
): TrialPoint | null {
  let alpha = start.alpha0;
  for (let i = 0; i < o.maxLineSearchSteps; i++) {
    const p = trial(alpha);
    if (sufficientDecrease(p, start, o.c1, o.valueNoise)) return p;
    disposeTrial(p);
    alpha *= o.backtrackingFactor;
  }
  return null;
}

/**
 * Minimizer of the cubic that interpolates φ and φ' at a and b (Nocedal & Wright, eq. 3.59), or NaN
 * when it does not exist.
 */
export function cubicMinimizer(a: number, fa: number, ga: number, b: number, fb: number, gb: number): number {
  const d1 = ga + gb - (3 * (fa - fb)) / (a - b);
  const disc = d1 * d1 - ga * gb;
  if (!(disc >= 0)) return NaN;
  const d2 = Math.sign(b - a) * Math.sqrt(disc);
  const den = gb - ga + 2 * d2;
  if (den === 0) return NaN;
  return b - ((b - a) * (gb + d2 - d1)) / den;
}

/**
 * Line search for the strong Wolfe conditions (Nocedal & Wright, Algs. 3.5 and 3.6):
 *
 *     φ(α) ≤ φ(0) + c₁αφ'(0)       and       |φ'(α)| ≤ c₂|φ'(0)|,      0 < c₁ < c₂ < 1.
 *
 * The bracketing phase doubles α until it brackets a point of the conditions; `zoom` then narrows the
 * bracket with safeguarded cubic interpolation (bisection when the cubic fails). A non-finite φ(α) counts
 * as a violation of sufficient decrease. When the trial budget runs out, the best point found that
 * satisfies sufficient decrease is returned (or null if there is none). Sufficient decrease is the
 * noise-robust test of `sufficientDecrease`, and values within its noise band are not compared.
 */
export function strongWolfe(trial: Trial, start: LineSearchStart, o: WolfeOptions): TrialPoint | null {
  const f0 = start.value;
  const g0 = start.slope;
  const armijo = (p: TrialPoint) => sufficientDecrease(p, start, o.c1, o.valueNoise);
  // Values closer than the noise band are not ordered by their float32 values.
  const noise = o.valueNoise * Math.abs(f0);
  const wolfe = (p: TrialPoint) => Math.abs(p.slope) <= -o.c2 * g0;
  let evaluations = 0;
  // The low end of the bracket: the best point so far with sufficient decrease (α = 0 when none).
  let lo: TrialPoint | null = null;
  const loAlpha = () => lo?.alpha ?? 0;
  const loValue = () => lo?.value ?? f0;
  const loSlope = () => lo?.slope ?? g0;

  const zoom = (hiIn: { alpha: number; value: number; slope: number }): TrialPoint | null => {
    let hi = hiIn;
    while (evaluations < o.maxLineSearchSteps) {
      const a = loAlpha();
      const b = hi.alpha;
      const width = Math.abs(b - a);
      const left = Math.min(a, b) + 0.1 * width;
      const right = Math.max(a, b) - 0.1 * width;
      let alpha =
        Number.isFinite(hi.value) && Number.isFinite(hi.slope)
          ? cubicMinimizer(a, loValue(), loSlope(), b, hi.value, hi.slope)
          : NaN;
      if (!(alpha >= left && alpha <= right)) alpha = 0.5 * (a + b);
      if (width <= 1e-12 * Math.max(1, Math.abs(a))) break;
      const p = trial(alpha);
      evaluations++;
      if (!armijo(p) || p.value > loValue() + noise) {
        hi = { alpha: p.alpha, value: p.value, slope: p.slope };
        disposeTrial(p);
        continue;
      }
      if (wolfe(p)) {
        disposeTrial(lo);
        return p;
      }
      if (p.slope * (b - a) >= 0) hi = { alpha: a, value: loValue(), slope: loSlope() };
      disposeTrial(lo);
      lo = p;
    }
    return lo;
  };

  let alpha = start.alpha0;
  let prev = { alpha: 0, value: f0, slope: g0 };
  while (evaluations < o.maxLineSearchSteps) {
    const p = trial(alpha);
    evaluations++;
    if (!armijo(p) || (evaluations > 1 && p.value > prev.value + noise)) {
      const hi = { alpha: p.alpha, value: p.value, slope: p.slope };
      disposeTrial(p);
      return zoom(hi);
    }
    if (wolfe(p)) {
      disposeTrial(lo);
      return p;
    }
    if (p.slope >= 0) {
      // Bracket [p, lo]: p is the new low end.
      const hi = { alpha: loAlpha(), value: loValue(), slope: loSlope() };
      disposeTrial(lo);
      lo = p;
      return zoom(hi);
    }
    disposeTrial(lo);
    lo = p;
    prev = { alpha: p.alpha, value: p.value, slope: p.slope };
    alpha *= 2;
  }
  return lo;
}
