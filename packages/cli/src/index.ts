/**
 * `@bilevel/cli` — the `bilevel` command as a library: experiment configs, runs with progress and result
 * files, summaries, plots (Vega-Lite specs rendered to SVG by vega and to PNG by resvg), report.html, comparisons.
 *
 * @module @bilevel/cli
 */
export * from './config';
export * from './slow-backend';
export * from './run-experiment';
export * from './run-recorder';
export * from './results-folder';
export * from './summary';
export * from './progress';
export * from './plots';
export * from './charts';
export * from './report';
export * from './compare';
export * from './list';
export * from './backend';
export * from './plugins';
export * from './format';
export { runCli, describeError, type CliIo } from './cli';
