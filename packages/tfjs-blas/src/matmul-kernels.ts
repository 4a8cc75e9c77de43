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
    requireNativeBlas().batchMatMul(
      float32Values(backend, a),
      float32Values(backend, b),
      out,
      broadcastBatchIndex(outer, outerA),
      broadcastBatchIndex(outer, outerB),
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
