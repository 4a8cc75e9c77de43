/**
 * Smaller settings for the backends without native kernels: an experiment sized for `cpu-blas` or `tensorflow`
 * (e.g. the papers' size of data hyper-cleaning) can take half an hour on `wasm` or `cpu`. A config may say what
 * to run there instead (`slowBackend`); the command prints one line saying so and why.
 */
import { TrainerOptionsSchema, z } from '@bilevel/core';

/** The backends with no native kernels, on which `slowBackend` applies. */
export const SLOW_BACKENDS: readonly string[] = ['wasm', 'cpu'];

/** `slowBackend`: settings that replace the config's when the running backend is `wasm` or `cpu`. */
export const SlowBackendSchema = z
  .object({
    reason: z.string().min(1).describe('why the smaller settings (printed when they are used)'),
    problem: z
      .record(z.unknown())
      .default({})
      .describe("problem options that replace the config's (e.g. smaller data sizes)"),
    trainer: TrainerOptionsSchema.partial()
      .default({})
      .describe("trainer settings that replace the config's, for every method (a method's own value included)"),
  })
  .strict();
/** Validated `slowBackend` settings. */
export type SlowBackendSettings = z.output<typeof SlowBackendSchema>;

/** The parts of an experiment config that `slowBackend` reads and changes. */
export interface SizedConfig {
  /** The smaller settings, if any. */
  slowBackend?: SlowBackendSettings;
  /** The problem and its options. */
  problem: {
    /** The problem's registered name. */
    name: string;
    /** Its options. */
    options: Record<string, unknown>;
  };
  /** Trainer settings for every method. */
  trainer: Record<string, unknown>;
  /** The methods, with their own trainer settings. */
  methods: readonly {
    /** The method's own trainer settings. */
    trainer?: Record<string, unknown>;
  }[];
}

const describe = (values: Record<string, unknown>): string =>
  Object.entries(values)
    .map(([k, v]) => `${k} ${typeof v === 'number' ? v.toLocaleString('en-US') : JSON.stringify(v)}`)
    .join(', ');

/**
 * The config to run on `backend`. With `slowBackend` set and `backend` one of {@link SLOW_BACKENDS}: the problem
 * options and trainer settings replaced (every method's own value of a replaced trainer field dropped), `resized`
 * true and the line to print. The returned config never has `slowBackend` any more, so that the results folder
 * records what ran and `bilevel resume` continues it at the same size whatever its backend. Validate the result
 * again (planExperiment) when `resized`.
 */
export function sizeForBackend<C extends SizedConfig>(
  config: C,
  backend: string,
): {
  /** The config to run. */
  config: C;
  /** Whether the slowBackend settings were applied. */
  resized: boolean;
  /** The line to print when they were. */
  note?: string;
} {
  const { slowBackend, ...rest } = config;
  if (!slowBackend) return { config, resized: false };
  if (!SLOW_BACKENDS.includes(backend)) return { config: rest as C, resized: false };
  const trainerKeys = Object.keys(slowBackend.trainer);
  const resized = {
    ...rest,
    problem: { ...rest.problem, options: { ...rest.problem.options, ...slowBackend.problem } },
    trainer: { ...rest.trainer, ...slowBackend.trainer },
    methods: rest.methods.map((m) => {
      if (!m.trainer) return m;
      const own = { ...m.trainer };
      for (const k of trainerKeys) delete own[k];
      return { ...m, trainer: own };
    }),
  } as unknown as C;
  const parts = [
    Object.keys(slowBackend.problem).length ? `problem ${describe(slowBackend.problem)}` : '',
    trainerKeys.length ? `trainer ${describe(slowBackend.trainer)}` : '',
  ].filter(Boolean);
  return {
    config: resized,
    resized: true,
    note: `backend ${backend} has no native kernels, so the config's smaller slowBackend settings run (${parts.join('; ')}): ${slowBackend.reason}`,
  };
}
