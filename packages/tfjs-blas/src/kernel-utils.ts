import {
  getKernel,
  type NamedAttrMap,
  type NamedTensorInfoMap,
  type TensorInfo,
} from '@tensorflow/tfjs-core';
import type { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import { ACTIVATION_CODES, type NativeActivation } from './native-addon';

/** Whether `v` is a Float32Array (checked by tag, so arrays from another realm, e.g. under jest, count too). */
export function isFloat32Array(v: unknown): v is Float32Array {
  if (v instanceof Float32Array) return true;
  return ArrayBuffer.isView(v) && Object.prototype.toString.call(v) === '[object Float32Array]';
}

/** The float32 storage of a tensor on a cpu-style backend (no copy when it already is a Float32Array). */
export function float32Values(backend: MathBackendCPU, t: TensorInfo): Float32Array {
  const values = backend.data.get(t.dataId).values;
  if (isFloat32Array(values)) return values;
  return Float32Array.from(values as ArrayLike<number>);
}

/** A backend with reusable output arrays (the cpu-blas backend). */
interface PooledBackend {
  allocOutput(length: number): Float32Array;
  taintInputs(inputs: NamedTensorInfoMap): void;
}

function isPooled(backend: MathBackendCPU): backend is MathBackendCPU & PooledBackend {
  return typeof (backend as Partial<PooledBackend>).allocOutput === 'function';
}

/**
 * An output array of `length` floats for a native kernel on `backend`: a reused one on the cpu-blas backend
 * (arbitrary contents: the kernel must write every element), else a new one.
 */
export function outputArray(backend: MathBackendCPU, length: number): Float32Array {
  return isPooled(backend) ? backend.allocOutput(length) : new Float32Array(length);
}

/** Runs the pure-JS kernel `name` of the `cpu` backend on `backend` (any MathBackendCPU). */
export function runCpuKernel(
  name: string,
  backend: MathBackendCPU,
  inputs: NamedTensorInfoMap,
  attrs: NamedAttrMap = {},
): TensorInfo {
  const config = getKernel(name, 'cpu');
  if (!config) throw new Error(`cpu-blas: the cpu backend has no kernel '${name}' to fall back on`);
  if (isPooled(backend)) backend.taintInputs(inputs);
  const out = config.kernelFunc({ inputs, attrs, backend });
  if (Array.isArray(out)) throw new Error(`cpu-blas: kernel '${name}' returned several outputs`);
  return out;
}

/** The native activation code, or undefined for activations the addon does not fuse (prelu). */
export function nativeActivationCode(activation: string | undefined): number | undefined {
  const name = (activation ?? 'linear') as NativeActivation;
  return Object.prototype.hasOwnProperty.call(ACTIVATION_CODES, name) ? ACTIVATION_CODES[name] : undefined;
}

/**
 * Applies `activation` with the JS kernels (the path for epilogues the addon does not fuse), disposing the
 * input when a new tensor is made.
 */
export function applyActivationJs(
  backend: MathBackendCPU,
  x: TensorInfo,
  activation: string | undefined,
  preluWeights: TensorInfo | undefined,
  leakyreluAlpha: number | undefined,
): TensorInfo {
  let out: TensorInfo;
  switch (activation ?? 'linear') {
    case 'linear':
      return x;
    case 'relu':
      out = runCpuKernel('Relu', backend, { x });
      break;
    case 'relu6':
      out = runCpuKernel('Relu6', backend, { x });
      break;
    case 'elu':
      out = runCpuKernel('Elu', backend, { x });
      break;
    case 'sigmoid':
      out = runCpuKernel('Sigmoid', backend, { x });
      break;
    case 'leakyrelu':
      out = runCpuKernel('LeakyRelu', backend, { x }, { alpha: leakyreluAlpha ?? 0.2 });
      break;
    case 'prelu':
      if (!preluWeights) throw new Error('cpu-blas: prelu activation needs preluActivationWeights');
      out = runCpuKernel('Prelu', backend, { x, alpha: preluWeights });
      break;
    default:
      throw new Error(`cpu-blas: unknown activation '${String(activation)}'`);
  }
  backend.disposeIntermediateTensorInfo(x);
  return out;
}

/** Adds `bias` with the JS Add kernel (any broadcastable shape), disposing `x`. */
export function addBiasJs(backend: MathBackendCPU, x: TensorInfo, bias: TensorInfo): TensorInfo {
  const out = runCpuKernel('Add', backend, { a: x, b: bias });
  backend.disposeIntermediateTensorInfo(x);
  return out;
}

/**
 * Whether `bias` adds one value per output column (shape [..1, cols] of rank at most `outRank`), which the
 * addon fuses into its epilogue.
 */
export function isColumnBias(bias: TensorInfo, cols: number, outRank: number): boolean {
  const s = bias.shape;
  if (bias.dtype !== 'float32' || s.length === 0 || s.length > outRank) return false;
  return s[s.length - 1] === cols && s.slice(0, -1).every((d) => d === 1);
}

/** The input `name` of a kernel call, or an error naming the kernel and the missing input. */
export function requiredInput(inputs: NamedTensorInfoMap, name: string, kernel: string): TensorInfo {
  const t = inputs[name];
  if (t === undefined) throw new Error(`cpu-blas: kernel ${kernel} called without input '${name}'`);
  return t;
}
