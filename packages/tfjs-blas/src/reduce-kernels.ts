import {
  Max,
  Mean,
  Min,
  Sum,
  backend_util,
  util,
  type KernelConfig,
  type KernelFunc,
  type NamedAttrMap,
} from '@tensorflow/tfjs-core';
import type { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import {
  float32Values,
  int32Arg,
  nativeOutput,
  ownedOutput,
  requiredInput,
  runCpuKernel,
} from './kernel-utils';
import { requireNativeBlas } from './native-addon';

const REDUCTIONS: Record<string, { code: number; axisAttr: 'axis' | 'reductionIndices' }> = {
  [Sum]: { code: 0, axisAttr: 'axis' },
  [Mean]: { code: 1, axisAttr: 'axis' },
  [Max]: { code: 2, axisAttr: 'reductionIndices' },
  [Min]: { code: 3, axisAttr: 'axis' },
};

/**
 * `shape` with the reduced dims flagged, as the fewest dims: size-1 dims dropped and neighbours with the same
 * flag merged (so reducing [N, H, W] of NHWC is one reduced dim followed by one kept dim).
 */
export function reductionLayout(
  shape: readonly number[],
  axes: readonly number[],
): {
  /** The merged dims. */
  shape: number[];
  /** 1 for each reduced dim, 0 for each kept one. */
  reduced: number[];
} {
  const out: number[] = [];
  const reduced: number[] = [];
  shape.forEach((n, d) => {
    if (n === 1) return;
    const flag = axes.includes(d) ? 1 : 0;
    if (reduced.length > 0 && reduced[reduced.length - 1] === flag) out[out.length - 1] *= n;
    else {
      out.push(n);
      reduced.push(flag);
    }
  });
  return { shape: out, reduced };
}

function reduceKernel(kernelName: string, code: number, axisAttr: 'axis' | 'reductionIndices'): KernelFunc {
  return ({ inputs, backend, attrs }) => {
    const cpu = backend as MathBackendCPU;
    const x = requiredInput(inputs, 'x', kernelName);
    const a = (attrs ?? {}) as NamedAttrMap;
    const axes = util.parseAxisParam(a[axisAttr] as number | number[], x.shape);
    const layout = reductionLayout(x.shape, axes);
    const native =
      x.dtype === 'float32' &&
      util.sizeFromShape(x.shape) > 0 &&
      layout.reduced.includes(1) &&
      layout.shape.length <= 8;
    if (!native) return runCpuKernel(kernelName, cpu, inputs, attrs);
    const [outShape] = backend_util.computeOutAndReduceShapes(x.shape, axes);
    const out = nativeOutput(cpu, util.sizeFromShape(outShape));
    requireNativeBlas().reduce(
      code,
      float32Values(cpu, x),
      int32Arg(0, layout.shape),
      int32Arg(1, layout.reduced),
      out,
    );
    const shape = a.keepDims ? backend_util.expandShapeToKeepDim(outShape, axes) : outShape;
    return cpu.makeTensorInfo(shape, 'float32', ownedOutput(out));
  };
}

/** Native float32 Sum, Mean, Max and Min over any axes (accumulated in double precision). */
export function reduceKernelConfigs(backendName: string): KernelConfig[] {
  return Object.entries(REDUCTIONS).map(([kernelName, { code, axisAttr }]) => ({
    kernelName,
    backendName,
    kernelFunc: reduceKernel(kernelName, code, axisAttr),
  }));
}
