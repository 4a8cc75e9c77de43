import {
  findBackendFactory,
  getKernel,
  getKernelsForBackend,
  registerBackend,
  registerKernel,
  type BackendValues,
  type DataId,
  type KernelConfig,
  type KernelFunc,
  type NamedTensorInfoMap,
} from '@tensorflow/tfjs-core';
import { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import * as os from 'os';
import { applySpinFromEnv, isBlasAvailable } from './blas-info';
import { convNetKernelConfigs } from './conv-net-kernels';
import { BufferPool } from './buffer-pool';
import { SMALL_OUTPUT_LENGTH } from './kernel-utils';
import { convKernelConfigs } from './conv-kernels';
import { elementwiseKernelConfigs } from './elementwise-kernels';
import { gatherKernelConfigs } from './gather-kernel';
import { joinKernelConfigs } from './join-kernels';
import { matMulKernelConfigs } from './matmul-kernels';
import { poolKernelConfigs } from './pool-kernels';
import { reduceKernelConfigs } from './reduce-kernels';
import { transposeKernelConfigs } from './transpose-kernel';

/** Name under which the backend is registered with TensorFlow.js. */
export const BLAS_BACKEND_NAME = 'cpu-blas';

/**
 * Priority among tfjs backends when none was chosen explicitly: above `wasm` and `webgl` (2) and `cpu` (1),
 * below `tensorflow` (3, tfjs-node).
 */
export const BLAS_BACKEND_PRIORITY = 2.5;

/**
 * Bytes of disposed output arrays the backend may always keep for reuse; beyond this it keeps up to the most
 * its kernels' outputs took at once, within {@link bufferPoolMaxBytes} (see {@link BufferPool}).
 */
export const BUFFER_POOL_BYTES = 256 * 1024 * 1024;

/** Environment variable: the most megabytes of free output arrays the backend keeps for reuse. */
export const POOL_MB_ENV_VAR = 'BILEVEL_BLAS_POOL_MB';

/**
 * The most bytes of free output arrays a new backend keeps for reuse: `BILEVEL_BLAS_POOL_MB` megabytes when
 * set (0 turns reuse off), else a quarter of the machine's memory (at least {@link BUFFER_POOL_BYTES}).
 * Throws on a value that is not a non-negative number.
 */
export function bufferPoolMaxBytes(
  env: NodeJS.ProcessEnv = process.env,
  totalMemory = os.totalmem(),
): number {
  const raw = env[POOL_MB_ENV_VAR];
  if (raw !== undefined && raw.trim() !== '') {
    const mb = Number(raw);
    if (!Number.isFinite(mb) || mb < 0) {
      throw new RangeError(`${POOL_MB_ENV_VAR} must be a non-negative number of megabytes (got '${raw}')`);
    }
    return Math.floor(mb * 1024 * 1024);
  }
  return Math.max(BUFFER_POOL_BYTES, Math.floor(totalMemory / 4));
}

/**
 * The pure-JS cpu backend's tensor storage, with heavy kernels replaced by native ones. Tensor data stays in
 * JS Float32Arrays that the addon reads and writes in place; the output arrays of native kernels are reused
 * once their tensors are disposed (see {@link BufferPool}).
 */
export class MathBackendBlas extends MathBackendCPU {
  /** Output arrays of native kernels, kept for reuse. */
  readonly pool: BufferPool;

  constructor() {
    super();
    applySpinFromEnv();
    const max = bufferPoolMaxBytes();
    // Shorter outputs go through nativeOutput's reused arrays, never the pool.
    this.pool = new BufferPool(max, SMALL_OUTPUT_LENGTH, Math.min(BUFFER_POOL_BYTES, max));
    // The JS cpu backend prints, on first use in Node, a banner that recommends tfjs-node for speed; this
    // backend is the fast path, so the banner would mislead.
    (this as unknown as { firstUse: boolean }).firstUse = false;
  }

  /** An output array of `length` floats for a native kernel (contents undefined: the kernel writes all). */
  allocOutput(length: number): Float32Array {
    return this.pool.alloc(length);
  }

  /** Marks the arrays of `inputs` as possibly held by a JS kernel (never reused). */
  taintInputs(inputs: NamedTensorInfoMap): void {
    for (const name of Object.keys(inputs)) {
      const t = inputs[name];
      if (t) this.pool.taint(this.data.get(t.dataId)?.values);
    }
  }

  /** The tensor's values (the backend's own array, handed to the caller: from now on it is never reused). */
  override readSync(dataId: DataId): BackendValues {
    this.pool.taint(this.data.get(dataId)?.values);
    return super.readSync(dataId);
  }

  /** Releases a tensor's data; a native output array that nothing else can hold goes back to the pool. */
  override disposeData(dataId: DataId, force = false): boolean {
    const entry = this.data.get(dataId);
    const removed = super.disposeData(dataId, force);
    if (entry && removed && !this.data.has(dataId)) this.pool.release(entry.values);
    return removed;
  }

  /** Drops the pooled arrays and disposes the backend. */
  override dispose(): void {
    this.pool.clear();
    super.dispose();
  }
}

/** A JS kernel of the cpu backend that first marks its inputs' arrays as shared (they may be viewed). */
function taintingKernel(kernelFunc: KernelFunc): KernelFunc {
  return (args) => {
    if (args.backend instanceof MathBackendBlas) args.backend.taintInputs(args.inputs);
    return kernelFunc(args);
  };
}

/**
 * JS kernels that return their input's data under a new shape (the engine counts one more reference to it)
 * and never hold its array: they need not mark it shared, and the array is reused once every tensor that
 * refers to it is disposed.
 */
const SHARING_KERNELS = new Set(['Reshape', 'Identity']);

/**
 * Kernels of the backend's own: computed by the addon, and GatherV2 as JS slice copies; every other kernel is
 * the JS cpu backend's.
 */
export function blasKernelConfigs(backendName: string = BLAS_BACKEND_NAME): KernelConfig[] {
  return [
    ...matMulKernelConfigs(backendName),
    ...convKernelConfigs(backendName),
    ...elementwiseKernelConfigs(backendName),
    ...reduceKernelConfigs(backendName),
    ...poolKernelConfigs(backendName),
    ...transposeKernelConfigs(backendName),
    ...convNetKernelConfigs(backendName),
    ...gatherKernelConfigs(backendName),
    ...joinKernelConfigs(backendName),
  ];
}

/** Names of the backend's own kernels ({@link blasKernelConfigs}). */
export const NATIVE_KERNEL_NAMES: readonly string[] = blasKernelConfigs().map((k) => k.kernelName);

/**
 * Registers the `cpu-blas` backend with TensorFlow.js: every kernel of the JS `cpu` backend copied under the
 * new name, then the native kernels in place of their JS versions: BatchMatMul, _FusedMatMul, Conv2D,
 * Conv2DBackpropInput, Conv2DBackpropFilter, FusedConv2D (BLAS), and the broadcasting binary ops, the
 * reductions Sum/Mean/Max/Min and MaxPool/MaxPoolGrad (plain C loops; float32 only, other dtypes and layouts
 * run the JS kernels), and kernels of their own for the convolution networks, BilevelChannelMoments,
 * BilevelChannelSums, BilevelChannelAffine, BilevelLeakyRelu and BilevelLeakyReluGrad (no JS versions; float32
 * only). Idempotent. Returns false, registering
 * nothing, when the native addon is not built or does not load (see `blasInfo().reason`). It does not make
 * the backend current: call `tf.setBackend('cpu-blas')` (or use @bilevel/backend's `initBackend`).
 */
export function registerBlasBackend(): boolean {
  if (!isBlasAvailable()) return false;
  if (findBackendFactory(BLAS_BACKEND_NAME) && getKernel('BatchMatMul', BLAS_BACKEND_NAME)) return true;
  const native = blasKernelConfigs(BLAS_BACKEND_NAME);
  const replaced = new Set(native.map((k) => k.kernelName));
  for (const kernel of getKernelsForBackend('cpu')) {
    if (replaced.has(kernel.kernelName) || getKernel(kernel.kernelName, BLAS_BACKEND_NAME)) continue;
    registerKernel({
      ...kernel,
      backendName: BLAS_BACKEND_NAME,
      kernelFunc: SHARING_KERNELS.has(kernel.kernelName)
        ? kernel.kernelFunc
        : taintingKernel(kernel.kernelFunc),
    });
  }
  for (const kernel of native) {
    if (!getKernel(kernel.kernelName, BLAS_BACKEND_NAME)) registerKernel(kernel);
  }
  if (!findBackendFactory(BLAS_BACKEND_NAME)) {
    registerBackend(BLAS_BACKEND_NAME, () => new MathBackendBlas(), BLAS_BACKEND_PRIORITY);
  }
  return true;
}
