/**
 * `@bilevel/tfjs-blas` — an optional TensorFlow.js backend, `cpu-blas`, that runs the heavy kernels (matrix
 * products and 2-D convolutions, forward and backward) on the system BLAS through a small N-API addon, and
 * every other kernel as the pure-JS `cpu` backend does.
 *
 * @module @bilevel/tfjs-blas
 */
// The JS cpu backend's kernels are copied from its registry, so it must be loaded first.
import '@tensorflow/tfjs-backend-cpu';

export {
  BLAS_BACKEND_NAME,
  BLAS_BACKEND_PRIORITY,
  BUFFER_POOL_BYTES,
  MathBackendBlas,
  NATIVE_KERNEL_NAMES,
  POOL_MB_ENV_VAR,
  blasKernelConfigs,
  bufferPoolMaxBytes,
  registerBlasBackend,
} from './blas-backend';
export {
  SPIN_ENV_VAR,
  applySpinFromEnv,
  blasInfo,
  isBlasAvailable,
  setBlasThreads,
  setConvolutionMethod,
  setMatVecMethod,
  setThreadSpin,
  sgemm,
  type BlasInfo,
  type ConvolutionMethod,
  type MatVecMethod,
} from './blas-info';
export { BufferPool } from './buffer-pool';
export {
  CHANNEL_AFFINE_KERNEL,
  CHANNEL_MOMENTS_KERNEL,
  CHANNEL_SUMS_KERNEL,
  LEAKY_RELU_GRAD_KERNEL,
  LEAKY_RELU_KERNEL,
} from './conv-net-kernels';
export { broadcastBatchIndex, nativeBatchMatMul } from './matmul-kernels';
export { convGeometry } from './conv-kernels';
export { broadcastLayout } from './elementwise-kernels';
export { reductionLayout } from './reduce-kernels';
export { transposeLayout } from './transpose-kernel';
export { poolGeometry } from './pool-kernels';
export {
  ADDON_PATH,
  DISABLE_ENV_VAR,
  INSTALL_HINT,
  OPENBLAS_CORETYPE_ENV,
  preferredOpenBlasCore,
  requireNativeBlas,
  type NativeBlas,
  type NativeBlasInfo,
} from './native-addon';
