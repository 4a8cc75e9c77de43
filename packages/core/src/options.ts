import { z } from 'zod';
import { ConfigError } from './errors';

export { z };

function describeReceived(value: unknown): string {
  if (value === undefined) return 'nothing';
  try {
    const s = JSON.stringify(value);
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
    if (issue.code === 'unrecognized_keys') {
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

/** Parses `input` with `schema`, or throws a {@link ConfigError} whose message names each bad field. */
export function parseOptions<T extends z.ZodTypeAny>(schema: T, input: unknown, where: string): z.output<T> {
  const result = schema.safeParse(input ?? {});
  if (result.success) return result.data;
  const { message, path } = formatZodError(result.error, input ?? {}, where);
  throw new ConfigError(message, path);
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
