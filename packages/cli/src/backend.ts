/**
 * The tfjs backend for a run and for `bilevel list`, through @bilevel/backend.
 */
import * as tf from '@tensorflow/tfjs-core';
import {
  BACKEND_CHOICES,
  type BackendChoice,
  initBackend as startBackend,
  listBackends as backendStatuses,
} from '@bilevel/backend';
import { ConfigError } from '@bilevel/core';

export { BACKEND_CHOICES };

/** One backend as `bilevel list` shows it. */
export interface BackendInfo {
  /** Backend name. */
  readonly name: string;
  /** Whether it can run here. */
  readonly available: boolean;
  /** Whether it is the current backend. */
  readonly active: boolean;
  /** What it is, or why it cannot run and how to install it. */
  readonly detail: string;
}

/** Every backend the library knows, with whether it can run here (nothing is started). */
export function listBackends(): BackendInfo[] {
  return backendStatuses().map((s) => ({ name: s.name, available: s.available, active: s.active, detail: s.reason }));
}

/** The running backend and why it was chosen. */
export interface RunningBackend {
  /** Name of the running backend. */
  readonly name: string;
  /** The one-line reason `initBackend` gave. */
  readonly reason: string;
}

/**
 * Starts the backend `choice` (`auto` or absent: the fastest available, or the one named by the
 * BILEVEL_BACKEND environment variable) and returns which one runs and why. Asking for one that cannot
 * run is a {@link ConfigError} (`backend`) whose message says how to install it.
 */
export async function initBackend(choice: string | undefined, log: (line: string) => void): Promise<RunningBackend> {
  if (choice !== undefined && !(BACKEND_CHOICES as readonly string[]).includes(choice)) {
    throw new ConfigError(
      `backend: must be one of ${BACKEND_CHOICES.map((c) => `'${c}'`).join(', ')} (got '${choice}')`,
      'backend',
    );
  }
  try {
    const selection = await startBackend({ backend: choice as BackendChoice | undefined, log });
    return { name: selection.name, reason: selection.reason };
  } catch (e) {
    if (e instanceof ConfigError) throw e;
    throw new ConfigError(`backend: ${(e as Error).message}`, 'backend');
  }
}

/** The backend running now (without starting one). */
export function currentBackend(): RunningBackend {
  return { name: tf.getBackend(), reason: 'already running' };
}
