import {
  Conv2D,
  Conv2DBackpropFilter,
  Conv2DBackpropInput,
  FusedConv2D,
  backend_util,
  util,
  type Conv2DAttrs,
  type Conv2DBackpropFilterAttrs,
  type Conv2DBackpropInputAttrs,
  type FusedConv2DAttrs,
  type KernelConfig,
  type KernelFunc,
  type TensorInfo,
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
 * The 15 numbers the addon needs to address an NHWC convolution with an HWIO filter: batch, inH, inW, inC,
 * outH, outW, outC, fH, fW, strideH, strideW, dilationH, dilationW, padTop, padLeft.
 */
export function convGeometry(info: backend_util.Conv2DInfo): Int32Array {
  return Int32Array.from([
    info.batchSize,
    info.inHeight,
    info.inWidth,
    info.inChannels,
    info.outHeight,
    info.outWidth,
    info.outChannels,
    info.filterHeight,
    info.filterWidth,
    info.strideHeight,
    info.strideWidth,
    info.dilationHeight,
    info.dilationWidth,
    info.padInfo.top,
    info.padInfo.left,
  ]);
}

function allFloat32(...ts: (TensorInfo | undefined)[]): boolean {
  return ts.every((t) => t === undefined || t.dtype === 'float32');
}

/** Native paths take NHWC (channels last) only; NCHW and other dtypes run the JS kernel. */
function isNativeLayout(dataFormat: string | undefined): boolean {
  return backend_util.convertConv2DDataFormat((dataFormat ?? 'NHWC') as 'NHWC' | 'NCHW') === 'channelsLast';
}

/**
 * y[n, i, j, o] = Σ_{a, b, c} x[n, i·sH + a·dH − padTop, j·sW + b·dW − padLeft, c] · w[a, b, c, o]
 * by im2col + GEMM (Chellapilla, Puri & Simard, 2006).
 */
const conv2D: KernelFunc = ({ inputs, backend, attrs }) => {
  const cpu = backend as MathBackendCPU;
  const x = requiredInput(inputs, 'x', Conv2D);
  const filter = requiredInput(inputs, 'filter', Conv2D);
  const { strides, pad, dataFormat, dilations, dimRoundingMode } = attrs as unknown as Conv2DAttrs;
  if (!allFloat32(x, filter) || !isNativeLayout(dataFormat)) return runCpuKernel(Conv2D, cpu, inputs, attrs);
  const info = backend_util.computeConv2DInfo(
    x.shape as [number, number, number, number],
    filter.shape as [number, number, number, number],
    strides,
    dilations,
    pad,
    dimRoundingMode,
    false,
    'channelsLast',
  );
  const out = outputArray(cpu, util.sizeFromShape(info.outShape));
  requireNativeBlas().conv2d(
    float32Values(cpu, x),
    float32Values(cpu, filter),
    out,
    convGeometry(info),
    null,
    0,
    0,
  );
  return cpu.makeTensorInfo(info.outShape, 'float32', out);
};

/** dx = col2im(dy · Wᵀ): the gradient of conv2d with respect to its input (a transposed convolution). */
const conv2DBackpropInput: KernelFunc = ({ inputs, backend, attrs }) => {
  const cpu = backend as MathBackendCPU;
  const dy = requiredInput(inputs, 'dy', Conv2DBackpropInput);
  const filter = requiredInput(inputs, 'filter', Conv2DBackpropInput);
  const { inputShape, strides, pad, dataFormat, dimRoundingMode } =
    attrs as unknown as Conv2DBackpropInputAttrs;
  if (!allFloat32(dy, filter) || !isNativeLayout(dataFormat)) {
    return runCpuKernel(Conv2DBackpropInput, cpu, inputs, attrs);
  }
  const info = backend_util.computeConv2DInfo(
    inputShape,
    filter.shape as [number, number, number, number],
    strides,
    1,
    pad,
    dimRoundingMode,
    false,
    'channelsLast',
  );
  checkShape('conv2dBackpropInput', 'dy', dy.shape, info.outShape);
  const dx = outputArray(cpu, util.sizeFromShape(info.inShape));
  requireNativeBlas().conv2dBackpropInput(
    float32Values(cpu, dy),
    float32Values(cpu, filter),
    dx,
    convGeometry(info),
  );
  return cpu.makeTensorInfo(info.inShape, 'float32', dx);
};

/** dW = Σ patchesᵀ · dy: the gradient of conv2d with respect to its filter. */
const conv2DBackpropFilter: KernelFunc = ({ inputs, backend, attrs }) => {
  const cpu = backend as MathBackendCPU;
  const x = requiredInput(inputs, 'x', Conv2DBackpropFilter);
  const dy = requiredInput(inputs, 'dy', Conv2DBackpropFilter);
  const { strides, pad, dataFormat, dimRoundingMode, filterShape } =
    attrs as unknown as Conv2DBackpropFilterAttrs;
  if (!allFloat32(x, dy) || !isNativeLayout(dataFormat)) {
    return runCpuKernel(Conv2DBackpropFilter, cpu, inputs, attrs);
  }
  const info = backend_util.computeConv2DInfo(
    x.shape as [number, number, number, number],
    filterShape,
    strides,
    1,
    pad,
    dimRoundingMode,
    false,
    'channelsLast',
  );
  checkShape('conv2dBackpropFilter', 'dy', dy.shape, info.outShape);
  const dw = outputArray(cpu, util.sizeFromShape(info.filterShape));
  requireNativeBlas().conv2dBackpropFilter(
    float32Values(cpu, x),
    float32Values(cpu, dy),
    dw,
    convGeometry(info),
  );
  return cpu.makeTensorInfo(info.filterShape, 'float32', dw);
};

/**
 * act(conv2d(x, w) + bias): a bias with one value per output channel and the activations linear, relu,
 * relu6, leakyrelu, elu and sigmoid run in the addon's epilogue; other bias shapes and prelu run as JS kernels.
 */
const fusedConv2D: KernelFunc = ({ inputs, backend, attrs }) => {
  const cpu = backend as MathBackendCPU;
  const x = requiredInput(inputs, 'x', FusedConv2D);
  const filter = requiredInput(inputs, 'filter', FusedConv2D);
  const { bias, preluActivationWeights } = inputs;
  const { strides, pad, dataFormat, dilations, dimRoundingMode, activation, leakyreluAlpha } =
    attrs as unknown as FusedConv2DAttrs;
  if (!allFloat32(x, filter, bias) || !isNativeLayout(dataFormat)) {
    return runCpuKernel(FusedConv2D, cpu, inputs, attrs);
  }
  const info = backend_util.computeConv2DInfo(
    x.shape as [number, number, number, number],
    filter.shape as [number, number, number, number],
    strides,
    dilations,
    pad,
    dimRoundingMode,
    false,
    'channelsLast',
  );
  const code = nativeActivationCode(activation);
  const fuseBias = bias === undefined || isColumnBias(bias, info.outChannels, 4);
  const fuseAll = fuseBias && code !== undefined;
  const out = outputArray(cpu, util.sizeFromShape(info.outShape));
  requireNativeBlas().conv2d(
    float32Values(cpu, x),
    float32Values(cpu, filter),
    out,
    convGeometry(info),
    bias !== undefined && fuseBias ? float32Values(cpu, bias) : null,
    fuseAll ? (code as number) : 0,
    leakyreluAlpha ?? 0.2,
  );
  let result = cpu.makeTensorInfo(info.outShape, 'float32', out);
  if (fuseAll) return result;
  if (bias !== undefined && !fuseBias) result = addBiasJs(cpu, result, bias);
  return applyActivationJs(cpu, result, activation, preluActivationWeights, leakyreluAlpha);
};

function checkShape(op: string, name: string, actual: readonly number[], expected: readonly number[]): void {
  util.assert(
    util.arraysEqual(actual.slice(), expected.slice()),
    () => `Error in ${op}: ${name} has shape [${actual.join(', ')}], expected [${expected.join(', ')}]`,
  );
}

/** Native Conv2D, Conv2DBackpropInput, Conv2DBackpropFilter and FusedConv2D for `backendName`. */
export function convKernelConfigs(backendName: string): KernelConfig[] {
  return [
    { kernelName: Conv2D, backendName, kernelFunc: conv2D },
    { kernelName: Conv2DBackpropInput, backendName, kernelFunc: conv2DBackpropInput },
    { kernelName: Conv2DBackpropFilter, backendName, kernelFunc: conv2DBackpropFilter },
    { kernelName: FusedConv2D, backendName, kernelFunc: fusedConv2D },
  ];
}
