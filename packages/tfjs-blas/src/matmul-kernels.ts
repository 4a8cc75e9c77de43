import {
  BatchMatMul,
  _FusedMatMul,
  broadcast_util,
  util,
  type BatchMatMulAttrs,
  type KernelConfig,
  type KernelFunc,
  type TensorInfo,
  type _FusedMatMulAttrs,
} from '@tensorflow/tfjs-core';
import type { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import {
  addBiasJs,
  applyActivationJs,
  float32Values,
  isColumnBias,
  nativeActivationCode,
  requiredInput,
  runCpuKernel,
  outputArray,
} from './kernel-utils';
import { requireNativeBlas } from './native-addon';

/**
 * For each entry of the broadcast batch shape `outShape` (row-major), the flat index of the matching
 * matrix in an operand whose batch shape is `inShape` (numpy broadcasting: dims aligned on the right, size-1
 * dims repeat). The JS cpu kernel uses `i mod batchA` instead, which is only right when one side has a single
 * matrix or both have the same batch shape.
 */
export function broadcastBatchIndex(outShape: readonly number[], inShape: readonly number[]): Int32Array {
  const total = util.sizeFromShape(outShape.slice());
  const index = new Int32Array(total);
  const rank = outShape.length;
  const offset = rank - inShape.length;
  const inStrides = new Array<number>(rank).fill(0);
  let stride = 1;
  for (let d = rank - 1; d >= offset; d--) {
    const size = inShape[d - offset];
    inStrides[d] = size === 1 ? 0 : stride;
    stride *= size;
  }
  const counter = new Array<number>(rank).fill(0);
  let flat = 0;
  for (let i = 0; i < total; i++) {
    index[i] = flat;
    for (let d = rank - 1; d >= 0; d--) {
      counter[d]++;
      flat += inStrides[d];
      if (counter[d] < outShape[d]) break;
      flat -= inStrides[d] * counter[d];
      counter[d] = 0;
    }
  }
  return index;
}

/**
 * Products of at most this many multiply-adds (over the whole batch) are computed in JS: a 100-float dot
 * (`tf.dot`, a [1, 100]·[100, 1] product) costs less as a JS loop than the native call's argument checks
 * and the BLAS dispatch around it.
 */
export const SMALL_MATMUL_MACS = 1024;

/** The batch index of a product without batch dims (one matrix each side); the addon only reads it. */
const SINGLE_BATCH = Int32Array.of(0);

/**
 * C = op(A)·op(B) for a small product, in JS: each entry a float64 sum over k (rounded once to float32),
 * NaN and infinities propagating as in the JS cpu kernel; writes every entry of `out` (zeros when k = 0).
 */
function smallBatchMatMul(
  a: Float32Array,
  b: Float32Array,
  out: Float32Array,
  aIndex: Int32Array,
  bIndex: Int32Array,
  m: number,
  n: number,
  k: number,
  transposeA: boolean,
  transposeB: boolean,
): void {
  // Strides of op(A)[i, p] and op(B)[p, j] in the stored row-major matrices.
  const aRow = transposeA ? 1 : k;
  const aCol = transposeA ? m : 1;
  const bRow = transposeB ? 1 : n;
  const bCol = transposeB ? k : 1;
  for (let t = 0; t < aIndex.length; t++) {
    const aBase = aIndex[t] * m * k;
    const bBase = bIndex[t] * k * n;
    const oBase = t * m * n;
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let s = 0;
        let ai = aBase + i * aRow;
        let bj = bBase + j * bCol;
        for (let p = 0; p < k; p++, ai += aCol, bj += bRow) s += a[ai] * b[bj];
        out[oBase + i * n + j] = s;
      }
    }
  }
}

interface Epilogue {
  bias: Float32Array | null;
  activation: number;
  alpha: number;
}

const NO_EPILOGUE: Epilogue = { bias: null, activation: 0, alpha: 0 };

/**
 * C = op(A)·op(B) over broadcast batch dims, through the addon (one GEMM per product, or one tall GEMM when
 * a stacked batch of A meets a single B), with an optional fused bias + activation.
 */
export function nativeBatchMatMul(
  backend: MathBackendCPU,
  a: TensorInfo,
  b: TensorInfo,
  transposeA: boolean,
  transposeB: boolean,
  epilogue: Epilogue = NO_EPILOGUE,
): TensorInfo {
  const aRank = a.shape.length;
  const bRank = b.shape.length;
  const m = transposeA ? a.shape[aRank - 1] : a.shape[aRank - 2];
  const kA = transposeA ? a.shape[aRank - 2] : a.shape[aRank - 1];
  const kB = transposeB ? b.shape[bRank - 1] : b.shape[bRank - 2];
  const n = transposeB ? b.shape[bRank - 2] : b.shape[bRank - 1];
  util.assert(
    kA === kB,
    () =>
      `Error in matMul: inner shapes (${kA}) and (${kB}) of Tensors with shapes ${a.shape} and ${b.shape} ` +
      `and transposeA=${transposeA} and transposeB=${transposeB} must match.`,
  );
  const outerA = a.shape.slice(0, -2);
  const outerB = b.shape.slice(0, -2);
  const outer = broadcast_util.assertAndGetBroadcastShape(outerA, outerB);
  const outShape = [...outer, m, n];
  const out = outputArray(backend, util.sizeFromShape(outShape));
  if (out.length > 0) {
    const single = util.sizeFromShape(outer) === 1;
    const aIndex = single ? SINGLE_BATCH : broadcastBatchIndex(outer, outerA);
    const bIndex = single ? SINGLE_BATCH : broadcastBatchIndex(outer, outerB);
    if (epilogue === NO_EPILOGUE && out.length * kA <= SMALL_MATMUL_MACS) {
      const av = float32Values(backend, a);
      const bv = float32Values(backend, b);
      smallBatchMatMul(av, bv, out, aIndex, bIndex, m, n, kA, transposeA, transposeB);
      return backend.makeTensorInfo(outShape, 'float32', out);
    }
    requireNativeBlas().batchMatMul(
      float32Values(backend, a),
      float32Values(backend, b),
      out,
      aIndex,
      bIndex,
      m,
      n,
      kA,
      transposeA,
      transposeB,
      epilogue.bias,
      epilogue.activation,
      epilogue.alpha,
    );
  }
  return backend.makeTensorInfo(outShape, 'float32', out);
}

const batchMatMul: KernelFunc = ({ inputs, backend, attrs }) => {
  const cpu = backend as MathBackendCPU;
  const a = requiredInput(inputs, 'a', BatchMatMul);
  const b = requiredInput(inputs, 'b', BatchMatMul);
  const { transposeA, transposeB } = attrs as unknown as BatchMatMulAttrs;
  if (a.dtype !== 'float32' || b.dtype !== 'float32') {
    return runCpuKernel(BatchMatMul, cpu, inputs, attrs);
  }
  return nativeBatchMatMul(cpu, a, b, transposeA, transposeB);
};

/**
 * act(op(A)·op(B) + bias): bias (one value per column) and the activations linear, relu, relu6, leakyrelu,
 * elu and sigmoid are fused into the addon's epilogue; other bias shapes and prelu run as JS kernels after
 * the native product.
 */
const fusedMatMul: KernelFunc = ({ inputs, backend, attrs }) => {
  const cpu = backend as MathBackendCPU;
  const a = requiredInput(inputs, 'a', _FusedMatMul);
  const b = requiredInput(inputs, 'b', _FusedMatMul);
  const { bias, preluActivationWeights } = inputs;
  const { transposeA, transposeB, activation, leakyreluAlpha } = attrs as unknown as _FusedMatMulAttrs;
  if (a.dtype !== 'float32' || b.dtype !== 'float32') {
    return runCpuKernel(_FusedMatMul, cpu, inputs, attrs);
  }
  const n = transposeB ? b.shape[b.shape.length - 2] : b.shape[b.shape.length - 1];
  const outRank = Math.max(a.shape.length, b.shape.length);
  const code = nativeActivationCode(activation);
  const fuseBias = bias === undefined || isColumnBias(bias, n, outRank);
  const fuseAll = fuseBias && code !== undefined;
  const epilogue: Epilogue = {
    bias: bias !== undefined && fuseBias ? float32Values(cpu, bias) : null,
    activation: fuseAll ? (code as number) : 0,
    alpha: leakyreluAlpha ?? 0.2,
  };
  let result = nativeBatchMatMul(cpu, a, b, transposeA, transposeB, epilogue);
  if (fuseAll) return result;
  if (bias !== undefined && !fuseBias) result = addBiasJs(cpu, result, bias);
  return applyActivationJs(cpu, result, activation, preluActivationWeights, leakyreluAlpha);
};

/** Native BatchMatMul and _FusedMatMul for the backend `backendName`. */
export function matMulKernelConfigs(backendName: string): KernelConfig[] {
  return [
    { kernelName: BatchMatMul, backendName, kernelFunc: batchMatMul },
    { kernelName: _FusedMatMul, backendName, kernelFunc: fusedMatMul },
  ];
}
