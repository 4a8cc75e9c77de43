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

/** A non-finite or diverging quantity, with the outer step where it was seen. */
export class DivergenceError extends Error {
  constructor(
    /** The outer step at which the quantity turned non-finite. */
    readonly step: number,
    /** What diverged: `inner gradient norm`, `hypergradient norm` or `outer loss`. */
    readonly quantity: string,
    /** The offending value (NaN or ±Infinity). */
    readonly value: number,
  ) {
    super(`${quantity} became ${value} at outer step ${step}`);
    this.name = 'DivergenceError';
  }
}
