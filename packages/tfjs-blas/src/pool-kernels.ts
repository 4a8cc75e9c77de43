import {
  MaxPool,
  MaxPoolGrad,
  backend_util,
  util,
  type KernelConfig,
  type KernelFunc,
  type MaxPoolAttrs,
  type MaxPoolGradAttrs,
} from '@tensorflow/tfjs-core';
import type { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import { float32Values, requiredInput, runCpuKernel, outputArray } from './kernel-utils';
import { requireNativeBlas } from './native-addon';

/** batch, inH, inW, C, outH, outW, fH, fW, strideH, strideW, padTop, padLeft (NHWC, dilation 1). */
export function poolGeometry(info: backend_util.Conv2DInfo): Int32Array {
  return Int32Array.from([
    info.batchSize,
    info.inHeight,
    info.inWidth,
    info.inChannels,
    info.outHeight,
    info.outWidth,
    info.effectiveFilterHeight,
    info.effectiveFilterWidth,
    info.strideHeight,
    info.strideWidth,
    info.padInfo.top,
    info.padInfo.left,
  ]);
}

/** y[n, i, j, c] = max over the window's in-bounds pixels of x[n, ·, ·, c]. */
const maxPool: KernelFunc = ({ inputs, backend, attrs }) => {
  const cpu = backend as MathBackendCPU;
  const x = requiredInput(inputs, 'x', MaxPool);
  if (x.dtype !== 'float32' || x.shape.length !== 4) return runCpuKernel(MaxPool, cpu, inputs, attrs);
  const { filterSize, strides, pad, dimRoundingMode } = attrs as unknown as MaxPoolAttrs;
  const info = backend_util.computePool2DInfo(
    x.shape as [number, number, number, number],
    filterSize,
    strides,
    1,
    pad,
    dimRoundingMode,
  );
  const out = outputArray(cpu, util.sizeFromShape(info.outShape));
  requireNativeBlas().maxPool(float32Values(cpu, x), out, poolGeometry(info));
  return cpu.makeTensorInfo(info.outShape, 'float32', out);
};

/** dx: each window's dy routed to the window's max pixel of the input. */
const maxPoolGrad: KernelFunc = ({ inputs, backend, attrs }) => {
  const cpu = backend as MathBackendCPU;
  const dy = requiredInput(inputs, 'dy', MaxPoolGrad);
  const x = requiredInput(inputs, 'input', MaxPoolGrad);
  if (x.dtype !== 'float32' || dy.dtype !== 'float32' || x.shape.length !== 4) {
    return runCpuKernel(MaxPoolGrad, cpu, inputs, attrs);
  }
  const { filterSize, strides, pad, dimRoundingMode } = attrs as unknown as MaxPoolGradAttrs;
  const info = backend_util.computePool2DInfo(
    x.shape as [number, number, number, number],
    filterSize,
    strides,
    1,
    pad,
    dimRoundingMode,
  );
  const dx = outputArray(cpu, util.sizeFromShape(x.shape));
  requireNativeBlas().maxPoolGrad(float32Values(cpu, dy), float32Values(cpu, x), dx, poolGeometry(info));
  return cpu.makeTensorInfo(x.shape, 'float32', dx);
};

/** Native MaxPool and MaxPoolGrad (NHWC float32). */
export function poolKernelConfigs(backendName: string): KernelConfig[] {
  return [
    { kernelName: MaxPool, backendName, kernelFunc: maxPool },
    { kernelName: MaxPoolGrad, backendName, kernelFunc: maxPoolGrad },
  ];
}
