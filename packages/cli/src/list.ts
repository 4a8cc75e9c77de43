import { registry as defaultRegistry, type PluginKind, type PluginRegistry, PLUGIN_KINDS } from '@bilevel/core';
import { METHOD_RECIPES } from '@bilevel/estimators';
import type { BackendInfo } from './backend';

const TITLES: Record<PluginKind, string> = {
  problem: 'Problems',
  innerSolver: 'Inner solvers',
  estimator: 'Hypergradient estimators',
  outerOptimizer: 'Outer optimizers',
  dataset: 'Datasets',
  backbone: 'Backbones',
};

/** Names accepted by `bilevel list <what>`. */
export const LIST_TOPICS: Record<string, PluginKind | 'backend' | 'methods'> = {
  method: 'methods',
  methods: 'methods',
  recipes: 'methods',
  problem: 'problem',
  problems: 'problem',
  solver: 'innerSolver',
  solvers: 'innerSolver',
  innersolver: 'innerSolver',
  estimator: 'estimator',
  estimators: 'estimator',
  optimizer: 'outerOptimizer',
  optimizers: 'outerOptimizer',
  outeroptimizer: 'outerOptimizer',
  dataset: 'dataset',
  datasets: 'dataset',
  backbone: 'backbone',
  backbones: 'backbone',
  backend: 'backend',
  backends: 'backend',
};

function showDefault(v: unknown): string {
  if (v === undefined) return '';
  if (typeof v === 'string') return `'${v}'`;
  try {
    return JSON.stringify(v);
  } catch {
    return String(v);
  }
}

/** The field's methods as plugin combinations ({@link METHOD_RECIPES}), as plain text lines. */
export function methodRecipesText(): string {
  const out = ['Methods as plugin combinations (copy into a config\'s methods entry)'];
  const show = (r: { name: string; options: Record<string, unknown> } | null): string =>
    r ? `${r.name} ${JSON.stringify(r.options)}` : '(none: the estimator moves y)';
  for (const r of METHOD_RECIPES) {
    out.push(`  ${r.name} — ${r.method}`);
    out.push(`      innerSolver     ${show(r.innerSolver)}`);
    out.push(`      estimator       ${show(r.estimator)}`);
    out.push(`      outerOptimizer  ${show(r.outerOptimizer)}`);
    out.push(`      ${r.note}`);
  }
  out.push('');
  return out.join('\n');
}

/** Every registered plugin (or those of one kind) with option docs, and the backends, as plain text. */
export function listText(
  backends: readonly BackendInfo[] | null,
  options: { kind?: PluginKind; registry?: PluginRegistry; backendsOnly?: boolean; methodsOnly?: boolean } = {},
): string {
  if (options.methodsOnly) return methodRecipesText();
  const reg = options.registry ?? defaultRegistry;
  const out: string[] = [];
  const kinds = options.backendsOnly ? [] : options.kind ? [options.kind] : PLUGIN_KINDS;
  for (const kind of kinds) {
    const plugins = reg.list(kind);
    if (plugins.length === 0 && (kind === 'dataset' || kind === 'backbone') && !options.kind) continue;
    out.push(`${TITLES[kind]} (${kind})`);
    if (plugins.length === 0) out.push('  (none registered)');
    for (const p of plugins) {
      out.push(`  ${p.name}${p.description ? ` — ${p.description}` : ''}${p.source ? `  [${p.source}]` : ''}`);
      if (p.options.length === 0) {
        out.push('      (no options)');
        continue;
      }
      const rows = p.options.map((o) => [o.name, o.type, showDefault(o.default), o.description ?? '']);
      const w = [0, 1, 2].map((j) => Math.max(...rows.map((r) => r[j].length), ['option', 'type', 'default'][j].length));
      out.push(`      ${'option'.padEnd(w[0])}  ${'type'.padEnd(w[1])}  ${'default'.padEnd(w[2])}  description`);
      for (const r of rows) {
        out.push(`      ${r[0].padEnd(w[0])}  ${r[1].padEnd(w[1])}  ${r[2].padEnd(w[2])}  ${r[3]}`.trimEnd());
      }
    }
    out.push('');
  }
  if (!options.kind && !options.backendsOnly) out.push(methodRecipesText());
  if (backends) {
    out.push('Backends');
    if (backends.length === 0) out.push('  (none)');
    const w = Math.max(4, ...backends.map((b) => b.name.length));
    for (const b of backends) {
      const state = b.active ? 'running      ' : b.available ? 'available    ' : 'not available';
      out.push(`  ${b.name.padEnd(w)}  ${state}${b.detail ? `  ${b.detail}` : ''}`);
    }
    out.push('');
  }
  return out.join('\n');
}

/** The same listing as JSON. */
export function listJson(
  backends: readonly BackendInfo[] | null,
  options: { kind?: PluginKind; registry?: PluginRegistry } = {},
): string {
  const reg = options.registry ?? defaultRegistry;
  const plugins = options.kind ? reg.list(options.kind) : reg.list();
  const methods = options.kind ? {} : { methods: METHOD_RECIPES };
  return JSON.stringify({ plugins, ...methods, ...(backends ? { backends } : {}) }, null, 2);
}
