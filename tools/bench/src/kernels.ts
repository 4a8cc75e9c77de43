/**
 * Kernel benchmark of the tfjs backends: GFLOP/s of a 512³ matmul and of the convolution layers of Conv-4
 * (Vinyals et al., 2016; Finn et al., 2017: 3×3, 64 channels, at 28×28 for Omniglot and 84×84 for
 * miniImageNet) and ResNet-12 (Oreshkin et al., 2018; Lee et al., 2019: 3×3 with 64/160/320/640 channels at
 * 84/42/21/10 pixels), forward and backward (input and filter gradients), on `cpu`, `wasm`, `cpu-blas` and
 * the raw BLAS (the addon's sgemm on the equivalent GEMM: for a convolution, the im2col product
 * [N·outH·outW, 9·inC]·[9·inC, outC], an upper bound that leaves out building the patch matrix). Also the
 * milliseconds of a gradient and a Hessian-vector product of a dense softmax regression on 784-d inputs (the
 * shape of the hyper-cleaning and hyperparameter problems) and of a Conv-4 training step.
 *
 * Run: `npx tsc -p tools/bench/tsconfig.json && node tools/bench/dist/kernels.js` (after building
 * @bilevel/core, @bilevel/tfjs-blas and @bilevel/backend). Timings are wall clock on a possibly shared
 * machine: read the ratios, not the absolute numbers.
 */
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '@bilevel/backend';
import { blasInfo, isBlasAvailable, sgemm } from '@bilevel/tfjs-blas';
import { median } from './suite/stats';

export type BenchBackend = 'cpu' | 'wasm' | 'cpu-blas' | 'blas';
export const BENCH_BACKENDS: readonly BenchBackend[] = ['cpu', 'wasm', 'cpu-blas', 'blas'];

export interface KernelBenchRow {
  /** e.g. `matmul 512³`, `Conv-4 84×84 64→64 fwd`. */
  readonly name: string;
  /** GFLOP/s per backend (NaN when the backend was not run). */
  readonly gflops: Readonly<Record<BenchBackend, number>>;
  /** Backends timed on fewer images or a crop of the layer (see {@link KernelBenchOptions.maxSeconds}). */
  readonly cropped: readonly BenchBackend[];
}

export interface TimedRow {
  readonly name: string;
  /** Median milliseconds per call per backend (NaN when not run). */
  readonly ms: Readonly<Record<BenchBackend, number>>;
}

export interface KernelBenchResult {
  readonly rows: KernelBenchRow[];
  /** Whole computations: softmax-regression gradient and Hessian-vector product, a Conv-4 training step. */
  readonly steps: TimedRow[];
  readonly blas: string;
  /** Best-of GFLOP/s of the 512³ matmul, cpu-blas and raw BLAS measured alternately. */
  readonly matmul: { readonly cpuBlas: number; readonly raw: number; readonly efficiency: number };
}

export interface KernelBenchOptions {
  /** Backends to run (default: all available). */
  readonly backends?: readonly BenchBackend[];
  /** Images per convolution call (default 8). */
  readonly batch?: number;
  /** Seconds of repeated runs per measurement after a warm-up run (default 0.4). */
  readonly seconds?: number;
  /**
   * Longest single call to time (default 1.5 s): a slower backend is timed on fewer images, cropped if need be
   * (marked `*`), since the JS kernels run at well under 1 GFLOP/s.
   */
  readonly maxSeconds?: number;
  /** Include the ResNet-12 layers (default true). */
  readonly resnet?: boolean;
  /** Print the tables (default true). */
  readonly print?: boolean;
}

interface ConvLayer {
  readonly net: string;
  readonly size: number;
  readonly inC: number;
  readonly outC: number;
}

/** The distinct 3×3 'same' convolutions of each network. */
function convLayers(resnet: boolean): ConvLayer[] {
  const conv4: ConvLayer[] = [
    { net: 'Conv-4', size: 28, inC: 1, outC: 64 },
    { net: 'Conv-4', size: 28, inC: 64, outC: 64 },
    { net: 'Conv-4', size: 84, inC: 3, outC: 64 },
    { net: 'Conv-4', size: 84, inC: 64, outC: 64 },
    { net: 'Conv-4', size: 42, inC: 64, outC: 64 },
  ];
  const resnet12: ConvLayer[] = [
    { net: 'ResNet-12', size: 84, inC: 3, outC: 64 },
    { net: 'ResNet-12', size: 84, inC: 64, outC: 64 },
    { net: 'ResNet-12', size: 42, inC: 64, outC: 160 },
    { net: 'ResNet-12', size: 42, inC: 160, outC: 160 },
    { net: 'ResNet-12', size: 21, inC: 160, outC: 320 },
    { net: 'ResNet-12', size: 21, inC: 320, outC: 320 },
    { net: 'ResNet-12', size: 10, inC: 320, outC: 640 },
    { net: 'ResNet-12', size: 10, inC: 640, outC: 640 },
  ];
  return resnet ? [...conv4, ...resnet12] : conv4;
}


/** Median seconds of `fn` after one warm-up run, repeated for about `seconds` (a single run if slower). */
function timeIt(fn: () => void, seconds: number): number {
  let t0 = process.hrtime.bigint();
  fn();
  const first = Number(process.hrtime.bigint() - t0) / 1e9;
  if (first > seconds) return first;
  const times: number[] = [];
  const deadline = Date.now() + seconds * 1000;
  while (times.length < 3 || (Date.now() < deadline && times.length < 50)) {
    t0 = process.hrtime.bigint();
    fn();
    times.push(Number(process.hrtime.bigint() - t0) / 1e9);
  }
  return median(times);
}

function randomArray(size: number, seed: number): Float32Array {
  let a = seed >>> 0;
  const out = new Float32Array(size);
  for (let i = 0; i < size; i++) {
    a = (Math.imul(a, 1664525) + 1013904223) >>> 0;
    out[i] = a / 4294967296 - 0.5;
  }
  return out;
}

/** Runs a tfjs computation and waits for its values (dataSync), disposing everything it made. */
function runSync(fn: () => tf.Tensor): void {
  tf.tidy(() => {
    fn().dataSync();
  });
}

async function useBackend(name: 'cpu' | 'wasm' | 'cpu-blas'): Promise<void> {
  await initBackend({ backend: name, log: () => undefined });
}

function emptyRecord(): Record<BenchBackend, number> {
  return { cpu: NaN, wasm: NaN, 'cpu-blas': NaN, blas: NaN };
}

/** GFLOP/s of the 512³ matmul on a tfjs backend. */
function matmulTf(n: number, seconds: number): number {
  const a = tf.tensor2d(randomArray(n * n, 1), [n, n]);
  const b = tf.tensor2d(randomArray(n * n, 2), [n, n]);
  const s = timeIt(() => runSync(() => tf.matMul(a, b)), seconds);
  tf.dispose([a, b]);
  return (2 * n ** 3) / s / 1e9;
}

function matmulRaw(n: number, seconds: number): number {
  const a = randomArray(n * n, 1);
  const b = randomArray(n * n, 2);
  const c = new Float32Array(n * n);
  const s = timeIt(() => sgemm(false, false, n, n, n, 1, a, b, 0, c), seconds);
  return (2 * n ** 3) / s / 1e9;
}

/** Multiply-adds of a 3×3 'same' stride-1 convolution that touch the image (not the zero padding), ×2. */
export function convFlops(batch: number, size: number, inC: number, outC: number): number {
  // Along one axis the output pixels see 3·size − 2 in-bounds taps in all; the 3×3 window is their product.
  return 2 * batch * (3 * size - 2) ** 2 * inC * outC;
}

type ConvKernel = 'fwd' | 'bwdInput' | 'bwdFilter';

interface Measured {
  /** Useful GFLOP/s. */
  readonly gflops: number;
  /** Whether a smaller batch or image than asked for was timed (slow backends). */
  readonly cropped: boolean;
}

/** One run of a conv kernel on tfjs at (batch, size), in seconds, or `timeIt` of it when `repeat`. */
function convKernelSeconds(
  layer: ConvLayer,
  kernel: ConvKernel,
  batch: number,
  size: number,
  seconds: number,
  repeat: boolean,
): number {
  const { inC, outC } = layer;
  const x = tf.tensor4d(randomArray(batch * size * size * inC, 3), [batch, size, size, inC]);
  const w = tf.tensor4d(randomArray(9 * inC * outC, 4), [3, 3, inC, outC]);
  const dy = tf.tensor4d(randomArray(batch * size * size * outC, 5), [batch, size, size, outC]);
  const run = (): void => {
    if (kernel === 'fwd') runSync(() => tf.conv2d(x, w, 1, 'same'));
    else if (kernel === 'bwdInput')
      runSync(() => tf.conv2dTranspose(dy, w, [batch, size, size, inC], 1, 'same'));
    else {
      runSync(
        () =>
          tf.engine().runKernel(
            'Conv2DBackpropFilter',
            { x, dy },
            {
              strides: 1,
              pad: 'same',
              dataFormat: 'NHWC',
              filterShape: [3, 3, inC, outC],
            },
          ) as tf.Tensor,
      );
    }
  };
  let t: number;
  if (repeat) t = timeIt(run, seconds);
  else {
    const t0 = process.hrtime.bigint();
    run();
    t = Number(process.hrtime.bigint() - t0) / 1e9;
  }
  tf.dispose([x, w, dy]);
  return t;
}

/**
 * GFLOP/s of one conv kernel of `layer` on the current tfjs backend at `batch` images. A backend too slow to
 * run the whole layer within `maxSeconds` (the JS kernels run at well under 1 GFLOP/s) is timed on fewer images,
 * cropped if need be: its rate hardly depends on the image size, and the FLOPs counted are the in-bounds ones.
 */
function convKernelRate(
  layer: ConvLayer,
  kernel: ConvKernel,
  batch: number,
  seconds: number,
  maxSeconds: number,
): Measured {
  // Probe on one image, doubling its size while a run stays short, so that a fast backend's rate is not
  // judged on a call dominated by per-op overhead.
  let probeSize = Math.min(layer.size, 6);
  let probe = convKernelSeconds(layer, kernel, 1, probeSize, seconds, false);
  while (probeSize < layer.size && probe < maxSeconds / 8) {
    probeSize = Math.min(layer.size, 2 * probeSize);
    probe = convKernelSeconds(layer, kernel, 1, probeSize, seconds, false);
  }
  const rate = convFlops(1, probeSize, layer.inC, layer.outC) / probe;
  let b = batch;
  let size = layer.size;
  if (convFlops(b, size, layer.inC, layer.outC) / rate > maxSeconds) {
    b = Math.max(1, Math.floor((maxSeconds * rate) / convFlops(1, size, layer.inC, layer.outC)));
    while (b === 1 && size > 1 && convFlops(1, size, layer.inC, layer.outC) / rate > maxSeconds) size--;
  }
  const t = convKernelSeconds(layer, kernel, b, size, seconds, true);
  return {
    gflops: convFlops(b, size, layer.inC, layer.outC) / t / 1e9,
    cropped: b !== batch || size !== layer.size,
  };
}

/** Forward and backward (input + filter gradients) GFLOP/s of a layer on the current tfjs backend. */
function convTf(
  layer: ConvLayer,
  batch: number,
  seconds: number,
  maxSeconds: number,
): { fwd: Measured; bwd: Measured } {
  const fwd = convKernelRate(layer, 'fwd', batch, seconds, maxSeconds);
  const bi = convKernelRate(layer, 'bwdInput', batch, seconds, maxSeconds);
  const bf = convKernelRate(layer, 'bwdFilter', batch, seconds, maxSeconds);
  // Both gradients have the forward's FLOPs: the backward rate is 2 / (1/r_input + 1/r_filter).
  const bwd = 2 / (1 / bi.gflops + 1 / bf.gflops);
  return { fwd, bwd: { gflops: bwd, cropped: bi.cropped || bf.cropped } };
}

/**
 * The raw BLAS on the layer's im2col GEMMs (forward P·W, backward dY·Wᵀ and Pᵀ·dY), with the same useful
 * FLOPs as the tfjs columns: how fast the convolution would be if building the patch matrix were free.
 */
function convRaw(layer: ConvLayer, batch: number, seconds: number): { fwd: Measured; bwd: Measured } {
  const m = batch * layer.size * layer.size;
  const k = 9 * layer.inC;
  const n = layer.outC;
  const p = randomArray(m * k, 6);
  const w = randomArray(k * n, 7);
  const y = new Float32Array(m * n);
  const flops = convFlops(batch, layer.size, layer.inC, layer.outC);
  const fwd = timeIt(() => sgemm(false, false, m, n, k, 1, p, w, 0, y), seconds);
  const cols = new Float32Array(m * k);
  const dw = new Float32Array(k * n);
  const bwdInput = timeIt(() => sgemm(false, true, m, k, n, 1, y, w, 0, cols), seconds);
  const bwdFilter = timeIt(() => sgemm(true, false, k, n, m, 1, p, y, 0, dw), seconds);
  return {
    fwd: { gflops: flops / fwd / 1e9, cropped: false },
    bwd: { gflops: (2 * flops) / (bwdInput + bwdFilter) / 1e9, cropped: false },
  };
}

/**
 * Softmax regression on n × 784 inputs with 10 classes: the gradient in the weights, and a Hessian-vector
 * product by double backprop (what CG, Neumann and quasi-Newton estimators call).
 */
function logisticRegressionTf(n: number, seconds: number): { grad: number; hvp: number } {
  const x = tf.tensor2d(randomArray(n * 784, 8), [n, 784]);
  const labels = tf
    .oneHot(
      tf.tensor1d(
        Array.from({ length: n }, (_, i) => i % 10),
        'int32',
      ),
      10,
    )
    .toFloat();
  const w = tf.tensor2d(randomArray(784 * 10, 9), [784, 10]);
  const v = tf.tensor2d(randomArray(784 * 10, 10), [784, 10]);
  // Mean cross-entropy, log Σ exp(z) − ⟨z, y⟩ per row (first order only, so tfjs' logSumExp is fine).
  const loss = (wv: tf.Tensor) => {
    const logits = tf.matMul(x, wv);
    return tf.mean(tf.sub(tf.logSumExp(logits, 1), tf.sum(tf.mul(logits, labels), 1)));
  };
  const grad = timeIt(() => runSync(() => tf.grad(loss)(w)), seconds);
  const quadratic = (wv: tf.Tensor) => tf.mean(tf.square(tf.sub(tf.matMul(x, wv), labels)));
  const hvp = timeIt(
    () => runSync(() => tf.grad((wv: tf.Tensor) => tf.sum(tf.mul(tf.grad(quadratic)(wv), v)))(w)),
    seconds,
  );
  tf.dispose([x, labels, w, v]);
  return { grad: grad * 1000, hvp: hvp * 1000 };
}

/**
 * One training step of Conv-4 (4 × [conv 3×3 → batch norm from moments → relu → max-pool 2×2], then a
 * linear head and softmax cross-entropy) on 25 Omniglot-sized images: the gradient in every parameter.
 */
function convnetStepMs(seconds: number, maxSeconds: number): number {
  const n = 25;
  const x = tf.tensor4d(randomArray(n * 28 * 28, 11), [n, 28, 28, 1]);
  const labels = tf
    .oneHot(
      tf.tensor1d(
        Array.from({ length: n }, (_, i) => i % 5),
        'int32',
      ),
      5,
    )
    .toFloat();
  const params: tf.Tensor[] = [];
  let c = 1;
  for (let block = 0; block < 4; block++) {
    params.push(
      tf.tensor4d(randomArray(9 * c * 64, 12 + block), [3, 3, c, 64]),
      tf.zeros([64]),
      tf.ones([64]),
      tf.zeros([64]),
    );
    c = 64;
  }
  params.push(tf.tensor2d(randomArray(64 * 5, 20), [64, 5]));
  const loss = (...ps: tf.Tensor[]): tf.Scalar => {
    let h: tf.Tensor4D = x;
    for (let block = 0; block < 4; block++) {
      const [w, bias, gamma, beta] = ps.slice(4 * block, 4 * block + 4);
      h = tf.add(tf.conv2d(h, w as tf.Tensor4D, 1, 'same'), bias);
      const { mean, variance } = tf.moments(h, [0, 1, 2]);
      h = tf.add(tf.mul(tf.div(tf.sub(h, mean), tf.sqrt(tf.add(variance, 1e-5))), gamma), beta);
      h = tf.maxPool(tf.relu(h), 2, 2, 'valid');
    }
    const logits = tf.matMul(tf.reshape(h, [n, -1]), ps[16]);
    return tf.mean(tf.sub(tf.logSumExp(logits, 1), tf.sum(tf.mul(logits, labels), 1)));
  };
  const step = (): void => {
    tf.tidy(() => {
      for (const g of tf.grads(loss)(params)) g.dataSync();
    });
  };
  const t0 = process.hrtime.bigint();
  step();
  const first = Number(process.hrtime.bigint() - t0) / 1e9;
  const t = first > maxSeconds ? first : timeIt(step, seconds);
  tf.dispose([x, labels, ...params]);
  return t * 1000;
}

/** The 512³ matmul on cpu-blas and on the raw BLAS, alternately (so both see the same machine load). */
async function matmulEfficiency(
  seconds: number,
): Promise<{ cpuBlas: number; raw: number; efficiency: number }> {
  await useBackend('cpu-blas');
  let cpuBlas = 0;
  let raw = 0;
  for (let round = 0; round < 5; round++) {
    raw = Math.max(raw, matmulRaw(512, seconds / 2));
    cpuBlas = Math.max(cpuBlas, matmulTf(512, seconds / 2));
  }
  return { cpuBlas, raw, efficiency: cpuBlas / raw };
}

function fmt(v: number, digits = 2): string {
  if (!Number.isFinite(v)) return '-';
  return v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(digits);
}

function printTable(header: string[], rows: string[][]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  console.log(line(header));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const r of rows) console.log(line(r));
}

/** Runs every measurement on every backend asked for, prints the tables and returns the numbers. */
export async function runKernelBench(options: KernelBenchOptions = {}): Promise<KernelBenchResult> {
  const blasOk = isBlasAvailable();
  const wanted = (options.backends ?? BENCH_BACKENDS).filter(
    (b) => blasOk || (b !== 'cpu-blas' && b !== 'blas'),
  );
  const tfBackends = wanted.filter((b): b is 'cpu' | 'wasm' | 'cpu-blas' => b !== 'blas');
  const batch = options.batch ?? 8;
  const seconds = options.seconds ?? 0.4;
  const maxSeconds = options.maxSeconds ?? 1.5;
  const print = options.print ?? true;
  const layers = convLayers(options.resnet ?? true);
  const previous = tf.getBackend();

  const matmul = emptyRecord();
  const fwd = layers.map(() => ({ gflops: emptyRecord(), cropped: [] as BenchBackend[] }));
  const bwd = layers.map(() => ({ gflops: emptyRecord(), cropped: [] as BenchBackend[] }));
  const gradMs = emptyRecord();
  const hvpMs = emptyRecord();
  const stepMs = emptyRecord();
  const lrSamples = 2000;

  for (const backend of wanted) {
    if (backend === 'blas') {
      matmul.blas = matmulRaw(512, seconds);
      layers.forEach((layer, i) => {
        const r = convRaw(layer, batch, seconds);
        fwd[i].gflops.blas = r.fwd.gflops;
        bwd[i].gflops.blas = r.bwd.gflops;
      });
      continue;
    }
    await useBackend(backend);
    matmul[backend] = matmulTf(512, seconds);
    layers.forEach((layer, i) => {
      const r = convTf(layer, batch, seconds, maxSeconds);
      fwd[i].gflops[backend] = r.fwd.gflops;
      bwd[i].gflops[backend] = r.bwd.gflops;
      if (r.fwd.cropped) fwd[i].cropped.push(backend);
      if (r.bwd.cropped) bwd[i].cropped.push(backend);
    });
    const lr = logisticRegressionTf(lrSamples, seconds);
    gradMs[backend] = lr.grad;
    hvpMs[backend] = lr.hvp;
    stepMs[backend] = convnetStepMs(seconds, maxSeconds);
  }
  const efficiency =
    wanted.includes('cpu-blas') && wanted.includes('blas')
      ? await matmulEfficiency(seconds)
      : { cpuBlas: matmul['cpu-blas'], raw: matmul.blas, efficiency: NaN };
  if (previous) await tf.setBackend(previous);

  const rows: KernelBenchRow[] = [{ name: 'matmul 512³', gflops: matmul, cropped: [] }];
  layers.forEach((l, i) => {
    const label = `${l.net} ${l.size}×${l.size} ${l.inC}→${l.outC}`;
    rows.push({ name: `${label} fwd`, gflops: fwd[i].gflops, cropped: fwd[i].cropped });
    rows.push({ name: `${label} bwd`, gflops: bwd[i].gflops, cropped: bwd[i].cropped });
  });
  const steps: TimedRow[] = [
    { name: `softmax regression ${lrSamples}×784 gradient`, ms: gradMs },
    { name: `softmax regression ${lrSamples}×784 Hessian-vector product`, ms: hvpMs },
    { name: 'Conv-4 training step, 25×28×28 (conv, batch norm, relu, max-pool)', ms: stepMs },
  ];
  const info = blasInfo();
  const result: KernelBenchResult = { rows, steps, blas: info.summary, matmul: efficiency };
  if (print) {
    console.log(`BLAS: ${info.summary}`);
    console.log(
      `convolutions: 3×3 'same', stride 1, NHWC, ${batch} images per call; bwd = input and filter gradients; ` +
        `GFLOP/s count in-bounds multiply-adds\n* = timed on fewer images or a crop of the layer (slow backend)\n`,
    );
    printTable(
      ['GFLOP/s', ...wanted.map((b) => (b === 'blas' ? 'raw BLAS' : b))],
      rows.map((r) => [r.name, ...wanted.map((b) => fmt(r.gflops[b]) + (r.cropped.includes(b) ? '*' : ''))]),
    );
    console.log('');
    printTable(
      ['ms per call', ...tfBackends, 'cpu / cpu-blas', 'wasm / cpu-blas'],
      steps.map((r) => [
        r.name,
        ...tfBackends.map((b) => fmt(r.ms[b])),
        fmt(r.ms.cpu / r.ms['cpu-blas'], 1),
        fmt(r.ms.wasm / r.ms['cpu-blas'], 1),
      ]),
    );
    if (Number.isFinite(efficiency.efficiency))
      console.log(
        `\nmatmul 512³, best of 5 alternate runs: cpu-blas ${fmt(efficiency.cpuBlas)} GFLOP/s, raw BLAS ` +
          `${fmt(efficiency.raw)} GFLOP/s: ${(100 * efficiency.efficiency).toFixed(0)}% (target: >= 80%)`,
      );
  }
  return result;
}

if (require.main === module) {
  runKernelBench().catch((e: unknown) => {
    console.error(e);
    process.exitCode = 1;
  });
}
