import {
  Concat,
  Pack,
  Tile,
  backend_util,
  util,
  type ConcatAttrs,
  type KernelConfig,
  type KernelFunc,
  type PackAttrs,
  type TensorInfo,
  type TileAttrs,
  type TypedArray,
} from '@tensorflow/tfjs-core';
import type { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import { copyRun, outputLike, requiredInput, runCpuKernel } from './kernel-utils';

/**
 * Writes the rows of `parts` side by side: output row o (o < outer) is part 0's row o, then part 1's, … (part
 * i's rows `runs[i]` long). Every output element is written.
 */
function joinRows(
  parts: readonly TypedArray[],
  runs: readonly number[],
  outer: number,
  out: TypedArray,
): void {
  let dst = 0;
  for (let o = 0; o < outer; o++) {
    for (let i = 0; i < parts.length; i++) {
      const n = runs[i];
      copyRun(parts[i], o * n, n, out, dst);
      dst += n;
    }
  }
}

/** The typed arrays of `inputs` when every one is a numeric typed array of `dtype` (else undefined). */
function numericValues(cpu: MathBackendCPU, inputs: readonly TensorInfo[]): TypedArray[] | undefined {
  const dtype = inputs[0].dtype;
  if (dtype !== 'float32' && dtype !== 'int32' && dtype !== 'bool') return undefined;
  const values: TypedArray[] = [];
  for (const t of inputs) {
    const v = cpu.data.get(t.dataId)?.values;
    if (t.dtype !== dtype || !ArrayBuffer.isView(v)) return undefined;
    values.push(v as TypedArray);
  }
  return values;
}

/**
 * Pack (`tf.stack`) as run copies: the inputs seen as [outer, inner] around the new axis, each output row the
 * inputs' rows in order. The JS kernel expands each input's dims and concatenates through reshapes, about
 * 6 µs for two 1,000-float vectors or three scalars, which the quasi-Newton memories and the solvers' one-read
 * checks pay several times per iteration. Same results and checks; one input, string and complex tensors take
 * the JS kernel.
 */
const pack: KernelFunc = ({ inputs, backend, attrs }) => {
  const cpu = backend as MathBackendCPU;
  const list = inputs as unknown as TensorInfo[];
  const { axis } = attrs as unknown as PackAttrs;
  if (list.length < 2) return runCpuKernel(Pack, cpu, inputs, attrs);
  const shape = list[0].shape;
  const dtype = list[0].dtype;
  for (const t of list) {
    util.assertShapesMatch(shape, t.shape, 'All tensors passed to stack must have matching shapes');
    util.assert(dtype === t.dtype, () => 'All tensors passed to stack must have matching dtypes');
  }
  const values = numericValues(cpu, list);
  const a = axis < 0 ? axis + shape.length + 1 : axis;
  if (!values || a < 0 || a > shape.length) return runCpuKernel(Pack, cpu, inputs, attrs);
  const outShape = [...shape.slice(0, a), list.length, ...shape.slice(a)];
  const outer = util.sizeFromShape(shape.slice(0, a));
  const inner = util.sizeFromShape(shape.slice(a));
  const out = outputLike(cpu, values[0], outer * inner * list.length);
  joinRows(
    values,
    values.map(() => inner),
    outer,
    out,
  );
  return cpu.makeTensorInfo(outShape, dtype, out);
};

/**
 * Concat as run copies: the inputs seen as [outer, innerᵢ] around the axis, each output row the inputs' rows in
 * order (what the JS kernel computes after reshaping every input, without those reshapes). Same shape checks;
 * string and complex tensors, and a single non-empty input, take the JS kernel.
 */
const concat: KernelFunc = ({ inputs, backend, attrs }) => {
  const cpu = backend as MathBackendCPU;
  const list = inputs as unknown as TensorInfo[];
  const { axis } = attrs as unknown as ConcatAttrs;
  if (list.length === 0) return runCpuKernel(Concat, cpu, inputs, attrs);
  const a = util.parseAxisParam(axis, list[0].shape)[0];
  backend_util.assertParamsConsistent(
    list.map((t) => t.shape),
    a,
  );
  const outShape = backend_util.computeOutShape(
    list.map((t) => t.shape),
    a,
  );
  const nonEmpty = list.filter((t) => util.sizeFromShape(t.shape) > 0);
  const values = nonEmpty.length >= 2 ? numericValues(cpu, nonEmpty) : undefined;
  if (!values) return runCpuKernel(Concat, cpu, inputs, attrs);
  const outer = util.sizeFromShape(outShape.slice(0, a));
  const runs = nonEmpty.map((t) => util.sizeFromShape(t.shape.slice(a)));
  const out = outputLike(cpu, values[0], util.sizeFromShape(outShape));
  joinRows(values, runs, outer, out);
  return cpu.makeTensorInfo(outShape, nonEmpty[0].dtype, out);
};

/**
 * Tile (`tf.tile`, and `tf.broadcastTo`, which the gradients of sums and means use) as block copies, one
 * repeated dim at a time from the last: with the dims after d already tiled, each block of the dims from d on is
 * contiguous and its copies follow each other. The JS kernel computes every output element's source through
 * index conversions: 0.65 ms for [1, 1,000] → [11, 1,000], 12 ms for ES's [1, 784, 10] → [11, 784, 10] on
 * hyper-cleaning. Same results; empty outputs, string and complex tensors take the JS kernel.
 */
const tile: KernelFunc = ({ inputs, backend, attrs }) => {
  const cpu = backend as MathBackendCPU;
  const x = requiredInput(inputs, 'x', Tile);
  const { reps } = attrs as unknown as TileAttrs;
  const values = numericValues(cpu, [x]);
  const outShape = x.shape.map((n, i) => n * reps[i]);
  const size = util.sizeFromShape(outShape);
  if (!values || reps.length !== x.shape.length || size === 0) return runCpuKernel(Tile, cpu, inputs, attrs);
  const last = reps.findIndex((r) => r !== 1);
  const shape = x.shape.slice();
  let current = values[0];
  if (last < 0) {
    const copy = outputLike(cpu, current, size);
    copy.set(current);
    return cpu.makeTensorInfo(outShape, x.dtype, copy);
  }
  for (let d = shape.length - 1; d >= last; d--) {
    const r = reps[d];
    if (r === 1) continue;
    const outer = util.sizeFromShape(shape.slice(0, d));
    const block = util.sizeFromShape(shape.slice(d));
    const next =
      d === last
        ? outputLike(cpu, current, outer * block * r)
        : new (current.constructor as new (n: number) => TypedArray)(outer * block * r);
    for (let o = 0; o < outer; o++) {
      for (let k = 0; k < r; k++) copyRun(current, o * block, block, next, (o * r + k) * block);
    }
    current = next;
    shape[d] *= r;
  }
  return cpu.makeTensorInfo(outShape, x.dtype, current);
};

/** Pack, Concat and Tile on the cpu-blas backend (JS run copies; see {@link pack}, {@link concat}, {@link tile}). */
export function joinKernelConfigs(backendName: string): KernelConfig[] {
  return [
    { kernelName: Pack, backendName, kernelFunc: pack },
    { kernelName: Concat, backendName, kernelFunc: concat },
    { kernelName: Tile, backendName, kernelFunc: tile },
  ];
}
