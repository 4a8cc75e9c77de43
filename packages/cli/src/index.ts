/**
 * `@bilevel/cli` — the `bilevel` command as a library: experiment configs, runs with progress and result
 * files, summaries, plots (an SVG writer and a PNG rasterizer of the same chart), comparisons.
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
export * from './line-chart';
export { renderSvg, escapeXml } from './render-svg';
export { renderPng, rasterizeChart, Raster, parseColor, fontScale } from './render-png';
export * from './bitmap-font';
export * from './compare';
export * from './list';
export * from './backend';
export * from './plugins';
export * from './format';
export { runCli, describeError, type CliIo } from './cli';
