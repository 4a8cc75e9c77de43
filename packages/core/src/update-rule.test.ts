import * as tf from '@tensorflow/tfjs-core';
import { AdamOptimizer, GradientDescentOptimizer, MomentumOptimizer } from './optimizer';
import { type TensorTree, treeDispose, treeToData } from './tree';
import { adamRule, momentumRule } from './update-rule';

/** Reference updates in float64 on plain arrays, written from the formulas. */
function referenceMomentum(p0: number[], grads: number[][], lr: number, beta: number, nesterov: boolean): number[] {
  const p = [...p0];
  const v = p.map(() => 0);
  for (const g of grads) {
    for (let i = 0; i < p.length; i++) {
      v[i] = beta * v[i] + g[i];
      p[i] -= lr * (nesterov ? g[i] + beta * v[i] : v[i]);
    }
  }
  return p;
}

function referenceAdam(p0: number[], grads: number[][], lr: number, b1: number, b2: number, eps: number): number[] {
  const p = [...p0];
  const m = p.map(() => 0);
  const v = p.map(() => 0);
  grads.forEach((g, k) => {
    for (let i = 0; i < p.length; i++) {
      m[i] = b1 * m[i] + (1 - b1) * g[i];
      v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
      const mh = m[i] / (1 - Math.pow(b1, k + 1));
      const vh = v[i] / (1 - Math.pow(b2, k + 1));
      p[i] -= (lr * mh) / (Math.sqrt(vh) + eps);
    }
  });
  return p;
}

const P0 = [0.5, -1.25, 2, 0];
const GRADS = [
  [1, -2, 0.5, 3],
  [0.25, 1, -4, -1],
  [-3, 0.5, 2, 0.125],
];

/** Runs a rule over GRADS from P0 (a one-entry tree), returns the final parameters; disposes everything. */
function runRule(rule: ReturnType<typeof momentumRule>): number[] {
  let p: TensorTree = { w: tf.tensor1d(P0) };
  let state = rule.init(p);
  GRADS.forEach((g, k) => {
    const grads = { w: tf.tensor1d(g) };
    const out = rule.update(p, grads, state, k);
    treeDispose(grads);
    treeDispose(p);
    treeDispose(state);
    p = out.params;
    state = out.state;
  });
  const values = Array.from(p.w.dataSync());
  treeDispose(p);
  treeDispose(state);
  return values;
}

describe('update rules', () => {
  it('gd, heavy-ball and Nesterov momentum follow the formulas (float64 reference)', () => {
    for (const [beta, nesterov] of [
      [0, false],
      [0.9, false],
      [0.5, true],
    ] as const) {
      const got = runRule(momentumRule({ learningRate: 0.1, momentum: beta, nesterov }));
      const want = referenceMomentum(P0, GRADS, 0.1, beta, nesterov);
      got.forEach((g, i) => expect(g).toBeCloseTo(want[i], 5));
    }
  });

  it('adam follows the formulas with bias correction (float64 reference)', () => {
    const got = runRule(adamRule({ learningRate: 0.05, beta1: 0.8, beta2: 0.95, epsilon: 1e-6 }));
    const want = referenceAdam(P0, GRADS, 0.05, 0.8, 0.95, 1e-6);
    got.forEach((g, i) => expect(g).toBeCloseTo(want[i], 5));
  });

  it('updates stacked members independently (elementwise)', () => {
    const rule = adamRule({ learningRate: 0.05, beta1: 0.9, beta2: 0.999, epsilon: 1e-8 });
    const before = tf.memory().numTensors;
    const rows = tf.tidy(() => {
      const stacked = { w: tf.tensor2d([P0, P0.map((v) => -v)]) };
      const grads = { w: tf.tensor2d([GRADS[0], GRADS[1]]) };
      return rule.update(stacked, grads, rule.init(stacked), 0).params.w.arraySync() as number[][];
    });
    expect(tf.memory().numTensors).toBe(before);
    for (const [row, p0, g] of [
      [rows[0], P0, GRADS[0]],
      [rows[1], P0.map((v) => -v), GRADS[1]],
    ] as const) {
      const want = referenceAdam(p0, [g], 0.05, 0.9, 0.999, 1e-8);
      row.forEach((v, i) => expect(v).toBeCloseTo(want[i], 5));
    }
  });

  it('names a state entry that does not belong to the parameters', () => {
    const rule = momentumRule({ learningRate: 0.1, momentum: 0.9, nesterov: false });
    const p = { w: tf.tensor1d([1]) };
    const g = { w: tf.tensor1d([1]) };
    expect(() => tf.tidy(() => rule.update(p, g, { other: tf.tensor1d([0]) }, 0).params.w)).toThrow(
      /no 'velocity\/w'.*state entries: other/,
    );
    treeDispose(p);
    treeDispose(g);
  });
});

describe('outer optimizers on the update rules', () => {
  const x0 = () => ({ w: tf.tensor1d(P0) });

  function run(opt: GradientDescentOptimizer | MomentumOptimizer | AdamOptimizer, steps: number[][]): number[] {
    let x: TensorTree = x0();
    for (const g of steps) {
      const grads = { w: tf.tensor1d(g) };
      const next = opt.step(x, grads);
      treeDispose(grads);
      treeDispose(x);
      x = next;
    }
    const values = Array.from(x.w.dataSync());
    treeDispose(x);
    return values;
  }

  it('equal the rules they are made of, and keep the tensor count flat', () => {
    const adam = new AdamOptimizer({ learningRate: 0.05, beta1: 0.8, beta2: 0.95, epsilon: 1e-6 });
    run(adam, GRADS.slice(0, 1));
    const before = tf.memory().numTensors;
    for (let i = 0; i < 20; i++) run(adam, GRADS);
    expect(tf.memory().numTensors).toBe(before);
    adam.dispose();
    const fresh = new AdamOptimizer({ learningRate: 0.05, beta1: 0.8, beta2: 0.95, epsilon: 1e-6 });
    const got = run(fresh, GRADS);
    fresh.dispose();
    const want = referenceAdam(P0, GRADS, 0.05, 0.8, 0.95, 1e-6);
    got.forEach((g, i) => expect(g).toBeCloseTo(want[i], 5));
  });

  it('checkpoint and restore mid-run: the continued run equals an uninterrupted one', () => {
    for (const make of [
      () => new MomentumOptimizer({ learningRate: 0.1, momentum: 0.9, nesterov: true }),
      () => new AdamOptimizer({ learningRate: 0.05, beta1: 0.9, beta2: 0.999, epsilon: 1e-8 }),
    ]) {
      const whole = make();
      const straight = run(whole, GRADS);
      whole.dispose();
      const first = make();
      run(first, GRADS.slice(0, 2));
      const saved: unknown = JSON.parse(JSON.stringify(first.getState()));
      first.dispose();
      const second = make();
      second.setState(saved);
      // The restored optimizer continues at update 3 from the x it would have reached after 2.
      let x: TensorTree = x0();
      const a = make();
      for (const g of GRADS.slice(0, 2)) {
        const grads = { w: tf.tensor1d(g) };
        const next = a.step(x, grads);
        treeDispose(grads);
        treeDispose(x);
        x = next;
      }
      a.dispose();
      const grads = { w: tf.tensor1d(GRADS[2]) };
      const last = second.step(x, grads);
      expect(Array.from(last.w.dataSync())).toEqual(straight);
      treeDispose(grads);
      treeDispose(x);
      treeDispose(last);
      second.dispose();
    }
  });

  it('read the states that earlier versions saved (Adam t/m/v, momentum velocity without t)', () => {
    const x = x0();
    const g = { w: tf.tensor1d(GRADS[0]) };
    const reference = new AdamOptimizer({ learningRate: 0.05, beta1: 0.9, beta2: 0.999, epsilon: 1e-8 });
    const x1 = reference.step(x, g);
    const state = reference.getState() as { t: number; m: unknown; v: unknown };
    expect(state.t).toBe(1);
    // The form earlier versions wrote: { t, lrScale, m, v } with plain-array trees (through JSON).
    const legacy: unknown = JSON.parse(JSON.stringify({ t: 1, lrScale: 1, m: state.m, v: state.v }));
    const restored = new AdamOptimizer({ learningRate: 0.05, beta1: 0.9, beta2: 0.999, epsilon: 1e-8 });
    restored.setState(legacy);
    const a = reference.step(x1, g);
    const b = restored.step(x1, g);
    expect(Array.from(b.w.dataSync())).toEqual(Array.from(a.w.dataSync()));
    const momentum = new MomentumOptimizer({ learningRate: 0.1, momentum: 0.9, nesterov: false });
    momentum.setState({ lrScale: 0.5, velocity: treeToData({ w: g.w }) });
    const m = momentum.step(x, g);
    // v = 0.9·g + g, x − 0.1·0.5·v
    const want = P0.map((p, i) => p - 0.05 * 1.9 * GRADS[0][i]);
    Array.from(m.w.dataSync()).forEach((v, i) => expect(v).toBeCloseTo(want[i], 6));
    expect(() => momentum.setState({ velocity: null })).toThrow(/no step-size scale/);
    for (const t of [x, g, x1, a, b, m]) treeDispose(t);
    reference.dispose();
    restored.dispose();
    momentum.dispose();
  });
});
