/**
 * Small-sample statistics for the suite's runs over seeds: Student-t confidence intervals and the paired
 * t-test (runs of two methods on the same seeds share the data split and evaluation tasks, so the per-seed
 * differences are the fair comparison).
 */

/** ln Γ(x) for x > 0 (Lanczos approximation, g = 7, n = 9; relative error below 1e-13). */
export function logGamma(x: number): number {
  const c = [
    0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059,
    12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7,
  ];
  if (x < 0.5) return Math.log(Math.PI / Math.abs(Math.sin(Math.PI * x))) - logGamma(1 - x);
  const z = x - 1;
  let a = c[0];
  const t = z + 7.5;
  for (let i = 1; i < 9; i++) a += c[i] / (z + i);
  return 0.5 * Math.log(2 * Math.PI) + (z + 0.5) * Math.log(t) - t + Math.log(a);
}

/** Continued fraction of the incomplete beta function (modified Lentz). */
function betaFraction(a: number, b: number, x: number): number {
  const tiny = 1e-300;
  let c = 1;
  let d = 1 - ((a + b) * x) / (a + 1);
  if (Math.abs(d) < tiny) d = tiny;
  d = 1 / d;
  let h = d;
  for (let m = 1; m <= 300; m++) {
    const m2 = 2 * m;
    let aa = (m * (b - m) * x) / ((a + m2 - 1) * (a + m2));
    d = 1 + aa * d;
    if (Math.abs(d) < tiny) d = tiny;
    c = 1 + aa / c;
    if (Math.abs(c) < tiny) c = tiny;
    d = 1 / d;
    h *= d * c;
    aa = (-(a + m) * (a + b + m) * x) / ((a + m2) * (a + m2 + 1));
    d = 1 + aa * d;
    if (Math.abs(d) < tiny) d = tiny;
    c = 1 + aa / c;
    if (Math.abs(c) < tiny) c = tiny;
    d = 1 / d;
    const del = d * c;
    h *= del;
    if (Math.abs(del - 1) < 1e-14) break;
  }
  return h;
}

/** The regularized incomplete beta function I_x(a, b). */
export function incompleteBeta(x: number, a: number, b: number): number {
  if (x <= 0) return 0;
  if (x >= 1) return 1;
  const front = Math.exp(logGamma(a + b) - logGamma(a) - logGamma(b) + a * Math.log(x) + b * Math.log(1 - x));
  return x < (a + 1) / (a + b + 2) ? (front * betaFraction(a, b, x)) / a : 1 - (front * betaFraction(b, a, 1 - x)) / b;
}

/** Two-sided p-value of a Student-t statistic with `df` degrees of freedom: P(|T| ≥ |t|). */
export function tTwoSidedP(t: number, df: number): number {
  if (!Number.isFinite(t)) return Number.isNaN(t) ? NaN : 0;
  return incompleteBeta(df / (df + t * t), df / 2, 0.5);
}

/** The t quantile q with P(|T| ≤ q) = level (bisection on {@link tTwoSidedP}). */
export function tQuantile(level: number, df: number): number {
  let lo = 0;
  let hi = 1e4;
  for (let i = 0; i < 200; i++) {
    const mid = 0.5 * (lo + hi);
    if (tTwoSidedP(mid, df) > 1 - level) lo = mid;
    else hi = mid;
  }
  return 0.5 * (lo + hi);
}

/** Mean, sample standard deviation and the 95 % t-interval half-width (NaN with fewer than 2 values). */
export function meanCi95(values: readonly number[]): { mean: number; sd: number; half: number; n: number } {
  const n = values.length;
  const mean = values.reduce((a, v) => a + v, 0) / n;
  if (n < 2) return { mean, sd: NaN, half: NaN, n };
  const sd = Math.sqrt(values.reduce((a, v) => a + (v - mean) ** 2, 0) / (n - 1));
  return { mean, sd, half: (tQuantile(0.95, n - 1) * sd) / Math.sqrt(n), n };
}

/** Paired t-test of a − b over matched values: the mean difference, its 95 % half-width and the p-value. */
export function pairedTTest(
  a: readonly number[],
  b: readonly number[],
): { meanDifference: number; half: number; p: number; n: number } {
  if (a.length !== b.length) throw new Error(`pairedTTest: ${a.length} values against ${b.length}`);
  const diffs = a.map((v, i) => v - b[i]);
  const { mean, sd, half, n } = meanCi95(diffs);
  if (n < 2) return { meanDifference: mean, half: NaN, p: NaN, n };
  const t = sd === 0 ? (mean === 0 ? 0 : Infinity * Math.sign(mean)) : mean / (sd / Math.sqrt(n));
  return { meanDifference: mean, half, p: tTwoSidedP(t, n - 1), n };
}

/** The q-quantile (0 ≤ q ≤ 1) of values, linear interpolation between order statistics (NaN when empty). */
export function quantile(values: readonly number[], q: number): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const pos = q * (s.length - 1);
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return s[lo] + (s[hi] - s[lo]) * (pos - lo);
}

/** The median (mean of the two middle values for an even count; NaN when empty). */
export function median(values: readonly number[]): number {
  return quantile(values, 0.5);
}
