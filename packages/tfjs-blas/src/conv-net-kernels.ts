import type { KernelConfig, KernelFunc, NamedAttrMap, TensorInfo } from '@tensorflow/tfjs-core';
import type { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import { float32Values, outputArray, requiredInput } from './kernel-utils';
import { requireNativeBlas } from './native-addon';

/**
 * Kernel `BilevelChannelMoments`: input `x` [g, m, c] → [2, g, 1, c], the mean and the biased variance over
 * the m rows of each group g and channel c (batch-norm statistics of g independent groups). One pass over x,
 * sums of x − (the group's first row) in double precision.
 */
export const CHANNEL_MOMENTS_KERNEL = 'BilevelChannelMoments';

/**
 * Kernel `BilevelChannelSums`: inputs `u` [g, m, c] and optional `v` of the same shape → [2, g, 1, c], Σ u and
 * Σ u·v over the m rows of each group and channel (without v: Σ u and Σ u²), accumulated in double precision.
 */
export const CHANNEL_SUMS_KERNEL = 'BilevelChannelSums';

/**
 * Kernel `BilevelChannelAffine`: inputs `x` [g, m, c], `a` and `b` [g, 1, c], optional `z` [g, m, c] with `s`
 * [g, 1, c] → x·a + z·s + b (without z and s: x·a + b), the coefficients broadcast over each group's rows.
 */
export const CHANNEL_AFFINE_KERNEL = 'BilevelChannelAffine';

/**
 * Kernel `BilevelLeakyRelu`: input `x`, attribute `alpha` → x for x > 0, else α·x (the float32 values of
 * x·step(x, α)), in one pass.
 */
export const LEAKY_RELU_KERNEL = 'BilevelLeakyRelu';

/**
 * Kernel `BilevelLeakyReluGrad`: inputs `dy` and `x` of the same shape, attribute `alpha` → dy for x > 0, else
 * α·dy, NaN where x is NaN (the float32 values of dy·step(x, α)), in one pass.
 */
export const LEAKY_RELU_GRAD_KERNEL = 'BilevelLeakyReluGrad';

function checkFloat32(kernel: string, ...ts: TensorInfo[]): void {
  for (const t of ts) {
    if (t.dtype !== 'float32') throw new Error(`${kernel}: inputs must be float32, got ${t.dtype}`);
  }
}

function groupsRowsChannels(kernel: string, name: string, t: TensorInfo): [number, number, number] {
  if (t.shape.length !== 3)
    throw new Error(`${kernel}: ${name} must have rank 3 [groups, rows, channels], got [${t.shape}]`);
  return t.shape as [number, number, number];
}

function expectSameShape(kernel: string, name: string, t: TensorInfo, shape: readonly number[]): void {
  if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
    throw new Error(`${kernel}: ${name} has shape [${t.shape}], expected [${shape}]`);
  }
}

/** Runs a native reduction to [2, g, 1, c]; an input without groups or channels gives an empty output. */
function statistics(cpu: MathBackendCPU, g: number, c: number, run: (out: Float32Array) => void): TensorInfo {
  const out = outputArray(cpu, 2 * g * c);
  if (out.length > 0) run(out);
  return cpu.makeTensorInfo([2, g, 1, c], 'float32', out);
}

const channelMoments: KernelFunc = ({ inputs, backend }) => {
  const cpu = backend as MathBackendCPU;
  const x = requiredInput(inputs, 'x', CHANNEL_MOMENTS_KERNEL);
  checkFloat32(CHANNEL_MOMENTS_KERNEL, x);
  const [g, , c] = groupsRowsChannels(CHANNEL_MOMENTS_KERNEL, 'x', x);
  return statistics(cpu, g, c, (out) => requireNativeBlas().channelMoments(float32Values(cpu, x), g, out));
};

const channelSums: KernelFunc = ({ inputs, backend }) => {
  const cpu = backend as MathBackendCPU;
  const u = requiredInput(inputs, 'u', CHANNEL_SUMS_KERNEL);
  const v = inputs.v;
  checkFloat32(CHANNEL_SUMS_KERNEL, u, ...(v ? [v] : []));
  const [g, , c] = groupsRowsChannels(CHANNEL_SUMS_KERNEL, 'u', u);
  if (v) expectSameShape(CHANNEL_SUMS_KERNEL, 'v', v, u.shape);
  return statistics(cpu, g, c, (out) =>
    requireNativeBlas().channelSums(float32Values(cpu, u), v ? float32Values(cpu, v) : null, g, out),
  );
};

const channelAffine: KernelFunc = ({ inputs, backend }) => {
  const cpu = backend as MathBackendCPU;
  const x = requiredInput(inputs, 'x', CHANNEL_AFFINE_KERNEL);
  const a = requiredInput(inputs, 'a', CHANNEL_AFFINE_KERNEL);
  const b = requiredInput(inputs, 'b', CHANNEL_AFFINE_KERNEL);
  const { z, s } = inputs;
  if ((z === undefined) !== (s === undefined)) {
    throw new Error(`${CHANNEL_AFFINE_KERNEL}: z and s must both be given or both be left out`);
  }
  checkFloat32(CHANNEL_AFFINE_KERNEL, x, a, b, ...(z && s ? [z, s] : []));
  const [g, , c] = groupsRowsChannels(CHANNEL_AFFINE_KERNEL, 'x', x);
  const coefficient = [g, 1, c];
  expectSameShape(CHANNEL_AFFINE_KERNEL, 'a', a, coefficient);
  expectSameShape(CHANNEL_AFFINE_KERNEL, 'b', b, coefficient);
  if (z && s) {
    expectSameShape(CHANNEL_AFFINE_KERNEL, 'z', z, x.shape);
    expectSameShape(CHANNEL_AFFINE_KERNEL, 's', s, coefficient);
  }
  const out = outputArray(
    cpu,
    x.shape.reduce((p, d) => p * d, 1),
  );
  if (out.length > 0) {
    requireNativeBlas().channelAffine(
      float32Values(cpu, x),
      float32Values(cpu, a),
      z ? float32Values(cpu, z) : null,
      s ? float32Values(cpu, s) : null,
      float32Values(cpu, b),
      g,
      out,
    );
  }
  return cpu.makeTensorInfo(x.shape, 'float32', out);
};

function alphaOf(kernel: string, attrs: NamedAttrMap | undefined): number {
  const alpha = attrs?.alpha;
  if (typeof alpha !== 'number') throw new Error(`${kernel}: attribute alpha must be a number`);
  return alpha;
}

const leakyRelu: KernelFunc = ({ inputs, backend, attrs }) => {
  const cpu = backend as MathBackendCPU;
  const x = requiredInput(inputs, 'x', LEAKY_RELU_KERNEL);
  checkFloat32(LEAKY_RELU_KERNEL, x);
  const alpha = alphaOf(LEAKY_RELU_KERNEL, attrs);
  const out = outputArray(
    cpu,
    x.shape.reduce((p, d) => p * d, 1),
  );
  if (out.length > 0) requireNativeBlas().leakyRelu(float32Values(cpu, x), null, alpha, out);
  return cpu.makeTensorInfo(x.shape, 'float32', out);
};

const leakyReluGrad: KernelFunc = ({ inputs, backend, attrs }) => {
  const cpu = backend as MathBackendCPU;
  const dy = requiredInput(inputs, 'dy', LEAKY_RELU_GRAD_KERNEL);
  const x = requiredInput(inputs, 'x', LEAKY_RELU_GRAD_KERNEL);
  checkFloat32(LEAKY_RELU_GRAD_KERNEL, dy, x);
  expectSameShape(LEAKY_RELU_GRAD_KERNEL, 'x', x, dy.shape);
  const alpha = alphaOf(LEAKY_RELU_GRAD_KERNEL, attrs);
  const out = outputArray(
    cpu,
    x.shape.reduce((p, d) => p * d, 1),
  );
  if (out.length > 0)
    requireNativeBlas().leakyRelu(float32Values(cpu, x), float32Values(cpu, dy), alpha, out);
  return cpu.makeTensorInfo(x.shape, 'float32', out);
};

/** The batch-norm and LeakyReLU kernels (float32 only; other dtypes are an error). */
export function convNetKernelConfigs(backendName: string): KernelConfig[] {
  return [
    { kernelName: LEAKY_RELU_KERNEL, backendName, kernelFunc: leakyRelu },
    { kernelName: LEAKY_RELU_GRAD_KERNEL, backendName, kernelFunc: leakyReluGrad },
    { kernelName: CHANNEL_MOMENTS_KERNEL, backendName, kernelFunc: channelMoments },
    { kernelName: CHANNEL_SUMS_KERNEL, backendName, kernelFunc: channelSums },
    { kernelName: CHANNEL_AFFINE_KERNEL, backendName, kernelFunc: channelAffine },
  ];
}
