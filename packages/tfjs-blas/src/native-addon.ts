import * as fs from 'fs';
import * as path from 'path';

/** What the native addon reports about the BLAS it was linked with. */
export interface NativeBlasInfo {
  /** `OpenBLAS` or `Accelerate`. */
  readonly library: string;
  /** Build configuration string of the library (OpenBLAS: version, architecture, thread limit). */
  readonly config: string;
  /** Kernel family chosen for this CPU (OpenBLAS), e.g. `Haswell`. */
  readonly corename: string;
  /** Threads the library uses (0: managed by the library itself, as Accelerate does). */
  readonly threads: number;
  /** Processors the library sees. */
  readonly processors: number;
}

/** Activation codes shared with the addon's epilogue. */
export const ACTIVATION_CODES = {
  linear: 0,
  relu: 1,
  relu6: 2,
  leakyrelu: 3,
  elu: 4,
  sigmoid: 5,
} as const;
export type NativeActivation = keyof typeof ACTIVATION_CODES;

/**
 * The functions of `build/Release/bilevel_blas.node` (native/bilevel-blas.c). All matrices are row-major
 * Float32Arrays used in place; images are NHWC and filters HWIO. Arguments are checked in C, which throws a
 * JS error naming the bad argument instead of reading out of bounds.
 */
export interface NativeBlas {
  /** The linked BLAS library, its configuration, core and threads. */
  info(): NativeBlasInfo;
  /** Sets the BLAS threads (OpenBLAS's `openblas_set_num_threads`). */
  setThreads(threads: number): void;
  /** How long (µs) the worker pool's threads spin before they sleep; returns the setting before. */
  setSpin(microseconds: number): number;
  /** Method of 3×3, stride-1 convolutions: 0 auto, 1 im2col, 2 Winograd F(2×2), 3 Winograd F(4×4) (OpenBLAS builds). */
  setConvMethod(method: number): void;
  /** Method of large matrix-vector products: 0 the worker pool, 1 OpenBLAS's threads; returns the method before. */
  setMatVecMethod(method: number): number;
  /** C = alpha·op(A)·op(B) + beta·C (cblas_sgemm, row-major). */
  sgemm(
    transA: boolean,
    transB: boolean,
    m: number,
    n: number,
    k: number,
    alpha: number,
    a: Float32Array,
    lda: number,
    b: Float32Array,
    ldb: number,
    beta: number,
    c: Float32Array,
    ldc: number,
  ): void;
  /** out[i] = act(op(A[aIndex[i]])·op(B[bIndex[i]]) + bias), each product [m, k]·[k, n]. */
  batchMatMul(
    a: Float32Array,
    b: Float32Array,
    out: Float32Array,
    aIndex: Int32Array,
    bIndex: Int32Array,
    m: number,
    n: number,
    k: number,
    transA: boolean,
    transB: boolean,
    bias: Float32Array | null,
    activation: number,
    alpha: number,
  ): void;
  /** y = act(conv(x, w) + bias); geometry as in {@link convGeometry}. */
  conv2d(
    x: Float32Array,
    filter: Float32Array,
    out: Float32Array,
    geometry: Int32Array,
    bias: Float32Array | null,
    activation: number,
    alpha: number,
  ): void;
  /** dx = ∂⟨dy, conv(x, w)⟩/∂x. */
  conv2dBackpropInput(dy: Float32Array, filter: Float32Array, dx: Float32Array, geometry: Int32Array): void;
  /** dw = ∂⟨dy, conv(x, w)⟩/∂w. */
  conv2dBackpropFilter(x: Float32Array, dy: Float32Array, dw: Float32Array, geometry: Int32Array): void;
  /**
   * out = a ∘ b elementwise over `shape`, each operand addressed by its strides (0 along broadcast dims);
   * `out` is a Uint8Array for comparisons (op codes >= 100).
   */
  binary(
    op: number,
    a: Float32Array,
    aStrides: Int32Array,
    b: Float32Array,
    bStrides: Int32Array,
    out: Float32Array | Uint8Array,
    shape: Int32Array,
  ): void;
  /** out = sum, mean, max or min of x over the dims flagged 1 in `reduced`. */
  reduce(op: number, x: Float32Array, shape: Int32Array, reduced: Int32Array, out: Float32Array): void;
  /** Max pooling, NHWC; geometry as in {@link poolGeometry}. */
  maxPool(x: Float32Array, out: Float32Array, geometry: Int32Array): void;
  /** out = f(x) elementwise for the unary op `op` (alpha: Step's value at x <= 0). */
  unary(op: number, x: Float32Array, out: Float32Array, alpha: number): void;
  /** out = x with its dims permuted: output dim j is input dim perm[j]. */
  transpose(x: Float32Array, shape: Int32Array, perm: Int32Array, out: Float32Array): void;
  /** Gradient of max pooling: each window's dy goes to its (first) max pixel. */
  maxPoolGrad(dy: Float32Array, x: Float32Array, dx: Float32Array, geometry: Int32Array): void;
  /** out [2, groups, c] = mean and biased variance per group and channel of x [groups, rows, c]. */
  channelMoments(x: Float32Array, groups: number, out: Float32Array): void;
  /** out [2, groups, c] = Σ u and Σ u·v (v null: Σ u²) per group and channel of u, v [groups, rows, c]. */
  channelSums(u: Float32Array, v: Float32Array | null, groups: number, out: Float32Array): void;
  /** out = x·a + z·s + b (z, s null: x·a + b), with a, s, b [groups, c] broadcast over each group's rows. */
  channelAffine(
    x: Float32Array,
    a: Float32Array,
    z: Float32Array | null,
    s: Float32Array | null,
    b: Float32Array,
    groups: number,
    out: Float32Array,
  ): void;
  /** out = LeakyReLU(x) (dy null), or its gradient dy·step(x, alpha); one pass. */
  leakyRelu(x: Float32Array, dy: Float32Array | null, alpha: number, out: Float32Array): void;
}

/** Where node-gyp puts the addon, relative to the package root (one level above `src/` and `dist/`). */
export const ADDON_PATH = path.join(__dirname, '..', 'build', 'Release', 'bilevel_blas.node');

/** Environment variable that, set to `1`, makes the package behave as if the addon were not built. */
export const DISABLE_ENV_VAR = 'BILEVEL_BLAS_DISABLE';

/** The one-line hint printed wherever the fast path is missing. */
export const INSTALL_HINT =
  'install a CBLAS (Debian/Ubuntu: `sudo apt-get install libopenblas-dev`; macOS: Accelerate, built in) ' +
  'with python3, make and a C compiler, then run `npm rebuild @bilevel/tfjs-blas`';

interface LoadResult {
  readonly addon: NativeBlas | null;
  /** Why the addon is unavailable (empty when it loaded). */
  readonly reason: string;
}

let loaded: LoadResult | undefined;

/** Environment variable read by OpenBLAS (at load) to force a kernel family. */
export const OPENBLAS_CORETYPE_ENV = 'OPENBLAS_CORETYPE';

/**
 * The OpenBLAS kernel family this library asks for, from the processor's feature flags (Linux x86-64:
 * `/proc/cpuinfo`), or undefined to leave the choice to OpenBLAS. OpenBLAS picks its kernels at load from the
 * CPU model number, and a release older than the CPU falls back to generic SSE3 kernels (`Prescott`): Debian
 * 12's OpenBLAS 0.3.21 does so on current Xeons (family 6, model 207), where sgemm then runs at about half
 * speed and sgemv at a third. The AVX-512 (`SkylakeX`) and AVX2 + FMA (`Haswell`) kernels need only the
 * instruction sets named here, so asking for them by feature is safe on any CPU that has the features.
 */
export function preferredOpenBlasCore(cpuinfo: string): string | undefined {
  const line = /^flags\s*:(.*)$/m.exec(cpuinfo)?.[1];
  if (line === undefined) return undefined;
  const flags = new Set(line.trim().split(/\s+/));
  const has = (...names: string[]) => names.every((f) => flags.has(f));
  if (has('avx512f', 'avx512cd', 'avx512bw', 'avx512dq', 'avx512vl', 'fma', 'avx2')) return 'SkylakeX';
  if (has('avx2', 'fma')) return 'Haswell';
  return undefined;
}

/**
 * Sets `OPENBLAS_CORETYPE` for the library about to be loaded, unless the user set it (or set
 * `BILEVEL_BLAS_CORETYPE=auto` to keep OpenBLAS's own detection, or a core name to force one).
 */
function chooseOpenBlasCore(): void {
  if (process.env[OPENBLAS_CORETYPE_ENV] !== undefined) return;
  const requested = process.env.BILEVEL_BLAS_CORETYPE;
  if (requested === 'auto') return;
  if (requested) {
    process.env[OPENBLAS_CORETYPE_ENV] = requested;
    return;
  }
  if (process.platform !== 'linux' || process.arch !== 'x64') return;
  let cpuinfo = '';
  try {
    cpuinfo = fs.readFileSync('/proc/cpuinfo', 'utf8');
  } catch {
    return;
  }
  const core = preferredOpenBlasCore(cpuinfo);
  if (core) process.env[OPENBLAS_CORETYPE_ENV] = core;
}

function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/**
 * Loads the native addon once. Never throws: when it is missing (not built, no BLAS at install time) or
 * cannot be loaded (e.g. the BLAS library was removed after the build), the reason is kept for messages.
 */
export function loadNativeBlas(): LoadResult {
  if (loaded) return loaded;
  if (process.env[DISABLE_ENV_VAR] === '1') {
    loaded = { addon: null, reason: `native addon disabled by ${DISABLE_ENV_VAR}=1` };
  } else if (!fs.existsSync(ADDON_PATH)) {
    loaded = {
      addon: null,
      reason: `native addon not built (no ${path.relative(path.join(__dirname, '..'), ADDON_PATH)})`,
    };
  } else {
    try {
      chooseOpenBlasCore();
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const addon = require(ADDON_PATH) as NativeBlas;
      loaded = { addon, reason: '' };
    } catch (e) {
      loaded = { addon: null, reason: `native addon failed to load: ${errorMessage(e).split('\n')[0]}` };
    }
  }
  return loaded;
}

/** The addon, or an error that says why it is unavailable and how to build it. */
export function requireNativeBlas(): NativeBlas {
  const { addon, reason } = loadNativeBlas();
  if (!addon) throw new Error(`@bilevel/tfjs-blas: ${reason}; to enable it, ${INSTALL_HINT}`);
  return addon;
}
