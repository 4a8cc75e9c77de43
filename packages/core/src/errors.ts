/** A configuration or option error; `path` names the offending field (e.g. `estimator.options.maxIterations`). */
export class ConfigError extends Error {
  constructor(
    message: string,
    /**
     * The offending field as a dotted path, e.g. `estimator.options.maxIterations` (empty when not tied to
     * one).
     */
    readonly path: string = '',
  ) {
    super(message);
    this.name = 'ConfigError';
  }
}

/** A data file or data set that is missing, truncated or malformed; `file` names it. */
export class DataError extends Error {
  constructor(
    message: string,
    /** The file that is missing or malformed (empty when the data did not come from a file). */
    readonly file: string = '',
  ) {
    super(message);
    this.name = 'DataError';
  }
}

/**
 * A non-finite or diverging quantity, with the outer step where it was seen: NaN or ±Infinity, or a finite
 * value past the trainer's `divergenceBound` (then `bound` is set).
 */
export class DivergenceError extends Error {
  constructor(
    /** The outer step at which the quantity turned non-finite or passed the bound. */
    readonly step: number,
    /** What diverged: `inner gradient norm`, `hypergradient norm`, `outer loss` or `outer loss at the final x`. */
    readonly quantity: string,
    /** The offending value (NaN, ±Infinity, or a finite value past `bound`). */
    readonly value: number,
    /** The bound a finite value exceeded (the trainer's `divergenceBound`), when that is why. */
    readonly bound?: number,
  ) {
    super(
      bound !== undefined && Number.isFinite(value)
        ? `${quantity} reached ${value.toPrecision(3)} at outer step ${step}, past the divergence bound ${bound} (trainer.divergenceBound)`
        : `${quantity} became ${value} at outer step ${step}`,
    );
    this.name = 'DivergenceError';
  }
}
