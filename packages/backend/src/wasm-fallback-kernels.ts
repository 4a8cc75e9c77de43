import {
  Conv2D,
  Conv2DBackpropFilter,
  Slice,
  Transpose,
  backend_util,
  getKernel,
  getKernelsForBackend,
  registerKernel,
  type DataId,
  type Conv2DBackpropFilterAttrs,
  type KernelConfig,
  type KernelFunc,
  type NamedTensorInfoMap,
  type TensorInfo,
} from '@tensorflow/tfjs-core';
import { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';

/** Kernels on complex or string tensors, or that draw on a canvas: not bridged. */
const NOT_BRIDGED = new Set([
  'Complex',
  'ComplexAbs',
  'Real',
  'Imag',
  'FFT',
  'IFFT',
  'Draw',
  'StaticRegexReplace',
]);

let helper: MathBackendCPU | undefined;

/** A private JS cpu backend (not registered with the engine) that runs the bridged kernels. */
function helperBackend(): MathBackendCPU {
  if (!helper) {
    helper = new MathBackendCPU();
    // Its first write would print tfjs' "install tfjs-node" banner; it is an implementation detail here.
    (helper as unknown as { firstUse: boolean }).firstUse = false;
  }
  return helper;
}

/**
 * A wasm kernel that copies its inputs out of the WebAssembly heap, runs the JS cpu kernel on them and copies
 * the outputs back. It costs two copies, so it is only for kernels the wasm backend lacks.
 */
function bridge(config: KernelConfig): KernelFunc {
  return ({ inputs, attrs, backend }) => {
    const wasm = backend as BackendWasm;
    const cpu = helperBackend();
    // Most kernels take named inputs; a few (Einsum) take an array, which must stay an array.
    const cpuInputs = (Array.isArray(inputs) ? [] : {}) as NamedTensorInfoMap;
    const owned: DataId[] = [];
    try {
      for (const name of Object.keys(inputs)) {
        const t = inputs[name];
        if (t === undefined) continue;
        if (t.dtype === 'string' || t.dtype === 'complex64') {
          throw new Error(
            `wasm: kernel ${config.kernelName} on ${t.dtype} tensors is not supported; use the cpu backend`,
          );
        }
        const id = cpu.write(wasm.readSync(t.dataId), t.shape, t.dtype);
        owned.push(id);
        cpuInputs[name] = { dataId: id, shape: t.shape, dtype: t.dtype };
      }
      const out = config.kernelFunc({ inputs: cpuInputs, attrs, backend: cpu });
      const outs: TensorInfo[] = Array.isArray(out) ? out : [out];
      const results = outs.map((o) => wasm.makeOutput(o.shape, o.dtype, undefined, cpu.readSync(o.dataId)));
      for (const o of outs) if (!owned.includes(o.dataId)) cpu.disposeData(o.dataId, true);
      return Array.isArray(out) ? results : results[0];
    } finally {
      for (const id of owned) cpu.disposeData(id, true);
    }
  };
}

/** Runs the wasm kernel `name` (a kernel calling another, as tfjs backends do internally). */
function wasmKernel(
  name: string,
  wasm: BackendWasm,
  inputs: NamedTensorInfoMap,
  attrs: Record<string, unknown>,
): TensorInfo {
  const out = getKernel(name, 'wasm').kernelFunc({ inputs, attrs: attrs as never, backend: wasm });
  return out as TensorInfo;
}

/**
 * Conv2DBackpropFilter on wasm as one wasm convolution, so convnet training runs at XNNPACK speed:
 *
 *   dW[a, b, c, o] = Σ_{n, i, j} x[n, i·sH + a − padTop, j·sW + b − padLeft, c] · dy[n, i, j, o]
 *
 * is a convolution of x' = xᵀ [C, H, W, N] (channels as the batch, the batch as channels) with the filter
 * dy' [oH, oW, N, O], dilated by the strides, stride 1, padded (top, left) by the forward padding and at the
 * bottom/right so that the output is fH × fW (rows no output reads are sliced off instead); the result
 * [C, fH, fW, O] transposed is dW [fH, fW, C, O]. NCHW falls back on the JS kernel.
 */
function conv2DBackpropFilterWasm(fallback: KernelFunc): KernelFunc {
  return (args) => {
    const { inputs, backend } = args;
    const attrs = args.attrs as unknown as Conv2DBackpropFilterAttrs;
    const wasm = backend as BackendWasm;
    const x = inputs.x as TensorInfo;
    const dy = inputs.dy as TensorInfo;
    if (x.dtype !== 'float32' || dy.dtype !== 'float32' || (attrs.dataFormat ?? 'NHWC') !== 'NHWC')
      return fallback(args);
    const info = backend_util.computeConv2DInfo(
      x.shape as [number, number, number, number],
      attrs.filterShape,
      attrs.strides,
      1,
      attrs.pad,
      attrs.dimRoundingMode,
    );
    const {
      filterHeight: fH,
      filterWidth: fW,
      strideHeight: sH,
      strideWidth: sW,
      outHeight: oH,
      outWidth: oW,
    } = info;
    const { top, left } = info.padInfo;
    // Bottom/right padding that makes the output fH × fW; negative: rows/columns no output reads.
    const bottom = fH + (oH - 1) * sH - info.inHeight - top;
    const right = fW + (oW - 1) * sW - info.inWidth - left;
    const temps: TensorInfo[] = [];
    try {
      let xs = x;
      if (bottom < 0 || right < 0) {
        xs = wasmKernel(
          Slice,
          wasm,
          { x },
          {
            begin: [0, 0, 0, 0],
            size: [
              info.batchSize,
              info.inHeight + Math.min(bottom, 0),
              info.inWidth + Math.min(right, 0),
              info.inChannels,
            ],
          },
        );
        temps.push(xs);
      }
      const xt = wasmKernel(Transpose, wasm, { x: xs }, { perm: [3, 1, 2, 0] });
      temps.push(xt);
      const dyt = wasmKernel(Transpose, wasm, { x: dy }, { perm: [1, 2, 0, 3] });
      temps.push(dyt);
      const conv = wasmKernel(
        Conv2D,
        wasm,
        { x: xt, filter: dyt },
        {
          strides: [1, 1],
          pad: [
            [0, 0],
            [top, Math.max(bottom, 0)],
            [left, Math.max(right, 0)],
            [0, 0],
          ],
          dataFormat: 'NHWC',
          dilations: [sH, sW],
          dimRoundingMode: undefined,
        },
      );
      temps.push(conv);
      return wasmKernel(Transpose, wasm, { x: conv }, { perm: [1, 2, 0, 3] });
    } finally {
      for (const t of temps) if (t !== x) wasm.disposeData(t.dataId);
    }
  };
}

/**
 * Registers, for the `wasm` backend, every numeric kernel that the JS `cpu` backend has and wasm lacks
 * (in tfjs 4.22: Conv2DBackpropFilter, the depthwise convolution gradients, UnsortedSegmentSum — the
 * gradient of gather —, Einsum and the ragged-tensor kernels). Conv2DBackpropFilter becomes one wasm
 * convolution (`conv2DBackpropFilterWasm` in this file); the others are bridged to the JS implementation.
 * Without them, training a convnet on wasm throws. Idempotent; returns the names it registered.
 */
export function registerWasmFallbackKernels(): string[] {
  const added: string[] = [];
  for (const config of getKernelsForBackend('cpu')) {
    if (NOT_BRIDGED.has(config.kernelName) || getKernel(config.kernelName, 'wasm')) continue;
    const bridged = bridge(config);
    const kernelFunc =
      config.kernelName === Conv2DBackpropFilter ? conv2DBackpropFilterWasm(bridged) : bridged;
    registerKernel({ kernelName: config.kernelName, backendName: 'wasm', kernelFunc });
    added.push(config.kernelName);
  }
  return added;
}
