import { z } from '@bilevel/core';

/** The tfjs backends this library can start, fastest first (the order `auto` tries them in). */
export const BACKEND_NAMES = ['tensorflow', 'cpu-blas', 'wasm', 'cpu'] as const;
/** A backend name: `tensorflow`, `cpu-blas`, `wasm` or `cpu`. */
export type BackendName = (typeof BACKEND_NAMES)[number];

/** A backend name, or `auto` for the fastest one available. */
export const BACKEND_CHOICES = ['auto', ...BACKEND_NAMES] as const;
/** A backend name, or `auto`. */
export type BackendChoice = (typeof BACKEND_CHOICES)[number];

/** Environment variable that chooses the backend when the `backend` option is not given (or is `auto`). */
export const BACKEND_ENV_VAR = 'BILEVEL_BACKEND';

/** The `backend` option: a backend name or `auto`. */
export const BackendChoiceSchema = z
  .enum(BACKEND_CHOICES)
  .describe(
    "tfjs backend: 'auto' picks the fastest available (tensorflow, then cpu-blas, then wasm, then cpu); " +
      `the environment variable ${BACKEND_ENV_VAR} chooses when this is 'auto'`,
  );

/** Options of {@link initBackend} (besides the `log` callback). */
export const BackendOptionsSchema = z
  .object({
    /** Which backend: `auto` (default) picks the fastest available, unless BILEVEL_BACKEND names one. */
    backend: BackendChoiceSchema.default('auto'),
    threads: z
      .number()
      .int()
      .min(1)
      .max(1024)
      .optional()
      .describe('threads of the native BLAS (cpu-blas); by default every processor, or OPENBLAS_NUM_THREADS'),
  })
  .strict();
/** Options of {@link initBackend} as given (every field optional). */
export type BackendOptions = z.input<typeof BackendOptionsSchema>;
