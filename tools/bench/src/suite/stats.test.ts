import { incompleteBeta, logGamma, meanCi95, pairedTTest, tQuantile, tTwoSidedP } from './stats';

describe('small-sample statistics', () => {
  it('log Γ matches factorials and Γ(1/2) = √π', () => {
    expect(logGamma(5)).toBeCloseTo(Math.log(24), 10);
    expect(logGamma(0.5)).toBeCloseTo(0.5 * Math.log(Math.PI), 10);
  });

  it('I_x(a, b) has the closed forms of small integer parameters', () => {
    // I_x(1, b) = 1 − (1 − x)^b; I_x(a, 1) = x^a
    expect(incompleteBeta(0.3, 1, 4)).toBeCloseTo(1 - 0.7 ** 4, 10);
    expect(incompleteBeta(0.6, 3, 1)).toBeCloseTo(0.6 ** 3, 10);
  });

  it('t quantiles and p-values agree with the standard tables', () => {
    // two-sided 95 % quantiles: df 1 → 12.706, 2 → 4.303, 10 → 2.228; df 1 is the Cauchy: P(|T| ≥ 1) = 1/2
    expect(tQuantile(0.95, 1)).toBeCloseTo(12.706, 2);
    expect(tQuantile(0.95, 2)).toBeCloseTo(4.303, 3);
    expect(tQuantile(0.95, 10)).toBeCloseTo(2.228, 3);
    expect(tTwoSidedP(1, 1)).toBeCloseTo(0.5, 10);
    // df 2 has the closed form P(|T| ≥ t) = 1 − t/√(2 + t²)
    expect(tTwoSidedP(3, 2)).toBeCloseTo(1 - 3 / Math.sqrt(11), 10);
  });

  it('mean, 95 % interval and the paired test', () => {
    const m = meanCi95([1, 2, 3]);
    expect(m.mean).toBe(2);
    expect(m.sd).toBeCloseTo(1, 12);
    expect(m.half).toBeCloseTo(4.303 / Math.sqrt(3), 3);
    expect(Number.isNaN(meanCi95([1]).half)).toBe(true);
    // differences 1, 2, 3: t = 2/(1/√3) = 3.464, df 2
    const p = pairedTTest([2, 4, 6], [1, 2, 3]);
    expect(p.meanDifference).toBe(2);
    expect(p.p).toBeCloseTo(1 - 3.4641016 / Math.sqrt(2 + 12), 6);
    expect(() => pairedTTest([1], [1, 2])).toThrow(/1 values against 2/);
  });
});
