/**
 * `@bilevel/backend` — picks and starts the TensorFlow.js backend (tensorflow, cpu-blas, wasm or cpu) and says
 * which one runs and why.
 *
 * @module @bilevel/backend
 */
export {
  BACKEND_CHOICES,
  BACKEND_ENV_VAR,
  BACKEND_NAMES,
  BackendChoiceSchema,
  BackendOptionsSchema,
  type BackendChoice,
  type BackendName,
  type BackendOptions,
} from './backend-options';
export {
  BackendUnavailableError,
  INSTALL_HINTS,
  TFJS_NODE_PACKAGES,
  initBackend,
  listBackends,
  type BackendSelection,
  type BackendStatus,
  type InitBackendOptions,
} from './init-backend';
export { registerWasmFallbackKernels } from './wasm-fallback-kernels';
