import { registry as defaultRegistry, type PluginKind, type PluginRegistry, PLUGIN_KINDS } from '@bilevel/core';
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
export const LIST_TOPICS: Record<string, PluginKind | 'backend'> = {
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

/** Every registered plugin (or those of one kind) with option docs, and the backends, as plain text. */
export function listText(
  backends: readonly BackendInfo[] | null,
  options: { kind?: PluginKind; registry?: PluginRegistry; backendsOnly?: boolean } = {},
): string {
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
  return JSON.stringify({ plugins, ...(backends ? { backends } : {}) }, null, 2);
}
