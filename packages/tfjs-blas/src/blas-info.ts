import { INSTALL_HINT, loadNativeBlas, requireNativeBlas } from './native-addon';

/** The state of the native BLAS path. */
export interface BlasInfo {
  /** Whether the addon is built and loads. */
  readonly available: boolean;
  /** `OpenBLAS` or `Accelerate`; empty when unavailable. */
  readonly library: string;
  /** Library version when it reports one (OpenBLAS), e.g. `0.3.21`. */
  readonly version: string;
  /** Build configuration string of the library. */
  readonly config: string;
  /** Kernel family chosen for this CPU (OpenBLAS), e.g. `Haswell`. */
  readonly corename: string;
  /** Threads the library uses; 0 when the library manages them itself (Accelerate) or it is unavailable. */
  readonly threads: number;
  /** Processors the library sees. */
  readonly processors: number;
  /** Why the addon is unavailable; empty when it is available. */
  readonly reason: string;
  /** How to enable the addon; empty when it is available. */
  readonly hint: string;
  /** One line: `OpenBLAS 0.3.21 (Haswell), 2 threads`, or the reason it is unavailable. */
  readonly summary: string;
}

/** Whether the native addon is built and loads (the `cpu-blas` backend can be registered). */
export function isBlasAvailable(): boolean {
  return loadNativeBlas().addon !== null;
}

/** What the native path links and how many threads it uses, or why it is unavailable. */
export function blasInfo(): BlasInfo {
  const { addon, reason } = loadNativeBlas();
  if (!addon) {
    return {
      available: false,
      library: '',
      version: '',
      config: '',
      corename: '',
      threads: 0,
      processors: 0,
      reason,
      hint: INSTALL_HINT,
      summary: `${reason}; to enable it, ${INSTALL_HINT}`,
    };
  }
  const info = addon.info();
  const version = /OpenBLAS\s+([0-9][0-9.]*)/.exec(info.config)?.[1] ?? '';
  const name = [info.library, version].filter((s) => s !== '').join(' ');
  const core = info.corename ? ` (${info.corename})` : '';
  const threads =
    info.threads > 0
      ? `${info.threads} thread${info.threads === 1 ? '' : 's'}`
      : 'threads managed by the library';
  return {
    available: true,
    library: info.library,
    version,
    config: info.config,
    corename: info.corename,
    threads: info.threads,
    processors: info.processors,
    reason: '',
    hint: '',
    summary: `${name}${core}, ${threads}`,
  };
}

/**
 * Sets the number of BLAS threads (OpenBLAS: `openblas_set_num_threads`; by default OpenBLAS uses every
 * processor, or `OPENBLAS_NUM_THREADS` when set). Returns false when the addon is unavailable or the library
 * manages its threads itself (Accelerate).
 */
export function setBlasThreads(threads: number): boolean {
  if (!Number.isInteger(threads) || threads < 1) {
    throw new RangeError(`setBlasThreads: threads must be an integer >= 1 (got ${threads})`);
  }
  const { addon } = loadNativeBlas();
  if (!addon) return false;
  addon.setThreads(threads);
  return addon.info().threads > 0;
}

/**
 * How long, in microseconds, the native worker pool's threads spin before they sleep: a worker after its
 * task, waiting for the next, and the calling thread waiting for the workers' last chunks (default 50, or
 * `BILEVEL_BLAS_SPIN_US` when set; 0 sleeps at once). Waking a sleeping thread takes tens of microseconds on
 * a busy machine, as long as an element-wise kernel on a million floats; spinning briefly keeps the workers
 * awake through a stream of kernels at the cost of some idle CPU. Returns the setting before, or undefined
 * when the addon is unavailable.
 */
export function setThreadSpin(microseconds: number): number | undefined {
  checkSpin(microseconds, 'setThreadSpin: microseconds');
  const { addon } = loadNativeBlas();
  return addon ? addon.setSpin(microseconds) : undefined;
}

/** Environment variable: the worker pool's spin time in microseconds (see {@link setThreadSpin}). */
export const SPIN_ENV_VAR = 'BILEVEL_BLAS_SPIN_US';

/**
 * Applies `BILEVEL_BLAS_SPIN_US` when set (the `cpu-blas` backend does on creation); throws a RangeError that
 * names the variable when it is not an integer from 0 to 100000.
 */
export function applySpinFromEnv(env: NodeJS.ProcessEnv = process.env): void {
  const raw = env[SPIN_ENV_VAR];
  if (raw === undefined || raw.trim() === '') return;
  const us = Number(raw);
  checkSpin(us, `${SPIN_ENV_VAR}='${raw}'`);
  setThreadSpin(us);
}

function checkSpin(microseconds: number, what: string): void {
  if (!Number.isInteger(microseconds) || microseconds < 0 || microseconds > 100_000) {
    throw new RangeError(`${what} must be an integer from 0 to 100000 (got ${microseconds})`);
  }
}

/**
 * How the `cpu-blas` backend computes 3×3, stride-1, dilation-1 convolutions (forward and both gradients):
 * see {@link setConvolutionMethod}.
 */
export type ConvolutionMethod = 'auto' | 'im2col' | 'winograd' | 'winograd4';

const CONVOLUTION_METHODS: Record<ConvolutionMethod, number> = {
  auto: 0,
  im2col: 1,
  winograd: 2,
  winograd4: 3,
};

/**
 * Chooses how the `cpu-blas` backend computes 3×3, stride-1, dilation-1 convolutions: `winograd`, Winograd's
 * F(2×2, 3×3) (2.25 times fewer multiplications than a direct convolution; float32 results that differ from
 * im2col's in rounding only), `winograd4`, Winograd's F(4×4, 3×3) (4 times fewer; a float32 error about 20
 * times F(2×2)'s, up to about 2e-5 of the largest output on ResNet-12's layers), `im2col`, patches times the
 * filter by sgemm, or `auto` (the default): Winograd for layers with 16 input and output channels or more —
 * F(4×4) where its products, edge tiles included, are at most 3/4 of F(2×2)'s (84×84, 42×42 and 21×21 outputs,
 * also 8×8 or 7×7), F(2×2) otherwise (10×10, 9×9, 6×6) — and im2col for fewer channels. `winograd` and `winograd4` apply to every 3×3 stride-1 layer
 * whatever its channels. The environment variable `BILEVEL_BLAS_CONV=im2col|winograd|winograd4` sets it when the
 * addon loads. Returns false when the addon is unavailable or built on Accelerate (which always uses im2col).
 */
export function setConvolutionMethod(method: ConvolutionMethod): boolean {
  const code = CONVOLUTION_METHODS[method];
  if (code === undefined) {
    throw new RangeError(
      `setConvolutionMethod: method must be 'auto', 'im2col', 'winograd' or 'winograd4' (got ${String(method)})`,
    );
  }
  const { addon } = loadNativeBlas();
  if (!addon) return false;
  addon.setConvMethod(code);
  return addon.info().library === 'OpenBLAS';
}

/** How the `cpu-blas` backend runs large matrix-vector products: see {@link setMatVecMethod}. */
export type MatVecMethod = 'pool' | 'openblas';

const MATVEC_METHODS: readonly MatVecMethod[] = ['pool', 'openblas'];

/**
 * Chooses how the `cpu-blas` backend runs matrix-vector products of more than 2^17 entries: `pool` (the
 * default) cuts the product into tasks claimed by the addon's worker threads as they free up, each a
 * one-threaded sgemv, so that a descheduled thread delays one task and not the whole product; `openblas` leaves
 * it to OpenBLAS's own threads. The environment variable `BILEVEL_BLAS_MATVEC=openblas` sets it when the addon
 * loads. Returns the method in effect before the call, or undefined when the addon is unavailable (with
 * Accelerate the products are always Accelerate's own).
 */
export function setMatVecMethod(method: MatVecMethod): MatVecMethod | undefined {
  const code = MATVEC_METHODS.indexOf(method);
  if (code < 0) {
    throw new RangeError(`setMatVecMethod: method must be 'pool' or 'openblas' (got ${String(method)})`);
  }
  const { addon } = loadNativeBlas();
  if (!addon) return undefined;
  return MATVEC_METHODS[addon.setMatVecMethod(code)];
}

/**
 * Raw single-precision GEMM on row-major arrays, C = alpha·op(A)·op(B) + beta·C, straight to the BLAS
 * (for benchmarks and for code that manages its own buffers). Throws when the addon is unavailable.
 */
export function sgemm(
  transA: boolean,
  transB: boolean,
  m: number,
  n: number,
  k: number,
  alpha: number,
  a: Float32Array,
  b: Float32Array,
  beta: number,
  c: Float32Array,
): void {
  const lda = Math.max(1, transA ? m : k);
  const ldb = Math.max(1, transB ? k : n);
  requireNativeBlas().sgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, Math.max(1, n));
}
