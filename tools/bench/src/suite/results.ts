import type { OracleCounts } from '@bilevel/core';
import type { MemoryReport } from './memory';
import type { LibsvmFiles, SectionId, StepChoice } from './settings';

/** The outer loss at iterate x_j, f(x_j, y_N(x_j)), reached after t_j seconds of training. */
export interface CurvePoint {
  /** j: outer updates before this iterate. */
  readonly iterate: number;
  /** Training seconds when x_j was available (evaluations excluded). */
  readonly time: number;
  readonly outerLoss: number;
  /** Cosine between the estimate at x_j and the closed-form ∇Φ(x_j) (problems with a closed form). */
  readonly hypergradientCosine?: number;
  /** Cumulative oracle calls (all kinds) after the step from x_j. */
  readonly oracleCalls: number;
}

/** The problem's metrics at x_j after an uncharged inner solve there. */
export interface EvalPoint {
  readonly iterate: number;
  readonly time: number;
  readonly outerLoss: number;
  readonly metrics: Record<string, number>;
}

/** `diverged`: the trainer or the inner solver met a NaN/Inf (a result, not a fault of the suite). */
export type RunStatus = 'completed' | 'diverged' | 'failed' | 'timeout' | 'skipped';

/** What a worker reports for one method of one section. */
export interface RunResult {
  readonly section: SectionId;
  readonly key: string;
  readonly label: string;
  readonly protocol?: string;
  readonly status: RunStatus;
  /** Why it failed or was skipped. */
  readonly error?: string;
  readonly stoppedBy?: string;
  /** Outer steps done. */
  readonly steps: number;
  /** Training seconds (core trainer's elapsed time: inner solves, estimates and updates). */
  readonly trainSeconds: number;
  /** Wall seconds of the worker from start to report, evaluations and set-up included. */
  readonly wallSeconds: number;
  /** Seconds to build the problem (data loading included). */
  readonly setupSeconds: number;
  readonly curve: readonly CurvePoint[];
  readonly evals: readonly EvalPoint[];
  readonly oracleCalls?: Readonly<OracleCounts>;
  readonly memory?: MemoryReport;
  readonly backend?: { readonly name: string; readonly reason: string };
  /** The step sizes a tuned run used (benchopt section). */
  readonly stepSizes?: StepChoice;
}

/** A task for a worker process. */
export interface WorkerTask {
  readonly kind: 'bench-task';
  readonly quick: boolean;
  readonly section: SectionId;
  readonly key: string;
  readonly backend: string;
  /** The step sizes a tuned method runs with (chosen by the section's grid). */
  readonly stepSizes?: StepChoice;
  /** The LIBSVM files of the benchopt-ho section (the settings are rebuilt from them in the worker). */
  readonly libsvm?: LibsvmFiles;
}

export function isWorkerTask(m: unknown): m is WorkerTask {
  return typeof m === 'object' && m !== null && (m as { kind?: unknown }).kind === 'bench-task';
}
