/**
 * An inner solve that met a non-finite quantity (NaN or ±Infinity): names the solver, the inner iteration
 * and the quantity, so a diverging run says where it went wrong.
 */
export class SolverDivergenceError extends Error {
  constructor(
    /** Name of the solver, e.g. `gd`. */
    readonly solver: string,
    /** The inner iteration at which the quantity turned non-finite. */
    readonly iteration: number,
    /** What turned non-finite, e.g. the gradient norm or the loss. */
    readonly quantity: string,
    /** The offending value (NaN or ±Infinity). */
    readonly value: number,
  ) {
    super(`inner solver '${solver}': ${quantity} became ${value} at inner iteration ${iteration}`);
    this.name = 'SolverDivergenceError';
  }
}
