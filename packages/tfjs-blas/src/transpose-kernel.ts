import {
  Transpose,
  util,
  type KernelConfig,
  type KernelFunc,
  type TransposeAttrs,
} from '@tensorflow/tfjs-core';
import type { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import { float32Values, int32Arg, requiredInput, runCpuKernel, outputArray } from './kernel-utils';
import { requireNativeBlas } from './native-addon';

/**
 * `shape` and `perm` of a transpose reduced to the fewest dims: size-1 dims dropped, and input dims that
 * stay neighbours in the same order under `perm` merged. `[10, 5000, 10]` with perm `[1, 0, 2]` stays as it
 * is; `[2, 3, 4]` with `[2, 0, 1]` becomes `[6, 4]` with `[1, 0]`.
 */
export function transposeLayout(
  shape: readonly number[],
  perm: readonly number[],
): {
  /** The merged input dims. */
  shape: number[];
  /** Where output dim j comes from, over the merged dims. */
  perm: number[];
} {
  const kept = shape.map((n, d) => (n === 1 ? -1 : d)).filter((d) => d >= 0);
  // Output order of the kept input dims.
  const order = perm.filter((d) => shape[d] !== 1);
  // Group runs of input dims d, d+1, … that appear consecutively in `order`.
  const groups: number[][] = [];
  for (const d of order) {
    const last = groups[groups.length - 1];
    const prevKept = kept[kept.indexOf(d) - 1];
    if (last && last[last.length - 1] === prevKept && kept.indexOf(d) > 0) last.push(d);
    else groups.push([d]);
  }
  // Merged input dims, in input order.
  const byInput = [...groups].sort((a, b) => a[0] - b[0]);
  const mergedShape = byInput.map((g) => g.reduce((p, d) => p * shape[d], 1));
  const mergedPerm = groups.map((g) => byInput.indexOf(g));
  if (mergedShape.length === 0) return { shape: [1], perm: [0] };
  return { shape: mergedShape, perm: mergedPerm };
}

const transpose: KernelFunc = ({ inputs, backend, attrs }) => {
  const cpu = backend as MathBackendCPU;
  const x = requiredInput(inputs, 'x', Transpose);
  const { perm } = attrs as unknown as TransposeAttrs;
  const size = util.sizeFromShape(x.shape);
  if (x.dtype !== 'float32' || size === 0) return runCpuKernel(Transpose, cpu, inputs, attrs);
  const outShape = perm.map((d) => x.shape[d]);
  const layout = transposeLayout(x.shape, perm);
  if (layout.shape.length > 8) return runCpuKernel(Transpose, cpu, inputs, attrs);
  const out = outputArray(cpu, size);
  requireNativeBlas().transpose(
    float32Values(cpu, x),
    int32Arg(0, layout.shape),
    int32Arg(1, layout.perm),
    out,
  );
  return cpu.makeTensorInfo(outShape, 'float32', out);
};

/**
 * Native float32 Transpose (any permutation up to rank 8 after merging dims): whole-row copies when the
 * innermost dim stays innermost, else cache tiles of 32×32. The JS kernel computes every output index with a
 * division per dim, which made the transposes around ESJ's batched hyper-cleaning solve ([Q, 5000, 10]) most
 * of its step time.
 */
export function transposeKernelConfigs(backendName: string): KernelConfig[] {
  return [{ kernelName: Transpose, backendName, kernelFunc: transpose }];
}
