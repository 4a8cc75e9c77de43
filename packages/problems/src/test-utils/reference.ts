/** Independent float64 references for the problem tests (plain loops, no tfjs). */

/** Per-sample softmax cross-entropy and probabilities of logits A·W + b (A [n, d], W [d, k], b [k]). */
export function softmaxReference(
  a: ArrayLike<number>,
  labels: ArrayLike<number>,
  w: ArrayLike<number>,
  b: ArrayLike<number>,
  n: number,
  d: number,
  k: number,
): { ce: Float64Array; probs: Float64Array; logits: Float64Array } {
  const logits = new Float64Array(n * k);
  const probs = new Float64Array(n * k);
  const ce = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let max = -Infinity;
    for (let c = 0; c < k; c++) {
      let s = b[c];
      for (let j = 0; j < d; j++) s += a[i * d + j] * w[j * k + c];
      logits[i * k + c] = s;
      if (s > max) max = s;
    }
    let z = 0;
    for (let c = 0; c < k; c++) z += Math.exp(logits[i * k + c] - max);
    for (let c = 0; c < k; c++) probs[i * k + c] = Math.exp(logits[i * k + c] - max) / z;
    ce[i] = max + Math.log(z) - logits[i * k + labels[i]];
  }
  return { ce, probs, logits };
}

/** Central finite-difference gradient of a float64 function. */
export function finiteDifferenceGradient(
  f: (v: Float64Array) => number,
  v0: ArrayLike<number>,
  h = 1e-5,
): Float64Array {
  const v = Float64Array.from(v0);
  const g = new Float64Array(v.length);
  for (let i = 0; i < v.length; i++) {
    const old = v[i];
    v[i] = old + h;
    const fp = f(v);
    v[i] = old - h;
    const fm = f(v);
    v[i] = old;
    g[i] = (fp - fm) / (2 * h);
  }
  return g;
}

/** max_i |a_i − b_i| / max(1, max_i |b_i|). */
export function relativeMaxError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let err = 0;
  let scale = 1;
  for (let i = 0; i < a.length; i++) {
    err = Math.max(err, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return err / scale;
}

/** Solves M·x = r by Gaussian elimination with partial pivoting (float64, M [n, n] row-major). */
export function gaussianSolve(m: ArrayLike<number>, r: ArrayLike<number>, n: number): Float64Array {
  const a = Float64Array.from(m);
  const x = Float64Array.from(r);
  for (let col = 0; col < n; col++) {
    let piv = col;
    for (let i = col + 1; i < n; i++) if (Math.abs(a[i * n + col]) > Math.abs(a[piv * n + col])) piv = i;
    if (piv !== col) {
      for (let j = 0; j < n; j++) [a[col * n + j], a[piv * n + j]] = [a[piv * n + j], a[col * n + j]];
      [x[col], x[piv]] = [x[piv], x[col]];
    }
    for (let i = col + 1; i < n; i++) {
      const f = a[i * n + col] / a[col * n + col];
      if (f === 0) continue;
      for (let j = col; j < n; j++) a[i * n + j] -= f * a[col * n + j];
      x[i] -= f * x[col];
    }
  }
  for (let i = n - 1; i >= 0; i--) {
    let s = x[i];
    for (let j = i + 1; j < n; j++) s -= a[i * n + j] * x[j];
    x[i] = s / a[i * n + i];
  }
  return x;
}
