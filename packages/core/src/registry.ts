import 'reflect-metadata';
import * as path from 'path';
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
  /** Bilevel problems. */
  problem: BilevelProblem;
  /** Inner solvers. */
  innerSolver: InnerSolver;
  /** Hypergradient estimators. */
  estimator: HypergradientEstimator;
  /** Outer optimizers. */
  outerOptimizer: OuterOptimizer;
  /** Data sets (`@bilevel/datasets` registers loaders; their shape is up to the plugin). */
  dataset: unknown;
  /** Backbones of the few-shot problem (`@bilevel/meta-learning`). */
  backbone: unknown;
}
/** A plugin kind: `problem`, `innerSolver`, `estimator`, `outerOptimizer`, `dataset` or `backbone`. */
export type PluginKind = keyof PluginKinds;
/** Every plugin kind, in the order listings show them. */
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

/** Token under which {@link PluginRegistry.create} resolves a factory-made plugin in its child container. */
const PLUGIN_INSTANCE: InjectionToken<unknown> = Symbol.for('bilevel.pluginInstance');

/** A class whose constructor takes (at most) its validated options, injected as {@link PLUGIN_OPTIONS}. */
export type PluginClass<T> = new (...args: never[]) => T;

/** A registered plugin: its kind, name, option schema and how to create it. */
export interface PluginDefinition<K extends PluginKind = PluginKind, O = unknown> {
  /** The plugin kind. */
  readonly kind: K;
  /** The name the plugin is chosen by (kebab-case, unique within its kind). */
  readonly name: string;
  /** One line for listings (`bilevel list`). */
  readonly description: string;
  /** Schema of the options; `z.object({...}).strict()` so that unknown keys are refused. */
  readonly options: z.ZodType<O, z.ZodTypeDef, unknown>;
  /** Either a class resolved through tsyringe, or a factory. */
  readonly useClass?: PluginClass<PluginKinds[K]>;
  /** A factory, called with the validated options and the child container (instead of `useClass`). */
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

  constructor(
    /** The tsyringe container the plugins are registered in (child containers are opened from it). */
    readonly container: DependencyContainer = rootContainer,
  ) {}

  /**
   * Adds a plugin (replacing one of the same kind and name); throws unless it has `useClass` or `create` and
   * a kebab-case name.
   */
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

  /** Whether a plugin `name` of `kind` is registered. */
  has(kind: PluginKind, name: string): boolean {
    return this.defs.has(tokenFor(kind, name));
  }

  /** The registered names of a kind, sorted. */
  names(kind: PluginKind): string[] {
    return [...this.defs.values()]
      .filter((d) => d.kind === kind)
      .map((d) => d.name)
      .sort();
  }

  /**
   * The definition of a plugin; a {@link ConfigError} on the field `kind` listing the registered names when
   * it is unknown.
   */
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
  ): {
    /** The plugin kind. */
    kind: PluginKind;
    /** The plugin name. */
    name: string;
    /** Its one-line description. */
    description: string;
    /** The package that registered it, when known. */
    source?: string;
    /** Its options with types, defaults and descriptions. */
    options: OptionDoc[];
  }[] {
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

  /**
   * Creates the plugin `name` of `kind` with validated `options`; `provide` registers further values in the
   * plugin's own child container (e.g. `createPipeline`'s pipeline replica).
   */
  create<K extends PluginKind>(
    kind: K,
    name: string,
    options: unknown = {},
    path: string = kind,
    provide: readonly (readonly [InjectionToken<unknown>, unknown])[] = [],
  ): PluginKinds[K] {
    const def = this.get(kind, name) as unknown as PluginDefinition<K, unknown>;
    const parsed = parseOptions(def.options as z.ZodTypeAny, options, `${path}.options`);
    const child = this.container.createChildContainer();
    child.register(PLUGIN_OPTIONS, { useValue: parsed });
    for (const [token, value] of provide) child.register(token, { useValue: value });
    // Classes and factories alike are resolved by the container (a factory as its `useFactory`), with the
    // options validated once, here.
    if (def.create) {
      const create = def.create;
      child.register(PLUGIN_INSTANCE, { useFactory: (c) => create(parsed, c) });
      return child.resolve(PLUGIN_INSTANCE) as PluginKinds[K];
    }
    return child.resolve(def.useClass as unknown as InjectionToken<PluginKinds[K]>);
  }
}

/** The default registry, on tsyringe's root container. Built-in plugins register here when imported. */
export const registry = new PluginRegistry(rootContainer);

/** Where every loaded copy of this package records itself, shared by all copies through the global symbol. */
const LOADED_COPIES = Symbol.for('bilevel.core.loadedCopies');

/**
 * The folders of every copy of `@bilevel/core` loaded in this process (normally one). Each copy has its own
 * registry, tfjs engine references and error classes, so a plugin that brings a copy of its own registers
 * where the command cannot see it; a caller that loads plugins checks this and names both copies.
 */
export function loadedCoreCopies(): readonly string[] {
  return [...((globalThis as Record<symbol, string[] | undefined>)[LOADED_COPIES] ?? [])];
}

{
  const g = globalThis as Record<symbol, string[] | undefined>;
  const copies = (g[LOADED_COPIES] ??= []);
  // The package folder (this file is in src/ or dist/); a module registry reset reloading the same copy is no second copy.
  const here = path.resolve(__dirname, '..');
  if (!copies.includes(here)) copies.push(here);
}

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
/**
 * One-line registration of an inner solver: `registerInnerSolver(name, classOrFactory, optionsSchema?,
 * description?, registry?)`.
 */
export const registerInnerSolver = shorthand('innerSolver');
/**
 * One-line registration of a hypergradient estimator: `registerEstimator(name, classOrFactory,
 * optionsSchema?, description?, registry?)`.
 */
export const registerEstimator = shorthand('estimator');
/**
 * One-line registration of an outer optimizer: `registerOuterOptimizer(name, classOrFactory, optionsSchema?,
 * description?, registry?)`.
 */
export const registerOuterOptimizer = shorthand('outerOptimizer');
/**
 * One-line registration of a data set: `registerDataset(name, classOrFactory, optionsSchema?, description?,
 * registry?)`.
 */
export const registerDataset = shorthand('dataset');
/**
 * One-line registration of a backbone: `registerBackbone(name, classOrFactory, optionsSchema?, description?,
 * registry?)`.
 */
export const registerBackbone = shorthand('backbone');
