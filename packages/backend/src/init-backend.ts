import * as fs from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, parseOptions } from '@bilevel/core';
import { BLAS_BACKEND_NAME, blasInfo, registerBlasBackend, setBlasThreads } from '@bilevel/tfjs-blas';
import {
  BACKEND_CHOICES,
  BACKEND_ENV_VAR,
  BACKEND_NAMES,
  BackendOptionsSchema,
  type BackendChoice,
  type BackendName,
} from './backend-options';
import { errorMessage, isModuleNotFound, optionalModules } from './optional-modules';
import { registerWasmFallbackKernels } from './wasm-fallback-kernels';

/** The tfjs-node packages that provide the `tensorflow` backend, in the order they are tried. */
export const TFJS_NODE_PACKAGES = ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node'] as const;

/** How to get each backend when it is missing. */
export const INSTALL_HINTS: Record<BackendName, string> = {
  tensorflow:
    'install @tensorflow/tfjs-node (CPU) or @tensorflow/tfjs-node-gpu (CUDA GPU) next to bilevel: ' +
    '`npm install @tensorflow/tfjs-node` (it downloads libtensorflow from storage.googleapis.com at install time)',
  'cpu-blas':
    'install a CBLAS (Debian/Ubuntu: `sudo apt-get install libopenblas-dev`; macOS: Accelerate, built in) with ' +
    'python3, make and a C compiler, then run `npm rebuild @bilevel/tfjs-blas`',
  wasm: 'reinstall @tensorflow/tfjs-backend-wasm (`npm install @tensorflow/tfjs-backend-wasm`)',
  cpu: 'reinstall @tensorflow/tfjs-backend-cpu (`npm install @tensorflow/tfjs-backend-cpu`)',
};

/** Asking for a backend that is not installed or does not start; the message says how to install it. */
export class BackendUnavailableError extends ConfigError {
  constructor(
    /** The backend asked for. */
    readonly backend: BackendName,
    /** Why it is unavailable (e.g. `tfjs-node not installed`). */
    readonly reason: string,
  ) {
    super(
      `backend '${backend}' is not available: ${reason}; to use it, ${INSTALL_HINTS[backend]}`,
      'backend',
    );
    this.name = 'BackendUnavailableError';
  }
}

/** Options of {@link initBackend}. */
export interface InitBackendOptions {
  /** Which backend; `auto` (default) picks the fastest available, unless BILEVEL_BACKEND names one. */
  backend?: BackendChoice;
  /** Receives the one line that says which backend runs and why; default: standard error. */
  log?: (line: string) => void;
  /** Threads of the native BLAS (cpu-blas). */
  threads?: number;
}

/** The backend that runs, and why. */
export interface BackendSelection {
  /** The backend that runs. */
  readonly name: BackendName;
  /** What runs and why the faster ones were passed over, e.g. `OpenBLAS 0.3.21 (Haswell), 2 threads; ...`. */
  readonly reason: string;
  /** What runs, e.g. `OpenBLAS 0.3.21 (Haswell), 2 threads`. */
  readonly detail: string;
  /** Who chose: `auto`, the `backend` option, or the environment variable. */
  readonly chosenBy: 'auto' | 'option' | 'environment';
  /** The faster backends that `auto` passed over, each with why. */
  readonly skipped: readonly {
    /** A faster backend that was passed over. */
    readonly name: BackendName;
    /** Why it could not run. */
    readonly reason: string;
  }[];
}

/** Whether a backend can run here, and why (for `bilevel list`). */
export interface BackendStatus {
  /** The backend's name. */
  readonly name: BackendName;
  /** Whether it can start here. */
  readonly available: boolean;
  /** What it is when available, otherwise why not and how to install it. */
  readonly reason: string;
  /** Whether it is the current tfjs backend. */
  readonly active: boolean;
}

type StartResult = { ok: true; detail: string } | { ok: false; reason: string };

function threadsText(n: number): string {
  return `${n} thread${n === 1 ? '' : 's'}`;
}

async function activate(name: string): Promise<boolean> {
  try {
    return await tf.setBackend(name);
  } catch {
    return false;
  }
}

async function startTensorflow(): Promise<StartResult> {
  for (const pkg of TFJS_NODE_PACKAGES) {
    try {
      optionalModules.load(pkg);
    } catch (e) {
      if (isModuleNotFound(e, pkg)) continue;
      return { ok: false, reason: `${pkg} is installed but failed to load (${errorMessage(e)})` };
    }
    if (!tf.findBackendFactory('tensorflow')) {
      return {
        ok: false,
        reason: `${pkg} loaded but registered no 'tensorflow' backend (does its @tensorflow/tfjs-core version match 4.x?)`,
      };
    }
    if (!(await activate('tensorflow')))
      return { ok: false, reason: `${pkg} loaded but its backend failed to start` };
    return { ok: true, detail: `${pkg}, native TensorFlow` };
  }
  return { ok: false, reason: 'tfjs-node not installed' };
}

async function startCpuBlas(threads: number | undefined): Promise<StartResult> {
  if (!registerBlasBackend()) return { ok: false, reason: blasInfo().reason };
  if (threads !== undefined) setBlasThreads(threads);
  if (!(await activate(BLAS_BACKEND_NAME)))
    return { ok: false, reason: 'the cpu-blas backend failed to start' };
  return { ok: true, detail: blasInfo().summary };
}

async function startWasm(): Promise<StartResult> {
  let wasm: typeof import('@tensorflow/tfjs-backend-wasm');
  try {
    wasm = await import('@tensorflow/tfjs-backend-wasm');
  } catch (e) {
    return { ok: false, reason: `@tensorflow/tfjs-backend-wasm failed to load (${errorMessage(e)})` };
  }
  const bridged = registerWasmFallbackKernels();
  if (!(await activate('wasm'))) return { ok: false, reason: 'the WebAssembly module failed to start' };
  const simd = await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT');
  const threads = wasm.getThreadsCount();
  const missing = bridged.length > 0 || tf.getKernel('Conv2DBackpropFilter', 'wasm') !== undefined;
  return {
    ok: true,
    detail:
      `WebAssembly${simd ? ' SIMD' : ''} (XNNPACK), ${threadsText(threads)}` +
      (missing
        ? '; kernels it lacks filled in (Conv2DBackpropFilter as a wasm convolution, others in JS)'
        : ''),
  };
}

async function startCpu(): Promise<StartResult> {
  await import('@tensorflow/tfjs-backend-cpu');
  if (!(await activate('cpu'))) return { ok: false, reason: 'the JS cpu backend failed to start' };
  return { ok: true, detail: 'pure JavaScript, slow' };
}

function start(name: BackendName, threads: number | undefined): Promise<StartResult> {
  switch (name) {
    case 'tensorflow':
      return startTensorflow();
    case 'cpu-blas':
      return startCpuBlas(threads);
    case 'wasm':
      return startWasm();
    case 'cpu':
      return startCpu();
  }
}

/** The explicit choice from the option or from BILEVEL_BACKEND, validated. */
function resolveChoice(option: BackendChoice): {
  choice: BackendChoice;
  chosenBy: BackendSelection['chosenBy'];
} {
  if (option !== 'auto') return { choice: option, chosenBy: 'option' };
  const env = process.env[BACKEND_ENV_VAR]?.trim();
  if (!env) return { choice: 'auto', chosenBy: 'auto' };
  if (!(BACKEND_CHOICES as readonly string[]).includes(env)) {
    throw new ConfigError(
      `${BACKEND_ENV_VAR}: must be one of ${BACKEND_CHOICES.map((c) => `'${c}'`).join(', ')} (got "${env}")`,
      BACKEND_ENV_VAR,
    );
  }
  return env === 'auto'
    ? { choice: 'auto', chosenBy: 'auto' }
    : { choice: env as BackendChoice, chosenBy: 'environment' };
}

/**
 * Picks and starts the TensorFlow.js backend, and logs one line that says which one runs and why.
 *
 * - `auto` (default) tries, fastest first: `tensorflow` (@tensorflow/tfjs-node-gpu or @tensorflow/tfjs-node
 *   when installed), `cpu-blas` (@bilevel/tfjs-blas when its native addon is built), `wasm` (with the kernels
 *   it lacks bridged to JS), then `cpu`.
 * - The `backend` option, or else the environment variable BILEVEL_BACKEND, names one explicitly; if it is
 *   not available this throws a {@link BackendUnavailableError} that says how to install it.
 * - A bad option or BILEVEL_BACKEND value throws a `ConfigError` naming the field and the allowed values.
 */
export async function initBackend(options: InitBackendOptions = {}): Promise<BackendSelection> {
  const { log = (line: string) => process.stderr.write(`${line}\n`), ...rest } = options;
  const parsed = parseOptions(BackendOptionsSchema, rest, '');
  const { choice, chosenBy } = resolveChoice(parsed.backend);
  const skipped: { name: BackendName; reason: string }[] = [];
  let selection: BackendSelection | undefined;
  if (choice === 'auto') {
    for (const name of BACKEND_NAMES) {
      const result = await start(name, parsed.threads);
      if (!result.ok) {
        skipped.push({ name, reason: result.reason });
        continue;
      }
      const passedOver = skipped.map((s) => `${s.name}: ${s.reason}`);
      selection = {
        name,
        detail: result.detail,
        reason: [result.detail, ...passedOver].join('; '),
        chosenBy,
        skipped,
      };
      break;
    }
    if (!selection) {
      throw new Error(
        `no tfjs backend could start: ${skipped.map((s) => `${s.name}: ${s.reason}`).join('; ')}`,
      );
    }
  } else {
    const name = choice as BackendName;
    const result = await start(name, parsed.threads);
    if (!result.ok) throw new BackendUnavailableError(name, result.reason);
    const by =
      chosenBy === 'environment' ? `chosen by ${BACKEND_ENV_VAR}=${name}` : 'chosen by the backend option';
    selection = { name, detail: result.detail, reason: `${result.detail}; ${by}`, chosenBy, skipped };
  }
  const line = `bilevel: backend ${selection.name} (${selection.detail})` + reasonTail(selection);
  log(line);
  if (parsed.threads !== undefined && selection.name !== 'cpu-blas') {
    log(`bilevel: the threads option applies to cpu-blas only; ${selection.name} ignores it`);
  }
  return selection;
}

function reasonTail(s: BackendSelection): string {
  if (s.chosenBy === 'option') return '; chosen by the backend option';
  if (s.chosenBy === 'environment') return `; chosen by ${BACKEND_ENV_VAR}=${s.name}`;
  return s.skipped.length ? `; ${s.skipped.map((k) => `${k.name}: ${k.reason}`).join('; ')}` : '';
}

function wasmFilesPresent(): string | null {
  const main = optionalModules.resolve('@tensorflow/tfjs-backend-wasm');
  if (!main) return null;
  const dir = path.dirname(main);
  return fs.readdirSync(dir).some((f) => f.endsWith('.wasm')) ? dir : null;
}

/**
 * Whether each backend can run here, with the reason, without starting any of them (the `tensorflow` entry
 * only checks that the package is installed; loading it may still fail).
 */
export function listBackends(): BackendStatus[] {
  const active = tf.engine().backendName;
  return BACKEND_NAMES.map((name): BackendStatus => {
    let available = false;
    let reason = '';
    switch (name) {
      case 'tensorflow': {
        const pkg = TFJS_NODE_PACKAGES.find((p) => optionalModules.resolve(p) !== null);
        available = pkg !== undefined;
        reason = pkg ? `${pkg} installed` : 'tfjs-node not installed';
        break;
      }
      case 'cpu-blas': {
        const info = blasInfo();
        available = info.available;
        reason = info.available ? info.summary : info.reason;
        break;
      }
      case 'wasm': {
        available = wasmFilesPresent() !== null;
        reason = available
          ? 'WebAssembly (XNNPACK), single-threaded in Node'
          : '@tensorflow/tfjs-backend-wasm or its .wasm files missing';
        break;
      }
      case 'cpu':
        available = true;
        reason = 'pure JavaScript, slow';
        break;
    }
    return {
      name,
      available,
      reason: available ? reason : `${reason}; to enable it, ${INSTALL_HINTS[name]}`,
      active: active === name,
    };
  });
}
