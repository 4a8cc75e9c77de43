/**
 * The `sweep:` grid of an experiment config: every method is run at every point of a grid over its settings,
 * e.g.
 *
 *     sweep:
 *       outerOptimizer.options.learningRate: [0.1, 0.3]
 *       estimator: [cg, { name: neumann, options: { terms: 10 } }]
 *
 * gives each method 2 × 2 = 4 variants labelled `<label> · learningRate=0.1 · estimator=cg` and so on. The
 * grid is expanded into methods before the config is validated, so every point is checked with the same
 * schemas as a method written out by hand.
 */
import { ConfigError } from '@bilevel/core';

/** The parts of a method a sweep may vary (the first segment of a sweep key). */
export const SWEEP_TARGETS = ['innerSolver', 'estimator', 'outerOptimizer', 'trainer', 'oracles'] as const;
const PLUGIN_TARGETS = new Set(['innerSolver', 'estimator', 'outerOptimizer']);

/** At most this many grid points per method. */
export const MAX_SWEEP_POINTS = 1000;

/** Where an expanded method came from. */
export interface SweepOrigin {
  /** Index of the method in the config as written. */
  readonly method: number;
  /** The grid point, as shown in the label (`learningRate=0.1 · estimator=cg`). */
  readonly point: string;
}

/** A config with its sweep expanded into methods, and the origin of each expanded method. */
export interface SweepExpansion {
  /** The config without `sweep:`, its methods expanded (the input itself when there is no sweep). */
  readonly input: Record<string, unknown>;
  /** For each expanded method's index, where it came from (empty without a sweep). */
  readonly origins: ReadonlyMap<number, SweepOrigin>;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function shown(v: unknown): string {
  if (typeof v === 'string') return v;
  if (isRecord(v) && typeof v.name === 'string') return v.name;
  return JSON.stringify(v);
}

/** Checks one sweep key and returns its path segments. */
function sweepPath(key: string): string[] {
  const parts = key.split('.');
  const where = `sweep.${key}`;
  if (parts.some((p) => p === ''))
    throw new ConfigError(`${where}: a path of field names separated by dots is expected`, where);
  const [target] = parts;
  if (!(SWEEP_TARGETS as readonly string[]).includes(target)) {
    throw new ConfigError(
      `${where}: must start with one of ${SWEEP_TARGETS.join(', ')} (got '${target}')`,
      where,
    );
  }
  if (PLUGIN_TARGETS.has(target)) {
    if (parts.length === 2 && parts[1] !== 'name') {
      throw new ConfigError(
        `${where}: use ${target} (whole choices), ${target}.name or ${target}.options.<option>`,
        where,
      );
    }
    if (parts.length > 2 && parts[1] !== 'options') {
      throw new ConfigError(`${where}: use ${target}.options.<option> (got '${parts[1]}')`, where);
    }
  } else if (parts.length < 2) {
    throw new ConfigError(`${where}: name a field of ${target}, e.g. ${target}.steps`, where);
  }
  return parts;
}

function setPath(method: Record<string, unknown>, parts: readonly string[], value: unknown): void {
  const [target, ...rest] = parts;
  if (rest.length === 0) {
    method[target] = value;
    return;
  }
  let node = method[target];
  // A plugin chosen by name alone ('gd') gets the object form to hold options.
  if (typeof node === 'string') node = { name: node };
  // An outer optimizer left out is the config's default, gd.
  node ??= target === 'outerOptimizer' ? { name: 'gd' } : {};
  if (!isRecord(node))
    throw new ConfigError(
      `sweep: methods' ${target} must be a mapping to sweep ${parts.join('.')}`,
      `sweep.${parts.join('.')}`,
    );
  const copy: Record<string, unknown> = structuredClone(node);
  method[target] = copy;
  let cursor = copy;
  for (let i = 0; i < rest.length - 1; i++) {
    const next = cursor[rest[i]];
    const child: Record<string, unknown> = isRecord(next) ? next : {};
    cursor[rest[i]] = child;
    cursor = child;
  }
  cursor[rest[rest.length - 1]] = value;
}

/**
 * Expands a config's `sweep:` into methods (each method × each grid point, the first key varying slowest).
 * A malformed sweep is a {@link ConfigError} naming the key; a config without one is returned as it is.
 */
export function expandSweep(input: Record<string, unknown>): SweepExpansion {
  if (!('sweep' in input)) return { input, origins: new Map() };
  const { sweep, ...rest } = input;
  if (!isRecord(sweep) || Object.keys(sweep).length === 0) {
    throw new ConfigError(
      'sweep: must be a mapping of setting paths to lists of values, e.g. { outerOptimizer.options.learningRate: [0.1, 0.3] }',
      'sweep',
    );
  }
  const axes = Object.entries(sweep).map(([key, values]) => {
    const parts = sweepPath(key);
    if (!Array.isArray(values) || values.length === 0) {
      throw new ConfigError(`sweep.${key}: must be a non-empty list of values`, `sweep.${key}`);
    }
    const name =
      parts.length === 1 || parts[parts.length - 1] === 'name' ? parts[0] : parts[parts.length - 1];
    return { parts, values: values as unknown[], name };
  });
  const size = axes.reduce((n, a) => n * a.values.length, 1);
  if (size > MAX_SWEEP_POINTS)
    throw new ConfigError(`sweep: ${size} grid points; at most ${MAX_SWEEP_POINTS}`, 'sweep');
  if (!Array.isArray(rest.methods)) return { input: rest, origins: new Map() };
  const methods: unknown[] = [];
  const origins = new Map<number, SweepOrigin>();
  rest.methods.forEach((m, index) => {
    if (!isRecord(m)) {
      methods.push(m);
      return;
    }
    for (let k = 0; k < size; k++) {
      const method: Record<string, unknown> = structuredClone(m);
      const labels: string[] = [];
      let r = k;
      for (let a = axes.length - 1; a >= 0; a--) {
        const axis = axes[a];
        const value = axis.values[r % axis.values.length];
        r = Math.floor(r / axis.values.length);
        setPath(method, axis.parts, structuredClone(value));
        labels.unshift(`${axis.name}=${shown(value)}`);
      }
      const point = labels.join(' · ');
      if (typeof method.label === 'string') method.label = `${method.label} · ${point}`;
      // The variants of one method get palette colours of their own.
      delete method.color;
      origins.set(methods.length, { method: index, point });
      methods.push(method);
    }
  });
  return { input: { ...rest, methods }, origins };
}

/** A config error about an expanded method, restated in terms of the config as written (method and grid point). */
export function sweepError(e: ConfigError, expansion: SweepExpansion): ConfigError {
  const m = /^methods\.(\d+)(?=\.|$)/.exec(e.path);
  const origin = m ? expansion.origins.get(Number(m[1])) : undefined;
  if (!m || !origin) return e;
  const path = e.path.replace(/^methods\.\d+/, `methods.${origin.method}`);
  const message = e.message.replace(new RegExp(`^methods\\.${m[1]}(?=\\.|:)`), `methods.${origin.method}`);
  return new ConfigError(`${message} (at sweep point ${origin.point})`, path);
}
