import {
  getKernel,
  type NamedAttrMap,
  type NamedTensorInfoMap,
  type TensorInfo,
  type TypedArray,
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

/*
 * A typed array of at most 64 bytes (16 floats) lives on V8's heap; the first time native code asks for its
 * data, V8 moves it off the heap (an allocation and a copy). A larger one is made off the heap from the start,
 * and that costs 1–4 µs per array (measured on Node 20: 0.02 µs for 16 floats, 1.2 µs for 17, 2.7 µs for 64,
 * 4 µs for 1,000; the ArrayBuffer's backing store and its bookkeeping for the garbage collector) — more than the
 * work of a kernel on a few hundred floats. The addon's shape and stride arguments and the outputs of up to 16
 * floats therefore come from arrays made once and reused (the addon only reads or writes them during the
 * call); larger outputs come from the buffer pool.
 */
const INT32_ARGS: Int32Array[][] = [[], [], []];
const SMALL_OUTPUTS: Float32Array[] = [];

/**
 * Outputs shorter than this are written by the addon into a reused array and copied into one on V8's heap;
 * from this length on they come from the buffer pool (the first length V8 allocates off its heap).
 */
export const SMALL_OUTPUT_LENGTH = 17;

/**
 * `values` in a reused Int32Array (one per slot and length): for the addon's shape and stride arguments. Two
 * arguments of the same call need different slots (0, 1, 2); the array is overwritten by the next call.
 */
export function int32Arg(slot: 0 | 1 | 2, values: readonly number[]): Int32Array {
  const arrays = INT32_ARGS[slot];
  let a = arrays[values.length];
  if (a === undefined) a = arrays[values.length] = new Int32Array(values.length);
  for (let i = 0; i < values.length; i++) a[i] = values[i];
  return a;
}

/**
 * An array of `length` floats for a native kernel to write (every element): a pooled one, or below
 * {@link SMALL_OUTPUT_LENGTH} a reused one, overwritten by the next call — give the result to the output tensor
 * through {@link ownedOutput}.
 */
export function nativeOutput(backend: MathBackendCPU, length: number): Float32Array {
  if (length >= SMALL_OUTPUT_LENGTH) return outputArray(backend, length);
  let out = SMALL_OUTPUTS[length];
  if (out === undefined) out = SMALL_OUTPUTS[length] = new Float32Array(length);
  return out;
}

/**
 * The array an output tensor keeps for `out` from {@link nativeOutput}: a copy of a reused small array (copying a
 * few floats into an array that stays on V8's heap costs less than moving a fresh one off it), else `out` itself.
 */
export function ownedOutput(out: Float32Array): Float32Array {
  return out.length < SMALL_OUTPUT_LENGTH ? out.slice() : out;
}

/** Below this many elements a plain loop beats `TypedArray.set` on a subarray. */
const RUN_COPY_THRESHOLD = 16;

/** Copies `n` elements of `src` from `from` into `out` at `at` (one `set` for long runs, a loop for short ones). */
export function copyRun(src: TypedArray, from: number, n: number, out: TypedArray, at: number): void {
  if (n >= RUN_COPY_THRESHOLD) out.set(src.subarray(from, from + n), at);
  else for (let k = 0; k < n; k++) out[at + k] = src[from + k];
}

/** An output array of `size` elements of the same kind as `like` (a pooled one for float32; every element must be written). */
export function outputLike(backend: MathBackendCPU, like: TypedArray, size: number): TypedArray {
  if (isFloat32Array(like)) return outputArray(backend, size);
  return new (like.constructor as new (n: number) => TypedArray)(size);
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
