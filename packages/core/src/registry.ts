import 'reflect-metadata';
import { container as rootContainer, type DependencyContainer, type InjectionToken } from 'tsyringe';
import { z } from 'zod';
import { ConfigError } from './errors';
import type { HypergradientEstimator } from './estimator';
import type { OuterOptimizer } from './optimizer';
import type { BilevelProblem } from './problem';
import type { InnerSolver } from './solver';
import { describeOptions, parseOptions, type OptionDoc } from './options';

/** The plugin kinds and the contract each one fulfils. */
export interface PluginKinds {
  problem: BilevelProblem;
  innerSolver: InnerSolver;
  estimator: HypergradientEstimator;
  outerOptimizer: OuterOptimizer;
  dataset: unknown;
  backbone: unknown;
}
export type PluginKind = keyof PluginKinds;
export const PLUGIN_KINDS: readonly PluginKind[] = [
  'problem',
  'innerSolver',
  'estimator',
  'outerOptimizer',
  'dataset',
  'backbone',
];

/** Injection token under which a plugin's validated options are given to its constructor. */
export const PLUGIN_OPTIONS: InjectionToken<unknown> = Symbol.for('bilevel.pluginOptions');

/** A class whose constructor takes (at most) its validated options, injected as {@link PLUGIN_OPTIONS}. */
export type PluginClass<T> = new (...args: never[]) => T;

export interface PluginDefinition<K extends PluginKind = PluginKind, O = unknown> {
  readonly kind: K;
  readonly name: string;
  readonly description: string;
  /** Schema of the options; `z.object({...}).strict()` so that unknown keys are refused. */
  readonly options: z.ZodType<O, z.ZodTypeDef, unknown>;
  /** Either a class resolved through tsyringe, or a factory. */
  readonly useClass?: PluginClass<PluginKinds[K]>;
  readonly create?: (options: O, container: DependencyContainer) => PluginKinds[K];
  /** Package that registered the plugin. */
  readonly source?: string;
}

const EMPTY = z.object({}).strict();

function tokenFor(kind: PluginKind, name: string): string {
  return `bilevel:${kind}:${name}`;
}

/**
 * Named registries of every plugin kind, kept in a tsyringe container: each plugin is registered under the
 * token `bilevel:<kind>:<name>`; {@link PluginRegistry.create} validates the options, opens a child
 * container holding them as {@link PLUGIN_OPTIONS} and resolves the plugin there, so plugin classes may also
 * inject anything else the application registered.
 */
export class PluginRegistry {
  private readonly defs = new Map<string, PluginDefinition>();

  constructor(readonly container: DependencyContainer = rootContainer) {}

  register<K extends PluginKind, O>(def: PluginDefinition<K, O>): void {
    if (!def.useClass && !def.create) {
      throw new Error(`plugin ${def.kind} '${def.name}' needs useClass or create`);
    }
    if (!/^[a-z0-9][a-z0-9-]*$/.test(def.name)) {
      throw new Error(`plugin name '${def.name}' must be kebab-case (a-z, 0-9, -)`);
    }
    const key = tokenFor(def.kind, def.name);
    this.defs.set(key, def as unknown as PluginDefinition);
    this.container.register(key, { useValue: def });
  }

  has(kind: PluginKind, name: string): boolean {
    return this.defs.has(tokenFor(kind, name));
  }

  names(kind: PluginKind): string[] {
    return [...this.defs.values()]
      .filter((d) => d.kind === kind)
      .map((d) => d.name)
      .sort();
  }

  get(kind: PluginKind, name: string): PluginDefinition {
    const def = this.defs.get(tokenFor(kind, name));
    if (!def) {
      const known = this.names(kind);
      throw new ConfigError(
        `unknown ${kind} '${name}'; registered: ${known.length ? known.join(', ') : '(none — is its package imported?)'}`,
        kind,
      );
    }
    return def;
  }

  /** Every registered plugin with its option documentation. */
  list(
    kind?: PluginKind,
  ): { kind: PluginKind; name: string; description: string; source?: string; options: OptionDoc[] }[] {
    return [...this.defs.values()]
      .filter((d) => !kind || d.kind === kind)
      .sort((a, b) => (a.kind === b.kind ? a.name.localeCompare(b.name) : a.kind.localeCompare(b.kind)))
      .map((d) => ({
        kind: d.kind,
        name: d.name,
        description: d.description,
        source: d.source,
        options: describeOptions(d.options as z.ZodTypeAny),
      }));
  }

  /** Validates options (throwing a {@link ConfigError} naming the field) without creating the plugin. */
  validate(kind: PluginKind, name: string, options: unknown, path: string = kind): unknown {
    const def = this.get(kind, name);
    return parseOptions(def.options as z.ZodTypeAny, options, `${path}.options`);
  }

  /** Creates the plugin `name` of `kind` with validated `options`. */
  create<K extends PluginKind>(
    kind: K,
    name: string,
    options: unknown = {},
    path: string = kind,
  ): PluginKinds[K] {
    const def = this.get(kind, name) as unknown as PluginDefinition<K, unknown>;
    const parsed = parseOptions(def.options as z.ZodTypeAny, options, `${path}.options`);
    const child = this.container.createChildContainer();
    child.register(PLUGIN_OPTIONS, { useValue: parsed });
    if (def.create) return def.create(parsed, child);
    return child.resolve(def.useClass as unknown as InjectionToken<PluginKinds[K]>);
  }
}

/** The default registry, on tsyringe's root container. Built-in plugins register here when imported. */
export const registry = new PluginRegistry(rootContainer);

type Schema<O> = z.ZodType<O, z.ZodTypeDef, unknown>;

function shorthand<K extends PluginKind>(kind: K) {
  return <O>(
    name: string,
    impl: PluginClass<PluginKinds[K]> | ((options: O, container: DependencyContainer) => PluginKinds[K]),
    options?: Schema<O>,
    description = '',
    target: PluginRegistry = registry,
  ): void => {
    const isClass = typeof impl === 'function' && /^class[\s{]/.test(Function.prototype.toString.call(impl));
    target.register<K, O>({
      kind,
      name,
      description,
      options: (options ?? EMPTY) as Schema<O>,
      ...(isClass
        ? { useClass: impl as PluginClass<PluginKinds[K]> }
        : { create: impl as (options: O, container: DependencyContainer) => PluginKinds[K] }),
    });
  };
}

/** One-line registrations: `registerEstimator('mine', MyEstimator, MyOptionsSchema)`. */
export const registerProblem = shorthand('problem');
export const registerInnerSolver = shorthand('innerSolver');
export const registerEstimator = shorthand('estimator');
export const registerOuterOptimizer = shorthand('outerOptimizer');
export const registerDataset = shorthand('dataset');
export const registerBackbone = shorthand('backbone');
