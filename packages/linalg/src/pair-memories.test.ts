import * as tf from '@tensorflow/tfjs-core';
import {
  ConfigError,
  matVec,
  Random,
  randomOrthogonal,
  spectralMatrix,
  treeSpec,
  type TreeSpec,
} from '@bilevel/core';
import { tensorCountGrowth } from '@bilevel/core/testing';
import {
  createPairMemory,
  LbfgsMemory,
  type QuasiNewtonMemoryOptions,
  SR1_AUTO_SCALING_FACTOR,
  Sr1Memory,
} from './index';

// ---------- float64 references (dense n×n matrices, row-major) ----------

function flatSpec(n: number): TreeSpec {
  return { names: ['y'], shapes: [[n]], sizes: [n], total: n };
}

function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

function norm(a: ArrayLike<number>): number {
  return Math.sqrt(dot(a, a));
}

function identity(n: number, c: number): Float64Array {
  const m = new Float64Array(n * n);
  for (let i = 0; i < n; i++) m[i * n + i] = c;
  return m;
}

/** Dense BFGS inverse updates H ← (I − ρsrᵀ)H(I − ρrsᵀ) + ρssᵀ from H₀ = γI. */
function denseBfgs(pairs: { s: Float64Array; r: Float64Array }[], gamma: number, n: number): Float64Array {
  let h = identity(n, gamma);
  for (const { s, r } of pairs) {
    const rho = 1 / dot(s, r);
    const hr = matVec(h, n, n, r);
    const rhr = dot(r, hr);
    const next = new Float64Array(n * n);
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) {
        next[i * n + j] =
          h[i * n + j] - rho * (s[i] * hr[j] + hr[i] * s[j]) + (rho * rho * rhr + rho) * s[i] * s[j];
      }
    }
    h = next;
  }
  return h;
}

/** Dense sequential SR1 on H and B with both skip rules; returns H and which pairs were applied. */
function denseSr1(
  pairs: { s: Float64Array; r: Float64Array }[],
  gamma: number,
  c: number,
  n: number,
): { h: Float64Array; applied: boolean[] } {
  const h = identity(n, gamma);
  const b = identity(n, 1 / gamma);
  const applied: boolean[] = [];
  for (const { s, r } of pairs) {
    const hr = matVec(h, n, n, r);
    const bs = matVec(b, n, n, s);
    const w = s.map((si, i) => si - hr[i]);
    const v = r.map((ri, i) => ri - bs[i]);
    const wr = dot(w, r);
    const vs = dot(v, s);
    const ok =
      wr !== 0 && vs !== 0 && Math.abs(vs) >= c * norm(s) * norm(v) && Math.abs(wr) >= c * norm(r) * norm(w);
    applied.push(ok);
    if (!ok) continue;
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) {
        h[i * n + j] += (w[i] * w[j]) / wr;
        b[i * n + j] += (v[i] * v[j]) / vs;
      }
    }
  }
  return { h, applied };
}

function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < b.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return Math.sqrt(num / Math.max(den, 1e-300));
}

function vec(a: ArrayLike<number>): tf.Tensor1D {
  return tf.tensor1d(Float32Array.from(a));
}

/** Max relative error of H·v against a dense reference over a few random v. */
function applyError(
  mem: { applyFlat(v: tf.Tensor1D): tf.Tensor1D },
  dense: Float64Array,
  n: number,
  rng: Random,
  trials = 4,
): number {
  let worst = 0;
  for (let t = 0; t < trials; t++) {
    const v = rng.normalArray(n);
    const got = tf.tidy(() => mem.applyFlat(vec(v)).dataSync());
    worst = Math.max(worst, relErr(got, matVec(dense, n, n, v)));
  }
  return worst;
}

/** A random SPD matrix with eigenvalues in [1, κ] and its inverse. */
function spd(n: number, kappa: number, rng: Random): { a: Float64Array; aInv: Float64Array } {
  const q = randomOrthogonal(n, rng);
  const eig = Array.from({ length: n }, (_, i) => Math.pow(kappa, i / (n - 1)));
  return {
    a: spectralMatrix(q, eig),
    aInv: spectralMatrix(
      q,
      eig.map((l) => 1 / l),
    ),
  };
}

/** Pairs as float32 tensors and their float64 copies (the rounded values, so references see the same data). */
function makePair(s: ArrayLike<number>, r: ArrayLike<number>) {
  const sf = Float32Array.from(s);
  const rf = Float32Array.from(r);
  return { sT: tf.tensor1d(sf), rT: tf.tensor1d(rf), s: Float64Array.from(sf), r: Float64Array.from(rf) };
}

const opts = (o: Partial<QuasiNewtonMemoryOptions> = {}): QuasiNewtonMemoryOptions => ({
  memory: 10,
  initialScaling: 'auto',
  curvatureEpsilon: 1e-10,
  ...o,
});

// ---------- L-BFGS ----------

describe('LbfgsMemory', () => {
  it('applies the same operator as dense BFGS updates of γI over the last m pairs', () => {
    const n = 7;
    const rng = new Random(1);
    const { a } = spd(n, 20, rng);
    for (const initialScaling of ['auto', 0.5] as const) {
      const mem = new LbfgsMemory(flatSpec(n), opts({ memory: 4, initialScaling }));
      const pushed: { s: Float64Array; r: Float64Array }[] = [];
      for (let i = 0; i < 6; i++) {
        const s = rng.normalArray(n);
        // r = A s plus a perturbation that keeps sᵀr > 0 (not a quadratic's exact pair).
        const r = matVec(a, n, n, s).map((x) => x + 0.1 * rng.normal());
        const p = makePair(s, r);
        expect(dot(p.s, p.r)).toBeGreaterThan(0);
        expect(mem.push(p.sT, p.rT)).toBe(true);
        pushed.push(p);
        tf.dispose([p.sT, p.rT]);
      }
      expect(mem.size).toBe(4);
      const kept = pushed.slice(2);
      const newest = kept[kept.length - 1];
      const gamma =
        initialScaling === 'auto' ? dot(newest.s, newest.r) / dot(newest.r, newest.r) : initialScaling;
      expect(mem.gamma).toBeCloseTo(gamma, 5);
      expect(applyError(mem, denseBfgs(kept, gamma, n), n, rng)).toBeLessThan(1e-4);
      // The stored pairs are the last four pushed, oldest first.
      expect(relErr(mem.pairs[0].s.dataSync(), kept[0].s)).toBe(0);
      expect(relErr(mem.pairs[3].r.dataSync(), kept[3].r)).toBe(0);
      mem.dispose();
    }
  });

  it('equals the dense inverse A⁻¹ once it holds d A-conjugate pairs of a quadratic', () => {
    const n = 10;
    const rng = new Random(2);
    const { a, aInv } = spd(n, 100, rng);
    // A-conjugate directions: Gram–Schmidt of random vectors in the A inner product (float64).
    const dirs: Float64Array[] = [];
    for (let i = 0; i < n; i++) {
      const d = Float64Array.from(rng.normalArray(n));
      for (let pass = 0; pass < 2; pass++) {
        for (const q of dirs) {
          const c = dot(d, matVec(a, n, n, q)) / dot(q, matVec(a, n, n, q));
          for (let j = 0; j < n; j++) d[j] -= c * q[j];
        }
      }
      dirs.push(d.map((x) => x / norm(d)));
    }
    const mem = new LbfgsMemory(flatSpec(n), opts({ memory: n }));
    for (const s of dirs) {
      const p = makePair(s, matVec(a, n, n, s));
      expect(mem.push(p.sT, p.rT)).toBe(true);
      tf.dispose([p.sT, p.rT]);
    }
    expect(mem.size).toBe(n);
    expect(applyError(mem, aInv, n, rng, 6)).toBeLessThan(2e-4);
    // Before the memory is complete it is not A⁻¹ (the test can fail).
    const partial = new LbfgsMemory(flatSpec(n), opts({ memory: n - 3 }));
    for (const s of dirs.slice(0, n - 3)) {
      const p = makePair(s, matVec(a, n, n, s));
      partial.push(p.sT, p.rT);
      tf.dispose([p.sT, p.rT]);
    }
    expect(applyError(partial, aInv, n, rng, 6)).toBeGreaterThan(1e-2);
    partial.dispose();
    mem.dispose();
  });

  it('keeps a pair only when sᵀr > ε (curvature test) and rejects non-finite pairs', () => {
    const mem = new LbfgsMemory(flatSpec(3), opts({ curvatureEpsilon: 1e-3 }));
    const tryPush = (s: number[], r: number[]) => tf.tidy(() => mem.push(vec(s), vec(r)));
    expect(tryPush([1, 0, 0], [-1, 0, 0])).toBe(false); // sᵀr < 0
    expect(tryPush([1, 0, 0], [0, 1, 0])).toBe(false); // sᵀr = 0
    expect(tryPush([1, 0, 0], [5e-4, 1, 0])).toBe(false); // 0 < sᵀr ≤ ε
    expect(tryPush([1, 0, 0], [NaN, 1, 0])).toBe(false);
    expect(tryPush([Infinity, 0, 0], [1, 1, 0])).toBe(false);
    expect(mem.size).toBe(0);
    expect(mem.rejected).toBe(5);
    expect(tryPush([1, 0, 0], [2e-3, 1, 0])).toBe(true);
    expect(mem.size).toBe(1);
    expect(mem.accepted).toBe(1);
    // The secant equation H r = s holds for the newest pair.
    const hr = tf.tidy(() => mem.applyFlat(vec([2e-3, 1, 0])).dataSync());
    expect(relErr(hr, [1, 0, 0])).toBeLessThan(1e-5);
    mem.dispose();
  });

  it('acts as γ·I when empty, and the tree form matches the flat form', () => {
    const tree = { b: tf.zeros([2]), a: tf.zeros([2, 3]) };
    const spec = treeSpec(tree);
    const mem = new LbfgsMemory(spec, opts({ initialScaling: 0.25 }));
    const v = { a: tf.ones([2, 3]), b: tf.tensor1d([2, -4]) };
    const hv = mem.applyInverseHessian(v);
    expect(Array.from(hv.a.dataSync())).toEqual(new Array(6).fill(0.25));
    expect(Array.from(hv.b.dataSync())).toEqual([0.5, -1]);
    const rng = new Random(3);
    for (let i = 0; i < 3; i++) {
      const s = rng.normalArray(8);
      tf.tidy(() => mem.push(vec(s), vec(s.map((x) => 2 * x + 0.01))));
    }
    tf.tidy(() => {
      // Canonical order is a (6 entries) then b (2 entries).
      const flat = mem.applyFlat(vec([1, 1, 1, 1, 1, 1, 2, -4])).dataSync();
      const tr = mem.applyInverseHessian(v);
      expect(relErr(tr.a.dataSync(), flat.slice(0, 6))).toBeLessThan(1e-7);
      expect(relErr(tr.b.dataSync(), flat.slice(6))).toBeLessThan(1e-7);
    });
    tf.dispose([tree.a, tree.b, v.a, v.b, hv.a, hv.b]);
    mem.dispose();
  });
});

// ---------- SR1 ----------

describe('Sr1Memory', () => {
  it('equals A⁻¹ after d pairs of a quadratic along any independent directions', () => {
    // SR1's hereditary property: with r = As and no skipped update, H_d = A⁻¹ for any H₀ and any
    // independent steps (Nocedal & Wright, Thm. 6.1). SR1 amplifies rounding by the inverse of the
    // normalized denominators |wᵀr| / (‖w‖‖r‖); on these draws they stay above ~5e-3 and float32 reaches
    // ~1e-4 (the float64 recursion on the same rounded pairs ~1e-5). A badly scaled fixed H₀ (e.g. I,
    // above A⁻¹'s spectrum [0.01, 1]) costs float32 accuracy through cancellation (~4e-3 on these draws).
    const n = 10;
    const { a, aInv } = spd(n, 100, new Random(4));
    for (const initialScaling of ['auto', 0.1] as const) {
      const rng = new Random(44);
      const probe = new Random(45);
      const mem = new Sr1Memory(flatSpec(n), opts({ memory: n, initialScaling }));
      const pairs: { s: Float64Array; r: Float64Array }[] = [];
      for (let i = 0; i < n; i++) {
        const s = Float64Array.from(Float32Array.from(rng.normalArray(n)));
        const p = makePair(s, matVec(a, n, n, s));
        expect(mem.push(p.sT, p.rT)).toBe(true);
        pairs.push(p);
        tf.dispose([p.sT, p.rT]);
        if (i === n - 3) expect(applyError(mem, aInv, n, probe)).toBeGreaterThan(1e-2);
      }
      const dense = denseSr1(pairs, mem.gamma, 1e-8, n);
      expect(dense.applied.every((x) => x)).toBe(true);
      // The float64 recursion on the same (rounded) pairs: the theorem holds for this data.
      const denseOperator = { applyFlat: (v: tf.Tensor1D) => vec(matVec(dense.h, n, n, v.dataSync())) };
      expect(applyError(denseOperator, aInv, n, probe, 6)).toBeLessThan(1e-4);
      expect(applyError(mem, aInv, n, probe, 6)).toBeLessThan(1e-3);
      mem.dispose();
    }
  });

  it('matches dense sequential SR1 updates (with skips, drops and auto scaling)', () => {
    const n = 6;
    const rng = new Random(5);
    // An indefinite matrix: SR1 does not need positive curvature, only the curvature test sᵀr > ε.
    const q = randomOrthogonal(n, rng);
    const m = spectralMatrix(q, [-2, -0.5, 0.3, 1, 3, 8]);
    for (const initialScaling of ['auto', 0.7] as const) {
      const mem = new Sr1Memory(flatSpec(n), opts({ memory: 3, initialScaling }));
      let kept: { s: Float64Array; r: Float64Array }[] = [];
      let gamma = initialScaling === 'auto' ? 1 : initialScaling;
      let pushes = 0;
      while (pushes < 12) {
        const s = rng.normalArray(n);
        const p = makePair(s, matVec(m, n, n, s));
        if (dot(p.s, p.r) <= 0) {
          expect(mem.push(p.sT, p.rT)).toBe(false);
          tf.dispose([p.sT, p.rT]);
          continue;
        }
        pushes++;
        // Reference semantics: candidates = kept pairs (oldest dropped when full) + the new pair, one
        // sequential pass from H₀ = γI; accepted when the new pair is applied; unapplied older ones go.
        const cand = [...(kept.length === 3 ? kept.slice(1) : kept), p];
        const g =
          initialScaling === 'auto'
            ? (SR1_AUTO_SCALING_FACTOR * dot(p.s, p.r)) / dot(p.r, p.r)
            : initialScaling;
        const ref = denseSr1(cand, g, 1e-8, n);
        const accepted = ref.applied[ref.applied.length - 1];
        expect(mem.push(p.sT, p.rT)).toBe(accepted);
        tf.dispose([p.sT, p.rT]);
        if (accepted) {
          kept = cand.filter((_, i) => ref.applied[i]);
          gamma = g;
        }
        expect(mem.size).toBe(kept.length);
        expect(mem.gamma).toBeCloseTo(gamma, 5);
        expect(applyError(mem, denseSr1(kept, gamma, 1e-8, n).h, n, rng, 2)).toBeLessThan(1e-3);
      }
      mem.dispose();
    }
  });

  it('skips a pair with sᵀ(r − Bs) = 0 (skip rule) and one with rᵀ(s − Hr) = 0 (dual rule)', () => {
    const mem = new Sr1Memory(flatSpec(3), opts({ initialScaling: 1 }));
    const tryPush = (s: number[], r: number[]) => tf.tidy(() => mem.push(vec(s), vec(r)));
    // B = I: r − Bs = e₂ ⟂ s although sᵀr = 1 > ε; applying it would make H singular.
    expect(tryPush([1, 0, 0], [1, 1, 0])).toBe(false);
    // H = I: s − Hr = e₂ ⟂ r although sᵀr = 1 > ε; applying it would make B singular.
    expect(tryPush([1, 1, 0], [1, 0, 0])).toBe(false);
    // A pair already satisfied by H (r = s when H = I) carries no update.
    expect(tryPush([0, 0, 1], [0, 0, 1])).toBe(false);
    // Negative curvature is refused by the curvature test even though SR1 itself could use it.
    expect(tryPush([1, 0, 0], [-2, 0, 0])).toBe(false);
    expect(mem.size).toBe(0);
    // A regular pair passes, and then H r = s.
    expect(tryPush([1, 0, 0], [2, 0.5, 0])).toBe(true);
    const hr = tf.tidy(() => mem.applyFlat(vec([2, 0.5, 0])).dataSync());
    expect(relErr(hr, [1, 0, 0])).toBeLessThan(1e-6);
    mem.dispose();
  });

  it('applies the threshold c of the skip rule |sᵀv| ≥ c‖s‖‖v‖', () => {
    // B = I, s = e₁, r = (1 + t) e₁ + e₂: v = r − s = (t, 1, 0), |sᵀv| / (‖s‖‖v‖) = t / √(1 + t²).
    const t = 0.3;
    const ratio = t / Math.sqrt(1 + t * t); // ≈ 0.287
    const push = (c: number) => {
      const mem = new Sr1Memory(flatSpec(3), opts({ initialScaling: 1, sr1SkipThreshold: c }));
      const ok = tf.tidy(() => mem.push(vec([1, 0, 0]), vec([1 + t, 1, 0])));
      mem.dispose();
      return ok;
    };
    expect(push(ratio * 1.1)).toBe(false);
    expect(push(ratio * 0.9)).toBe(true);
  });
});

// ---------- shared ----------

describe('pair memories: options, errors, memory', () => {
  it('rejects bad options with a ConfigError naming the field', () => {
    const spec = flatSpec(3);
    const cases: [Partial<QuasiNewtonMemoryOptions>, string][] = [
      [{ memory: 0 }, 'memory'],
      [{ memory: 2.5 }, 'memory'],
      [{ initialScaling: -1 }, 'initialScaling'],
      [{ curvatureEpsilon: -1 }, 'curvatureEpsilon'],
      [{ sr1SkipThreshold: 1 }, 'sr1SkipThreshold'],
    ];
    for (const [o, field] of cases) {
      for (const Kind of [LbfgsMemory, Sr1Memory]) {
        let err: unknown;
        try {
          new Kind(spec, opts(o));
        } catch (e) {
          err = e;
        }
        expect(err).toBeInstanceOf(ConfigError);
        expect((err as ConfigError).path).toBe(field);
        expect((err as Error).message).toContain(field);
      }
    }
  });

  it('names the wrong shape of a vector', () => {
    const mem = createPairMemory('lbfgs', flatSpec(4));
    const v = tf.zeros([3]) as tf.Tensor1D;
    expect(() => mem.applyFlat(v)).toThrow(
      /lbfgs memory: v must be a flat vector of 4 entries \(got shape \[3\]\)/,
    );
    expect(() => mem.push(v, v)).toThrow(/s must be a flat vector/);
    v.dispose();
    mem.dispose();
  });

  it.each(['lbfgs', 'sr1'] as const)(
    '%s: tensor count stays flat over many pushes; dispose frees everything',
    (kind) => {
      const n = 20;
      const rng = new Random(6);
      const before = tf.memory().numTensors;
      const mem = createPairMemory(kind, flatSpec(n), { memory: 4 });
      const growth = tensorCountGrowth(() => {
        tf.tidy(() => {
          const s = rng.normalArray(n);
          mem.push(vec(s), vec(s.map((x) => 3 * x + 0.1 * rng.normal())));
          mem.applyFlat(vec(rng.normalArray(n)));
          mem.applyInverseHessian({ y: vec(rng.normalArray(n)) });
        });
      }, 30);
      expect(growth.slice(5).every((g) => g === growth[5])).toBe(true);
      expect(mem.size).toBe(4);
      mem.clear();
      expect(mem.size).toBe(0);
      mem.dispose();
      expect(tf.memory().numTensors).toBe(before);
    },
  );
});
