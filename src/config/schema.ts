// A tiny declarative schema: each node knows its default, how to check a value, and how to describe
// itself. Validation walks the tree with the key path so every error names the exact key at fault.
import { ConfigError } from './config-error';
import { closest } from '../util/closest';

export type SchemaNode =
  | { kind: 'number'; default: number | null; min?: number; max?: number; integer?: boolean; choices?: readonly number[]; nullable?: boolean; doc: string }
  | { kind: 'string'; default: string | null; choices?: readonly string[]; nullable?: boolean; doc: string }
  | { kind: 'boolean'; default: boolean; doc: string }
  | { kind: 'list'; default: unknown[] | null; item: SchemaNode; minLength?: number; maxLength?: number; nullable?: boolean; doc: string }
  /** check, when given, runs after the fields validate: rules between keys (it must allow absent keys). */
  | { kind: 'section'; fields: Record<string, SchemaNode>; doc: string; check?: (value: Record<string, unknown>, path: string) => void }
  /** A free-form value (e.g. a list of per-stage objects) checked by its own function. */
  | { kind: 'any'; default: unknown; check?: (value: unknown, path: string) => void; doc: string };

export const num = (def: number | null, doc: string, opts: { min?: number; max?: number; integer?: boolean; nullable?: boolean } = {}): SchemaNode =>
  ({ kind: 'number', default: def, doc, ...opts });
export const int = (def: number | null, doc: string, opts: { min?: number; max?: number; choices?: readonly number[]; nullable?: boolean } = {}): SchemaNode =>
  ({ kind: 'number', default: def, doc, integer: true, ...opts });
export const str = (def: string | null, doc: string, opts: { choices?: readonly string[]; nullable?: boolean } = {}): SchemaNode =>
  ({ kind: 'string', default: def, doc, ...opts });
export const bool = (def: boolean, doc: string): SchemaNode => ({ kind: 'boolean', default: def, doc });
export const list = (def: unknown[] | null, item: SchemaNode, doc: string, opts: { minLength?: number; maxLength?: number; nullable?: boolean } = {}): SchemaNode =>
  ({ kind: 'list', default: def, item, doc, ...opts });
export const section = (doc: string, fields: Record<string, SchemaNode>,
                        check?: (value: Record<string, unknown>, path: string) => void): SchemaNode =>
  ({ kind: 'section', fields, doc, ...(check ? { check } : {}) });

function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'list';
  if (typeof v === 'object') return 'mapping';
  return typeof v;
}

/** The defaults of a schema as a plain object tree. */
export function defaultsOf(node: SchemaNode): unknown {
  if (node.kind === 'section') {
    const out: Record<string, unknown> = {};
    for (const [k, child] of Object.entries(node.fields)) out[k] = defaultsOf(child);
    return out;
  }
  return structuredClone(node.default);
}

/** Throws ConfigError naming the key path of the first problem found. */
export function validate(node: SchemaNode, value: unknown, path: string): void {
  const at = path || '(root)';
  const nullable = 'nullable' in node && node.nullable;
  if (value === null && nullable) return;
  switch (node.kind) {
    case 'section': {
      if (typeof value !== 'object' || value === null || Array.isArray(value)) {
        throw new ConfigError(`${at}: expected a mapping, got ${typeName(value)}`);
      }
      for (const [k, v] of Object.entries(value)) {
        const child = node.fields[k];
        const childPath = path ? `${path}.${k}` : k;
        if (!child) {
          const known = Object.keys(node.fields);
          const guess = closest(k, known);
          throw new ConfigError(
            `${childPath}: unknown key` + (guess ? ` (did you mean ${path ? `${path}.` : ''}${guess}?)` : '') +
            `; known keys here: ${known.join(', ')}`);
        }
        validate(child, v, childPath);
      }
      node.check?.(value as Record<string, unknown>, path);
      return;
    }
    case 'number': {
      if (typeof value !== 'number' || Number.isNaN(value)) throw new ConfigError(`${at}: expected a number, got ${typeName(value)} (${JSON.stringify(value)})`);
      if (node.integer && !Number.isInteger(value)) throw new ConfigError(`${at}: expected an integer, got ${value}`);
      if (node.min !== undefined && value < node.min) throw new ConfigError(`${at}: ${value} is out of range (minimum ${node.min})`);
      if (node.max !== undefined && value > node.max) throw new ConfigError(`${at}: ${value} is out of range (maximum ${node.max})`);
      if (node.choices && !node.choices.includes(value)) throw new ConfigError(`${at}: ${value} is not one of ${node.choices.join(', ')}`);
      return;
    }
    case 'string': {
      if (typeof value !== 'string') throw new ConfigError(`${at}: expected a string, got ${typeName(value)} (${JSON.stringify(value)})`);
      if (node.choices && !node.choices.includes(value)) {
        throw new ConfigError(`${at}: '${value}' is not one of ${node.choices.join(', ')}`);
      }
      return;
    }
    case 'boolean': {
      if (typeof value !== 'boolean') throw new ConfigError(`${at}: expected true or false, got ${typeName(value)} (${JSON.stringify(value)})`);
      return;
    }
    case 'list': {
      if (!Array.isArray(value)) throw new ConfigError(`${at}: expected a list, got ${typeName(value)} (${JSON.stringify(value)})`);
      if (node.minLength !== undefined && value.length < node.minLength) throw new ConfigError(`${at}: expected at least ${node.minLength} items, got ${value.length}`);
      if (node.maxLength !== undefined && value.length > node.maxLength) throw new ConfigError(`${at}: expected at most ${node.maxLength} items, got ${value.length}`);
      value.forEach((v, i) => validate(node.item, v, `${at}[${i}]`));
      return;
    }
    case 'any':
      node.check?.(value, at);
      return;
  }
}

/** Looks up the schema node at a dotted path, or explains which segment is unknown. */
export function nodeAt(root: SchemaNode, path: string): SchemaNode {
  let node = root;
  const parts = path.split('.');
  parts.forEach((part, i) => {
    if (node.kind !== 'section') throw new ConfigError(`${parts.slice(0, i).join('.')}: is not a section, so '${path}' does not exist`);
    const next = node.fields[part];
    if (!next) {
      const prefix = parts.slice(0, i).join('.');
      const guess = closest(part, Object.keys(node.fields));
      throw new ConfigError(`${parts.slice(0, i + 1).join('.')}: unknown key` + (guess ? ` (did you mean ${prefix ? `${prefix}.` : ''}${guess}?)` : ''));
    }
    node = next;
  });
  return node;
}
