/** A configuration or option error; `path` names the offending field (e.g. `estimator.options.maxIterations`). */
export class ConfigError extends Error {
  constructor(
    message: string,
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
    readonly file: string = '',
  ) {
    super(message);
    this.name = 'DataError';
  }
}

/** A non-finite or diverging quantity, with the outer step where it was seen. */
export class DivergenceError extends Error {
  constructor(
    readonly step: number,
    readonly quantity: string,
    readonly value: number,
  ) {
    super(`${quantity} became ${value} at outer step ${step}`);
    this.name = 'DivergenceError';
  }
}
