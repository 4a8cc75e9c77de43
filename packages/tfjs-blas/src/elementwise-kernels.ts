import {
  Abs,
  Add,
  Elu,
  Equal,
  Exp,
  Log,
  Neg,
  Relu,
  Relu6,
  Rsqrt,
  Sigmoid,
  Sqrt,
  Square,
  Step,
  Tanh,
  Greater,
  GreaterEqual,
  Less,
  LessEqual,
  Maximum,
  Minimum,
  Multiply,
  NotEqual,
  RealDiv,
  SquaredDifference,
  Sub,
  broadcast_util,
  util,
  type KernelConfig,
  type KernelFunc,
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

/** Op codes of the addon's `binary`: arithmetic (float32 out) and comparisons (bool out, codes >= 100). */
const ARITHMETIC: Record<string, number> = {
  [Add]: 0,
  [Sub]: 1,
  [Multiply]: 2,
  [RealDiv]: 3,
  [Maximum]: 4,
  [Minimum]: 5,
  [SquaredDifference]: 6,
};
const COMPARISON: Record<string, number> = {
  [Equal]: 100,
  [NotEqual]: 101,
  [Less]: 102,
  [LessEqual]: 103,
  [Greater]: 104,
  [GreaterEqual]: 105,
};

/** Op codes of the addon's `unary`. */
const UNARY: Record<string, number> = {
  [Relu]: 0,
  [Step]: 1,
  [Neg]: 2,
  [Square]: 3,
  [Sqrt]: 4,
  [Rsqrt]: 5,
  [Exp]: 6,
  [Log]: 7,
  [Abs]: 8,
  [Sigmoid]: 9,
  [Tanh]: 10,
  [Relu6]: 11,
  [Elu]: 12,
};

const MAX_NATIVE_RANK = 8;

/** Row-major strides of `shape` aligned on the right to a rank-`rank` output, 0 along broadcast dims. */
function alignedStrides(shape: readonly number[], outShape: readonly number[]): number[] {
  const rank = outShape.length;
  const strides = new Array<number>(rank).fill(0);
  let stride = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    const o = d + rank - shape.length;
    strides[o] = shape[d] === 1 && outShape[o] !== 1 ? 0 : stride;
    stride *= shape[d];
  }
  return strides;
}

/**
 * The broadcast of `aShape` and `bShape` to `outShape` as the fewest dims: size-1 output dims dropped, and
 * neighbours merged where both operands step through them as one (s_i = s_{i+1}·n_{i+1}, zeros included).
 */
export function broadcastLayout(
  outShape: readonly number[],
  aShape: readonly number[],
  bShape: readonly number[],
): {
  /** The merged output dims. */
  shape: number[];
  /** Strides of the first operand along them (0 where it broadcasts). */
  aStrides: number[];
  /** Strides of the second operand along them (0 where it broadcasts). */
  bStrides: number[];
} {
  const sa = alignedStrides(aShape, outShape);
  const sb = alignedStrides(bShape, outShape);
  const shape: number[] = [];
  const aStrides: number[] = [];
  const bStrides: number[] = [];
  for (let d = 0; d < outShape.length; d++) {
    const n = outShape[d];
    if (n === 1) continue;
    const last = shape.length - 1;
    if (last >= 0 && aStrides[last] === sa[d] * n && bStrides[last] === sb[d] * n) {
      shape[last] *= n;
      aStrides[last] = sa[d];
      bStrides[last] = sb[d];
    } else {
      shape.push(n);
      aStrides.push(sa[d]);
      bStrides.push(sb[d]);
    }
  }
  if (shape.length === 0) return { shape: [1], aStrides: [0], bStrides: [0] };
  return { shape, aStrides, bStrides };
}

/** Whether two shapes are equal. */
function sameShape(a: readonly number[], b: readonly number[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Strides and dims of the common layouts, reused across calls (the addon only reads them). */
const UNIT_STRIDE = Int32Array.of(1);
const SCALAR_STRIDE = Int32Array.of(0);
const FLAT_SHAPE = new Int32Array(1);

/**
 * Outputs of at most this many elements (the flat layouts: equal shapes or a single-value operand) are computed
 * here in JS, with the addon's float32 formulas: for a few values the call into the addon and the handing over
 * of fresh small arrays cost more than the arithmetic.
 */
export const TINY_BINARY = 16;

/**
 * out[i] = op(a[i·sa], b[i·sb]) for i < n, as the addon computes it in float32: +, −, ×, ÷ of two float32 values
 * in double rounded once to float32 give the float32 operation's result (double has more than 2·24 + 2 bits);
 * max and min return NaN when either value is NaN, else the addon's comparison (b when they compare equal);
 * the squared difference rounds the difference to float32 before squaring, as the addon does.
 */
export function tinyBinary(
  code: number,
  a: ArrayLike<number>,
  sa: number,
  b: ArrayLike<number>,
  sb: number,
  out: Float32Array | Uint8Array,
  n: number,
): void {
  for (let i = 0; i < n; i++) {
    const x = a[i * sa];
    const y = b[i * sb];
    let v: number;
    switch (code) {
      case 0:
        v = x + y;
        break;
      case 1:
        v = x - y;
        break;
      case 2:
        v = x * y;
        break;
      case 3:
        v = x / y;
        break;
      case 4:
        v = x !== x || y !== y ? NaN : x > y ? x : y;
        break;
      case 5:
        v = x !== x || y !== y ? NaN : x < y ? x : y;
        break;
      case 6: {
        const d = Math.fround(x - y);
        v = d * d;
        break;
      }
      case 100:
        v = x === y ? 1 : 0;
        break;
      case 101:
        v = x !== y ? 1 : 0;
        break;
      case 102:
        v = x < y ? 1 : 0;
        break;
      case 103:
        v = x <= y ? 1 : 0;
        break;
      case 104:
        v = x > y ? 1 : 0;
        break;
      case 105:
        v = x >= y ? 1 : 0;
        break;
      default:
        throw new Error(`cpu-blas: unknown binary op code ${code}`);
    }
    out[i] = v;
  }
}

function binaryKernel(kernelName: string, code: number, comparison: boolean): KernelFunc {
  return ({ inputs, backend, attrs }) => {
    const cpu = backend as MathBackendCPU;
    const a = requiredInput(inputs, 'a', kernelName);
    const b = requiredInput(inputs, 'b', kernelName);
    if (a.dtype !== 'float32' || b.dtype !== 'float32') return runCpuKernel(kernelName, cpu, inputs, attrs);
    const aSize = util.sizeFromShape(a.shape);
    const bSize = util.sizeFromShape(b.shape);
    // Equal shapes, or one operand a single value of rank at most the other's: one flat loop, no layout.
    const bIsScalar = bSize === 1 && b.shape.length <= a.shape.length;
    const aIsScalar = aSize === 1 && a.shape.length <= b.shape.length;
    if (sameShape(a.shape, b.shape) || bIsScalar || aIsScalar) {
      const outShape = sameShape(a.shape, b.shape) || bIsScalar ? a.shape : b.shape;
      const size = util.sizeFromShape(outShape);
      const out = comparison ? new Uint8Array(size) : nativeOutput(cpu, size);
      if (size > 0 && size <= TINY_BINARY) {
        tinyBinary(
          code,
          float32Values(cpu, a),
          aSize === size ? 1 : 0,
          float32Values(cpu, b),
          bSize === size ? 1 : 0,
          out,
          size,
        );
      } else if (size > 0) {
        FLAT_SHAPE[0] = size;
        requireNativeBlas().binary(
          code,
          float32Values(cpu, a),
          aSize === size ? UNIT_STRIDE : SCALAR_STRIDE,
          float32Values(cpu, b),
          bSize === size ? UNIT_STRIDE : SCALAR_STRIDE,
          out,
          FLAT_SHAPE,
        );
      }
      return comparison
        ? cpu.makeTensorInfo(outShape.slice(), 'bool', out)
        : cpu.makeTensorInfo(outShape.slice(), 'float32', ownedOutput(out as Float32Array));
    }
    const outShape = broadcast_util.assertAndGetBroadcastShape(a.shape, b.shape);
    const size = util.sizeFromShape(outShape);
    const layout = broadcastLayout(outShape, a.shape, b.shape);
    if (layout.shape.length > MAX_NATIVE_RANK) return runCpuKernel(kernelName, cpu, inputs, attrs);
    const out = comparison ? new Uint8Array(size) : nativeOutput(cpu, size);
    if (size > 0) {
      requireNativeBlas().binary(
        code,
        float32Values(cpu, a),
        int32Arg(0, layout.aStrides),
        float32Values(cpu, b),
        int32Arg(1, layout.bStrides),
        out,
        int32Arg(2, layout.shape),
      );
    }
    return comparison
      ? cpu.makeTensorInfo(outShape, 'bool', out)
      : cpu.makeTensorInfo(outShape, 'float32', ownedOutput(out as Float32Array));
  };
}

function unaryKernel(kernelName: string, code: number): KernelFunc {
  return ({ inputs, backend, attrs }) => {
    const cpu = backend as MathBackendCPU;
    const x = requiredInput(inputs, 'x', kernelName);
    if (x.dtype !== 'float32') return runCpuKernel(kernelName, cpu, inputs, attrs);
    const out = nativeOutput(cpu, util.sizeFromShape(x.shape));
    const alpha = typeof attrs?.alpha === 'number' ? attrs.alpha : 0;
    if (out.length > 0) requireNativeBlas().unary(code, float32Values(cpu, x), out, alpha);
    return cpu.makeTensorInfo(x.shape, 'float32', ownedOutput(out));
  };
}

/**
 * Native float32 Add, Sub, Multiply, RealDiv, Maximum, Minimum, SquaredDifference and the comparisons, with
 * numpy broadcasting (the JS kernels broadcast through per-element index arithmetic, which dominated the
 * batch-norm and softmax steps of the zoo's problems once the products were native), and the unary Relu,
 * Step (relu's gradient), Relu6, Elu, Neg, Square, Sqrt, Rsqrt, Exp, Log, Abs, Sigmoid and Tanh with the JS
 * kernels' formulas.
 */
export function elementwiseKernelConfigs(backendName: string): KernelConfig[] {
  return [
    ...Object.entries(ARITHMETIC).map(([kernelName, code]) => ({
      kernelName,
      backendName,
      kernelFunc: binaryKernel(kernelName, code, false),
    })),
    ...Object.entries(COMPARISON).map(([kernelName, code]) => ({
      kernelName,
      backendName,
      kernelFunc: binaryKernel(kernelName, code, true),
    })),
    ...Object.entries(UNARY).map(([kernelName, code]) => ({
      kernelName,
      backendName,
      kernelFunc: unaryKernel(kernelName, code),
    })),
  ];
}
