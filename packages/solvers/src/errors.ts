/**
 * An inner solve that met a non-finite quantity (NaN or ±Infinity): names the solver, the inner iteration
 * and the quantity, so a diverging run says where it went wrong.
 */
export class SolverDivergenceError extends Error {
  constructor(
    readonly solver: string,
    readonly iteration: number,
    readonly quantity: string,
    readonly value: number,
  ) {
    super(`inner solver '${solver}': ${quantity} became ${value} at inner iteration ${iteration}`);
    this.name = 'SolverDivergenceError';
  }
}
