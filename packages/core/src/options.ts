import { z } from 'zod';
import { ConfigError } from './errors';

export { z };

/**
 * The largest value any integer option may take unless its own schema sets a lower maximum: 2³² − 1. Seeds
 * are integers in [0, 2³²) and counts (steps, iterations, batch sizes, …) stay below it, so a value such as
 * `1e20` is refused instead of being accepted (and, for seeds, silently wrapped modulo 2³²).
 */
export const MAX_INTEGER_OPTION = 4294967295;

/** Numbers as the user wrote them: NaN and ±Infinity by name (JSON would print null). */
function nonFiniteAsText(_k: string, v: unknown): unknown {
  return typeof v === 'number' && !Number.isFinite(v) ? `\u0000${String(v)}\u0000` : v;
}

function describeReceived(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (typeof value === 'number' && !Number.isFinite(value)) return String(value);
  try {
    const raw = JSON.stringify(value, nonFiniteAsText);
    if (raw === undefined) return String(value);
    const s = raw.replace(/"\\u0000([^"\\]*)\\u0000"/g, '$1');
    return s.length > 60 ? `${s.slice(0, 57)}...` : s;
  } catch {
    return String(value);
  }
}

function valueAt(root: unknown, path: readonly (string | number)[]): unknown {
  let cur: unknown = root;
  for (const k of path) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string | number, unknown>)[k];
  }
  return cur;
}

/** One line per problem, each naming its field, what is wrong and what was given. */
export function formatZodError(
  error: z.ZodError,
  input: unknown,
  prefix = '',
): {
  /** The formatted message, one line per issue. */
  message: string;
  /** Dotted path of the first offending field. */
  path: string;
} {
  const lines: string[] = [];
  let firstPath = '';
  for (const issue of error.issues) {
    const path = [prefix, ...issue.path.map(String)].filter((p) => p !== '').join('.');
    if (!firstPath) firstPath = path;
    let detail = issue.message;
    if (issue.code === 'invalid_type' && issue.received === 'nan') {
      detail = 'must be a number, not NaN';
    } else if (issue.code === 'unrecognized_keys') {
      detail = `unknown option(s) ${issue.keys.map((k) => `'${k}'`).join(', ')}`;
    } else if (issue.code === 'invalid_enum_value') {
      detail = `must be one of ${issue.options.map((o) => `'${String(o)}'`).join(', ')}`;
    }
    const got =
      issue.code === 'unrecognized_keys' ? '' : ` (got ${describeReceived(valueAt(input, issue.path))})`;
    lines.push(`${path || '(root)'}: ${detail}${got}`);
  }
  return { message: lines.join('\n'), path: firstPath };
}

function nonFiniteMessage(value: number): string {
  return Number.isNaN(value) ? 'must be a number, not NaN' : 'must be a finite number';
}

/** A number of a validated value that breaks the rules every option follows. */
interface NumberIssue {
  readonly path: (string | number)[];
  readonly message: string;
  readonly value: number;
}

function numberChecksOf(t: z.ZodNumber): { int: boolean; hasMax: boolean } {
  const checks = t._def.checks;
  return { int: checks.some((c) => c.kind === 'int'), hasMax: checks.some((c) => c.kind === 'max') };
}

/**
 * Walks a validated value along its schema and collects the numbers that break the rules shared by every
 * option, whatever its schema says: every number is finite (zod lets ±Infinity through `z.number()`, and YAML
 * writes it `.inf`), and every integer is at most {@link MAX_INTEGER_OPTION} unless the schema sets its own
 * maximum.
 */
function collectNumberIssues(schema: z.ZodTypeAny, value: unknown, at: (string | number)[], out: NumberIssue[]): void {
  if (out.length >= 20) return;
  if (schema instanceof z.ZodOptional || schema instanceof z.ZodNullable) {
    if (value !== undefined && value !== null) collectNumberIssues(schema._def.innerType, value, at, out);
  } else if (schema instanceof z.ZodDefault) {
    collectNumberIssues(schema._def.innerType, value, at, out);
  } else if (schema instanceof z.ZodEffects) {
    // Refinements and preprocessing keep the inner schema's output; transforms may not, so they stop here.
    if (schema._def.effect.type !== 'transform') collectNumberIssues(schema._def.schema, value, at, out);
    else collectAnyNumbers(value, at, out);
  } else if (schema instanceof z.ZodLazy) {
    collectNumberIssues(schema._def.getter(), value, at, out);
  } else if (schema instanceof z.ZodNumber) {
    if (typeof value !== 'number') return;
    if (!Number.isFinite(value)) {
      out.push({ path: at, message: nonFiniteMessage(value), value });
      return;
    }
    const { int, hasMax } = numberChecksOf(schema);
    if (int && !hasMax && value > MAX_INTEGER_OPTION) {
      out.push({ path: at, message: `must be at most ${MAX_INTEGER_OPTION} (2^32 - 1)`, value });
    }
  } else if (schema instanceof z.ZodObject) {
    if (value === null || typeof value !== 'object') return;
    const shape = schema.shape as Record<string, z.ZodTypeAny>;
    for (const key of Object.keys(value)) {
      const v = (value as Record<string, unknown>)[key];
      const field = shape[key];
      if (field) collectNumberIssues(field, v, [...at, key], out);
      else collectAnyNumbers(v, [...at, key], out); // passthrough / catchall keys
    }
  } else if (schema instanceof z.ZodArray) {
    if (Array.isArray(value)) value.forEach((v, i) => collectNumberIssues(schema._def.type, v, [...at, i], out));
  } else if (schema instanceof z.ZodTuple) {
    if (Array.isArray(value)) {
      const items = schema._def.items as z.ZodTypeAny[];
      value.forEach((v, i) => (items[i] ? collectNumberIssues(items[i], v, [...at, i], out) : collectAnyNumbers(v, [...at, i], out)));
    }
  } else if (schema instanceof z.ZodRecord) {
    if (value !== null && typeof value === 'object') {
      for (const [k, v] of Object.entries(value)) collectNumberIssues(schema._def.valueType, v, [...at, k], out);
    }
  } else if (schema instanceof z.ZodUnion || schema instanceof z.ZodDiscriminatedUnion) {
    // The first member the value fits is the one that validated it.
    const options = (schema instanceof z.ZodUnion ? schema._def.options : [...schema._def.options.values()]) as z.ZodTypeAny[];
    const member = options.find((o) => o.safeParse(value).success);
    if (member) collectNumberIssues(member, value, at, out);
    else collectAnyNumbers(value, at, out);
  } else if (schema instanceof z.ZodIntersection) {
    collectNumberIssues(schema._def.left, value, at, out);
    collectNumberIssues(schema._def.right, value, at, out);
  } else {
    // unknown / any / record of unknown…: numbers are checked for finiteness only.
    collectAnyNumbers(value, at, out);
  }
}

/** Non-finite numbers anywhere in a value whose schema says nothing about them. */
function collectAnyNumbers(value: unknown, at: (string | number)[], out: NumberIssue[]): void {
  if (out.length >= 20) return;
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) out.push({ path: at, message: nonFiniteMessage(value), value });
  } else if (Array.isArray(value)) {
    value.forEach((v, i) => collectAnyNumbers(v, [...at, i], out));
  } else if (value !== null && typeof value === 'object' && !ArrayBuffer.isView(value)) {
    for (const [k, v] of Object.entries(value)) collectAnyNumbers(v, [...at, k], out);
  }
}

/** The schema each validated options object came from (so it is not validated again). */
const parsedBy = new WeakMap<object, z.ZodTypeAny>();

/**
 * Parses `input` with `schema`, or throws a {@link ConfigError} whose message names each bad field. On top of
 * the schema's own rules, every number must be finite (NaN and ±Infinity are refused and named as such) and
 * every integer at most {@link MAX_INTEGER_OPTION} unless the schema sets a lower maximum.
 */
export function parseOptions<T extends z.ZodTypeAny>(schema: T, input: unknown, where: string): z.output<T> {
  // Options this schema already produced are used as they are: a plugin created by the registry gets them
  // validated once, and its constructor's own parseOptions (for direct `new`) does not parse them again.
  if (typeof input === 'object' && input !== null && parsedBy.get(input) === schema) return input as z.output<T>;
  const result = schema.safeParse(input ?? {});
  if (!result.success) {
    const { message, path } = formatZodError(result.error, input ?? {}, where);
    throw new ConfigError(message, path);
  }
  const issues: NumberIssue[] = [];
  collectNumberIssues(schema, result.data, [], issues);
  if (issues.length === 0) {
    if (typeof result.data === 'object' && result.data !== null) parsedBy.set(result.data, schema);
    return result.data;
  }
  const lines = issues.map((issue) => {
    const path = [where, ...issue.path.map(String)].filter((p) => p !== '').join('.');
    return { path, line: `${path || '(root)'}: ${issue.message} (got ${describeReceived(issue.value)})` };
  });
  throw new ConfigError(lines.map((l) => l.line).join('\n'), lines[0].path);
}

/** Default values and descriptions of an object schema's fields, for listings (`bilevel list`). */
export interface OptionDoc {
  /** Field name. */
  readonly name: string;
  /** Type as shown to users, e.g. `number`, `'a' | 'b'`, `string[]`. */
  readonly type: string;
  /** Default value, when the field has one. */
  readonly default?: unknown;
  /** The field's `.describe()` text, when it has one. */
  readonly description?: string;
}

function unwrap(t: z.ZodTypeAny): { inner: z.ZodTypeAny; def?: unknown; optional: boolean } {
  let cur = t;
  let def: unknown;
  let optional = false;
  for (;;) {
    if (cur instanceof z.ZodDefault) {
      def = cur._def.defaultValue();
      cur = cur._def.innerType;
    } else if (cur instanceof z.ZodOptional) {
      optional = true;
      cur = cur._def.innerType;
    } else if (cur instanceof z.ZodEffects) {
      cur = cur._def.schema;
    } else if (cur instanceof z.ZodNullable) {
      cur = cur._def.innerType;
    } else break;
  }
  return { inner: cur, def, optional };
}

function typeName(t: z.ZodTypeAny): string {
  if (t instanceof z.ZodNumber) {
    const isInt = t._def.checks.some((c) => c.kind === 'int');
    const bounds = t._def.checks
      .filter((c) => c.kind === 'min' || c.kind === 'max')
      .map((c) => {
        if (c.kind === 'min') return `${c.inclusive ? '>=' : '>'} ${c.value}`;
        if (c.kind === 'max') return `${c.inclusive ? '<=' : '<'} ${c.value}`;
        return '';
      });
    return `${isInt ? 'integer' : 'number'}${bounds.length ? ` (${bounds.join(', ')})` : ''}`;
  }
  if (t instanceof z.ZodString) return 'string';
  if (t instanceof z.ZodBoolean) return 'boolean';
  if (t instanceof z.ZodEnum) return (t._def.values as string[]).map((v) => `'${v}'`).join(' | ');
  if (t instanceof z.ZodLiteral) return JSON.stringify(t._def.value);
  if (t instanceof z.ZodArray) return `${typeName(unwrap(t._def.type).inner)}[]`;
  if (t instanceof z.ZodUnion)
    return (t._def.options as z.ZodTypeAny[]).map((o) => typeName(unwrap(o).inner)).join(' | ');
  if (t instanceof z.ZodObject) return 'object';
  return 'value';
}

/**
 * The fields of an object schema (through optional, default and effects wrappers) with their types, defaults
 * and descriptions; empty for other schemas.
 */
export function describeOptions(schema: z.ZodTypeAny): OptionDoc[] {
  const { inner } = unwrap(schema);
  if (!(inner instanceof z.ZodObject)) return [];
  const shape = inner.shape as Record<string, z.ZodTypeAny>;
  return Object.keys(shape).map((name) => {
    const field = shape[name];
    const { inner: t, def, optional } = unwrap(field);
    return {
      name,
      type: typeName(t) + (optional && def === undefined ? '?' : ''),
      default: def,
      description: field.description ?? t.description,
    };
  });
}
