/**
 * Benchmark of the inner solvers on the inner problem of data hyper-cleaning: weighted multinomial logistic
 * regression
 *
 *     g(x, W, b) = (1/n) Σᵢ σ(xᵢ) CE(softmax(Wᵀaᵢ + b), cᵢ) + (λ/2)‖W‖²
 *
 * with per-sample weights σ(xᵢ) (the outer variable, drawn at random here as in the middle of a run). Each
 * solver runs from W = 0 until ‖∇_y g‖ ≤ tolerance; the table reports gradient evaluations and seconds to
 * get there, and both as ratios to GD's (< 1: fewer than GD). Data: the first n Fashion-MNIST training
 * images when the data set is found (see @bilevel/datasets' search order), otherwise synthetic data of the
 * same shape. A solver that misses the tolerance within the budget shows `reached: no`, and its ratio
 * is then a bound. Two sizes: the full 784-pixel images (7,850 unknowns; dense BFGS is skipped above its
 * maxDimension) and 4×4-pooled 7×7 images (500 unknowns), where all four solvers run.
 */
import * as tf from '@tensorflow/tfjs-core';
import {
  type BilevelProblem,
  createOracles,
  Random,
  registry,
  sigmoid,
  softmaxCrossEntropy,
  type TensorTree,
} from '@bilevel/core';
import { findFashionMnist, loadFashionMnist, makeClassification } from '@bilevel/datasets';
import '@bilevel/solvers';

export interface SolversBenchOptions {
  /** Training samples n. */
  readonly samples?: number;
  /** L2 weight λ. */
  readonly l2?: number;
  /** Gradient-norm tolerance that counts as solved. */
  readonly tolerance?: number;
  /** Iteration budget of every solver. */
  readonly maxIterations?: number;
  /** GD step; by default the safe 1/L, L = ½λmax(ÃᵀÃ/n)·max σ(xᵢ) + λ. */
  readonly gdStepSize?: number;
  /** Explicit Fashion-MNIST folder. */
  readonly dataPath?: string;
  /** Which solvers, by registered name. */
  readonly solvers?: readonly string[];
}

export interface SolversBenchRow {
  readonly problem: string;
  /** Unknowns (entries of W and b). */
  readonly dimension: number;
  readonly solver: string;
  /** Whether ‖∇_y g‖ ≤ tolerance was reached within the budget. */
  readonly reached: boolean;
  readonly iterations: number;
  /** Value-and-gradient evaluations (line-search trials included). */
  readonly evaluations: number;
  readonly seconds: number;
  readonly gradientNorm: number;
  readonly loss: number;
  /** evaluations / GD's evaluations on the same problem. */
  readonly evaluationRatio: number;
  /** seconds / GD's seconds on the same problem. */
  readonly timeRatio: number;
  /** Why a solver did not run. */
  readonly note?: string;
}

/** The weighted logistic-regression inner problem. */
class WeightedLogisticRegression implements BilevelProblem {
  readonly name = 'hyper-cleaning-inner';
  private readonly a: tf.Tensor2D;
  private readonly c: tf.Tensor2D;

  constructor(
    images: Float32Array,
    labels: Int32Array,
    readonly n: number,
    readonly features: number,
    readonly classes: number,
    readonly l2: number,
    private readonly sampleLogits: Float32Array,
  ) {
    this.a = tf.keep(tf.tensor2d(images, [n, features]));
    this.c = tf.keep(
      tf.tidy(() => tf.cast(tf.oneHot(tf.tensor1d(labels, 'int32'), classes), 'float32')) as tf.Tensor2D,
    );
  }

  initialX(): TensorTree {
    return { sampleLogits: tf.tensor1d(this.sampleLogits) };
  }

  initialY(): TensorTree {
    return { bias: tf.zeros([this.classes]), weights: tf.zeros([this.features, this.classes]) };
  }

  innerLoss(x: TensorTree, y: TensorTree): tf.Scalar {
    return tf.tidy(() => {
      const logits = tf.add(tf.matMul(this.a, y.weights), y.bias) as tf.Tensor2D;
      const ce = softmaxCrossEntropy(logits, this.c, { weights: sigmoid(x.sampleLogits) as tf.Tensor1D });
      return tf.add(ce, tf.mul(0.5 * this.l2, tf.sum(tf.square(y.weights)))) as tf.Scalar;
    });
  }

  outerLoss(x: TensorTree, y: TensorTree): tf.Scalar {
    return this.innerLoss(x, y);
  }

  dispose(): void {
    tf.dispose([this.a, this.c]);
  }
}

/** 4×4 average pooling of rows × cols images (row-major, one image per row). */
function pool(images: Float32Array, count: number, rows: number, cols: number, f: number): Float32Array {
  const pr = Math.floor(rows / f);
  const pc = Math.floor(cols / f);
  const out = new Float32Array(count * pr * pc);
  for (let i = 0; i < count; i++) {
    for (let r = 0; r < pr * f; r++) {
      for (let c = 0; c < pc * f; c++) {
        out[i * pr * pc + Math.floor(r / f) * pc + Math.floor(c / f)] +=
          images[i * rows * cols + r * cols + c] / (f * f);
      }
    }
  }
  return out;
}

/** ½λmax(ÃᵀÃ/n) by power iteration, Ã = [A 1] (Böhning's bound on the softmax cross-entropy Hessian). */
function halfLargestEigenvalue(a: Float32Array, n: number, d: number): number {
  let v = new Float64Array(d + 1).fill(1 / Math.sqrt(d + 1));
  let lambda = 0;
  for (let it = 0; it < 30; it++) {
    const next = new Float64Array(d + 1);
    for (let i = 0; i < n; i++) {
      let s = v[d];
      for (let j = 0; j < d; j++) s += a[i * d + j] * v[j];
      for (let j = 0; j < d; j++) next[j] += a[i * d + j] * s;
      next[d] += s;
    }
    const norm = Math.sqrt(next.reduce((t, x) => t + x * x, 0));
    lambda = norm / n;
    v = next.map((x) => x / norm);
  }
  return 0.5 * lambda;
}

interface Dataset {
  readonly source: string;
  readonly images: Float32Array;
  readonly labels: Int32Array;
  readonly count: number;
  readonly rows: number;
  readonly cols: number;
  readonly classes: number;
}

function loadData(samples: number, dataPath?: string): Dataset {
  const folder = findFashionMnist(dataPath);
  if (folder) {
    const d = loadFashionMnist({ split: 'train', limit: samples, path: folder });
    return { source: 'fashion-mnist', ...d };
  }
  const s = makeClassification({ samples, features: 784, classes: 10, seed: 1, separation: 3, noise: 1 });
  // Squash to [0, 1] like pixel intensities.
  const images = s.inputs.map((v) => 1 / (1 + Math.exp(-v)));
  return {
    source: 'synthetic',
    images,
    labels: s.labels,
    count: s.count,
    rows: 28,
    cols: 28,
    classes: s.classes,
  };
}

/** Runs the benchmark and returns one row per (problem size, solver). */
export function runSolversBench(options: SolversBenchOptions = {}): SolversBenchRow[] {
  const samples = options.samples ?? 1000;
  const l2 = options.l2 ?? 1e-3;
  const tolerance = options.tolerance ?? 1e-3;
  const maxIterations = options.maxIterations ?? 1000;
  const solvers = options.solvers ?? ['gd', 'bfgs', 'lbfgs', 'sr1'];
  const data = loadData(samples, options.dataPath);
  const rng = new Random(3);
  const sampleLogits = Float32Array.from({ length: data.count }, () => 2 * rng.normal());
  const maxWeight = Math.max(...Array.from(sampleLogits, (z) => 1 / (1 + Math.exp(-z))));
  const sizes = [
    { label: `${data.source} 28×28`, images: data.images, features: data.rows * data.cols },
    {
      label: `${data.source} 7×7 pooled`,
      images: pool(data.images, data.count, data.rows, data.cols, 4),
      features: 49,
    },
  ];
  const rows: SolversBenchRow[] = [];
  for (const size of sizes) {
    const problem = new WeightedLogisticRegression(
      size.images,
      data.labels,
      data.count,
      size.features,
      data.classes,
      l2,
      sampleLogits,
    );
    const dimension = size.features * data.classes + data.classes;
    const lipschitz = halfLargestEigenvalue(size.images, data.count, size.features) * maxWeight + l2;
    const x = problem.initialX();
    const y0 = problem.initialY();
    const measured: Omit<SolversBenchRow, 'evaluationRatio' | 'timeRatio'>[] = [];
    for (const name of solvers) {
      const solverOptions: Record<string, unknown> = { maxIterations, tolerance };
      if (name === 'gd')
        Object.assign(solverOptions, { stepSize: options.gdStepSize ?? 1 / lipschitz, checkEvery: 1 });
      if (name === 'bfgs' && dimension > 2000) {
        measured.push({
          problem: size.label,
          dimension,
          solver: name,
          reached: false,
          iterations: 0,
          evaluations: NaN,
          seconds: NaN,
          gradientNorm: NaN,
          loss: NaN,
          note: `skipped: ${dimension} unknowns > maxDimension 2000 (dense n × n inverse Hessian)`,
        });
        continue;
      }
      const solver = registry.create('innerSolver', name, solverOptions);
      const oracles = createOracles(problem);
      const t0 = performance.now();
      const res = solver.solve({ oracles, x, y0 });
      const seconds = (performance.now() - t0) / 1000;
      const loss = problem.innerLoss(x, res.y);
      measured.push({
        problem: size.label,
        dimension,
        solver: name,
        reached: res.gradientNorm <= tolerance,
        iterations: res.iterations,
        evaluations: oracles.counts.innerGradY + oracles.counts.innerValue,
        seconds,
        gradientNorm: res.gradientNorm,
        loss: loss.dataSync()[0],
      });
      loss.dispose();
      tf.dispose(Object.values(res.y));
      res.curvature?.dispose();
    }
    const gd = measured.find((m) => m.solver === 'gd');
    for (const m of measured) {
      rows.push({
        ...m,
        evaluationRatio: gd ? m.evaluations / gd.evaluations : NaN,
        timeRatio: gd ? m.seconds / gd.seconds : NaN,
      });
    }
    tf.dispose([...Object.values(x), ...Object.values(y0)]);
    problem.dispose();
  }
  return rows;
}

/** The rows as an aligned text table. */
export function formatSolversTable(rows: readonly SolversBenchRow[]): string {
  const head = [
    'problem',
    'n',
    'solver',
    'reached',
    'iters',
    'evals',
    'seconds',
    '‖∇g‖',
    'g',
    'evals/GD',
    'time/GD',
  ];
  const body = rows.map((r) =>
    r.note
      ? [r.problem, String(r.dimension), r.solver, r.note, '', '', '', '', '', '', '']
      : [
          r.problem,
          String(r.dimension),
          r.solver,
          r.reached ? 'yes' : 'no',
          String(r.iterations),
          String(r.evaluations),
          r.seconds.toFixed(2),
          r.gradientNorm.toExponential(1),
          r.loss.toFixed(5),
          r.evaluationRatio.toFixed(3),
          r.timeRatio.toFixed(3),
        ],
  );
  const widths = head.map((h, i) =>
    Math.max(h.length, ...body.filter((b) => b[4] !== '').map((b) => b[i].length)),
  );
  const line = (cells: string[]) =>
    cells[4] === '' && cells[3] !== '' && cells[3] !== 'yes' && cells[3] !== 'no'
      ? cells
          .slice(0, 3)
          .map((c, i) => c.padEnd(widths[i]))
          .join('  ') +
        '  ' +
        cells[3]
      : cells.map((c, i) => c.padEnd(widths[i])).join('  ');
  return [line(head), ...body.map(line)].join('\n');
}

if (require.main === module) {
  console.log(formatSolversTable(runSolversBench()));
}
