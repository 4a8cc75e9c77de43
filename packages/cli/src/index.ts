/**
 * `@bilevel/cli` — the `bilevel` command as a library: experiment configs, runs with progress and result
 * files, summaries, plots (Vega-Lite specs rendered to SVG by vega and to PNG by resvg), report.html, comparisons.
 *
 * @module @bilevel/cli
 */
export {
  readConfigFile,
  applyOverrides,
  planExperiment,
  loadResumePlan,
  loadExperiment,
  TrainerOverridesSchema,
  OracleOverridesSchema,
  MethodSchema,
  type MethodConfig,
  OutputSchema,
  ProgressSchema,
  CheckpointSchema,
  ExperimentConfigSchema,
  type ExperimentConfigInput,
  type ExperimentConfig,
  type ConfigOverrides,
  type ResolvedMethod,
  type ExperimentPlan,
} from './config';
export { SlowBackendSchema, type SlowBackendSettings, type SizedConfig } from './slow-backend';
export {
  runExperiment,
  EXIT,
  type RunExperimentOptions,
  type ExperimentResult,
  type RunTask,
  type RunContext,
  type RunOutcome,
  type RunExecutor,
  type RunFiles,
} from './run-experiment';
export { readRunRows, type MetricsRow } from './run-recorder';
export { StorageError, ResultsLockedError } from './results-folder';
export {
  summarizeMethod,
  type RunStatus,
  type ExperimentStatus,
  type RunSummary,
  type Stat,
  type MethodSummary,
  type ExperimentSummary,
} from './summary';
// ./progress: nothing public
export { wantsLogScale, writePlots, type PlotRun, type PlotOptions } from './plots';
export {
  lineChartSpec,
  chartSvg,
  svgToPng,
  writeChart,
  type AxisScale,
  type ChartSeries,
  type LineChartOptions,
  type PngOptions,
  type WriteChartOptions,
} from './charts';
export { reportHtml, writeFiguresAndReport, reportFromFolder, REPORT_FILE, type ReportInput } from './report';
export { compareTable } from './compare';
// ./list: nothing public
export {
  listBackends,
  initBackend,
  currentBackend,
  BACKEND_CHOICES,
  type BackendInfo,
  type RunningBackend,
} from './backend';
export { loadPluginModules } from './plugins';
export { formatNumber, formatDuration, markdownTable, slug } from './format';
export { runCli, describeError, type CliIo } from './cli';
