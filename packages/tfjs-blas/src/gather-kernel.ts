import {
  GatherV2,
  backend_util,
  util,
  type GatherV2Attrs,
  type KernelConfig,
  type KernelFunc,
  type TypedArray,
} from '@tensorflow/tfjs-core';
import type { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import { copyRun, outputLike, requiredInput, runCpuKernel } from './kernel-utils';

/**
 * GatherV2 as whole-slice copies: the input seen as [batch, outer, dim, slice] (tfjs's own flattening), every
 * output slice one contiguous copy of `slice` elements. The JS kernel computes every output element's source
 * through index-to-location conversions, which made drawing a 64-sample minibatch from a 20,000 × 784 training
 * set cost milliseconds (most of a stochastic step on the hyper-cleaning protocol). Same results and the same
 * out-of-range error as the JS kernel; string and complex tensors take the JS kernel.
 */
const gatherV2: KernelFunc = ({ inputs, backend, attrs }) => {
  const cpu = backend as MathBackendCPU;
  const x = requiredInput(inputs, 'x', GatherV2);
  const indices = requiredInput(inputs, 'indices', GatherV2);
  const { axis, batchDims } = attrs as unknown as GatherV2Attrs;
  if (x.dtype === 'string' || x.dtype === 'complex64') return runCpuKernel(GatherV2, cpu, inputs, attrs);
  const xValues = cpu.data.get(x.dataId).values as TypedArray;
  const indexValues = cpu.data.get(indices.dataId).values as TypedArray;
  const parsedAxis = util.parseAxisParam(axis, x.shape)[0];
  const axisDim = x.shape[parsedAxis];
  for (let i = 0; i < indexValues.length; i++) {
    const index = indexValues[i];
    util.assert(
      index <= axisDim - 1 && index >= 0,
      () => `GatherV2: the index value ${index} is not in [0, ${axisDim - 1}]`,
    );
  }
  const info = backend_util.segment_util.collectGatherOpShapeInfo(x, indices, parsedAxis, batchDims ?? 0);
  const { batchSize, outerSize, dimSize, sliceSize } = info;
  const perBatch = indexValues.length / Math.max(batchSize, 1);
  const size = util.sizeFromShape(info.outputShape);
  // A pooled float32 array may hold old values: every element below is written.
  const out = outputLike(cpu, xValues, size);
  let dst = 0;
  for (let b = 0; b < batchSize; b++) {
    for (let o = 0; o < outerSize; o++) {
      const base = (b * outerSize + o) * dimSize * sliceSize;
      for (let i = 0; i < perBatch; i++) {
        copyRun(xValues, base + indexValues[b * perBatch + i] * sliceSize, sliceSize, out, dst);
        dst += sliceSize;
      }
    }
  }
  return cpu.makeTensorInfo(info.outputShape, x.dtype, out);
};

/** GatherV2 on the cpu-blas backend (JS slice copies; see {@link gatherV2}). */
export function gatherKernelConfigs(backendName: string): KernelConfig[] {
  return [{ kernelName: GatherV2, backendName, kernelFunc: gatherV2 }];
}
