import { linalgOptions } from '@bilevel/linalg';
import { z } from 'zod';

/** Stop rules shared by every solver. */
export const stopOptionShape = {
  maxIterations: z
    .number()
    .int()
    .positive()
    .default(100)
    .describe('iteration budget (a request may override it); quasi-Newton solvers count warm-up steps too'),
  tolerance: z.number().min(0).default(0).describe('stop once ‖∇_y g‖ ≤ tolerance (0: run the whole budget)'),
};

/** How often the elementwise solvers read the gradient norm (each read is a device sync). */
export const checkEveryShape = {
  checkEvery: z
    .number()
    .int()
    .positive()
    .default(10)
    .describe('read ‖∇_y g‖ every k iterations (tolerance and divergence checks; each read is a sync)'),
};

/** The line searches of the quasi-Newton solvers: strong Wolfe, backtracking Armijo, or a fixed step. */
export const LINE_SEARCHES = ['strong-wolfe', 'armijo', 'fixed'] as const;
/** A line-search name: `'strong-wolfe'`, `'armijo'` or `'fixed'`. */
export type LineSearchKind = (typeof LINE_SEARCHES)[number];

/** Line-search and schedule options of the quasi-Newton solvers. */
export function quasiNewtonOptionShape(defaultLineSearch: LineSearchKind) {
  return {
    ...stopOptionShape,
    lineSearch: z
      .enum(LINE_SEARCHES)
      .default(defaultLineSearch)
      .describe(
        "step length rule: 'strong-wolfe', backtracking 'armijo', or a 'fixed' step (qNBO's unit step)",
      ),
    stepSize: z.number().positive().default(1).describe("step length α of the 'fixed' line search"),
    c1: z.number().gt(0).lt(1).default(1e-4).describe('sufficient decrease: g(y + αd) ≤ g(y) + c₁α∇gᵀd'),
    c2: z
      .number()
      .gt(0)
      .lt(1)
      .default(0.9)
      .describe('strong Wolfe curvature: |∇g(y + αd)ᵀd| ≤ c₂|∇gᵀd| (c₁ < c₂)'),
    valueNoise: z
      .number()
      .min(0)
      .lt(1)
      .default(1e-6)
      .describe(
        "relative float32 noise of g's values: within it, decrease is judged from the slope (Hager–Zhang)",
      ),
    backtrackingFactor: z.number().gt(0).lt(1).default(0.5).describe('Armijo backtracking: α ← factor·α'),
    maxLineSearchSteps: z.number().int().positive().default(20).describe('trial points per line search'),
    warmupSteps: z
      .number()
      .int()
      .min(0)
      .default(0)
      .describe("qNBO's schedule: P plain gradient steps before the quasi-Newton steps"),
    warmupStepSize: z.number().positive().default(0.1).describe('step size of the warm-up gradient steps'),
    initialScaling: linalgOptions
      .initialScaling()
      .describe("H₀ = γI: 'auto' takes γ from the newest pair (sᵀr / rᵀr), a number c gives H₀ = c·I"),
    curvatureEpsilon: linalgOptions
      .curvatureEpsilon()
      .describe('curvature test: a pair (s, r) is used only when sᵀr > ε'),
  };
}

/** Refinement shared by the quasi-Newton schemas: the Wolfe constants must satisfy 0 < c₁ < c₂ < 1. */
export function wolfeConstantsInOrder(o: { c1: number; c2: number }, ctx: z.RefinementCtx): void {
  if (!(o.c1 < o.c2)) {
    ctx.addIssue({
      code: z.ZodIssueCode.custom,
      path: ['c2'],
      message: `must be larger than c1 (${o.c1})`,
    });
  }
}

/** The options every quasi-Newton solver reads. */
export interface QuasiNewtonOptions {
  /** Iteration budget, warm-up steps included. */
  readonly maxIterations: number;
  /** Stop once ‖∇_y g‖ ≤ tolerance (0: run the whole budget). */
  readonly tolerance: number;
  /** The step-length rule. */
  readonly lineSearch: LineSearchKind;
  /** Step length α of the `'fixed'` line search. */
  readonly stepSize: number;
  /** Sufficient-decrease constant c₁. */
  readonly c1: number;
  /** Strong Wolfe curvature constant c₂ (c₁ < c₂ < 1). */
  readonly c2: number;
  /** Relative float32 noise of g's values, within which decrease is judged from the slope. */
  readonly valueNoise: number;
  /** Armijo backtracking factor: α ← factor·α. */
  readonly backtrackingFactor: number;
  /** Trial points per line search. */
  readonly maxLineSearchSteps: number;
  /** qNBO's schedule: P plain gradient steps before the quasi-Newton steps. */
  readonly warmupSteps: number;
  /** Step size of the warm-up gradient steps. */
  readonly warmupStepSize: number;
  /** H₀ = γI: `'auto'` takes γ from the newest pair (sᵀr / rᵀr), a number fixes γ. */
  readonly initialScaling: 'auto' | number;
  /** Curvature test: a pair (s, r) is used only when sᵀr > ε. */
  readonly curvatureEpsilon: number;
}
