// The config reference as Markdown, generated from the schema so the README cannot drift from it.
import { CONFIG_SCHEMA } from './config-schema';
import type { SchemaNode } from './schema';

function typeOf(node: SchemaNode): string {
  switch (node.kind) {
    case 'number':
      if (node.choices) return node.choices.join(' \\| ');
      return (node.integer ? 'integer' : 'number') + range(node.min, node.max) + (node.nullable ? ' or null' : '');
    case 'string':
      return (node.choices ? node.choices.join(' \\| ') : 'string') + (node.nullable ? ' or null' : '');
    case 'boolean':
      return 'boolean';
    case 'list':
      return `list of ${node.item.kind === 'section' ? 'mappings' : typeOf(node.item)}` + (node.minLength === node.maxLength && node.minLength ? ` (${node.minLength})` : '') + (node.nullable ? ' or null' : '');
    case 'any':
      return 'see description';
    case 'section':
      return 'section';
  }
}

function range(min?: number, max?: number): string {
  if (min === undefined && max === undefined) return '';
  return ` in [${min ?? '-inf'}, ${max ?? 'inf'}]`;
}

export function configReference(): string {
  const rows: string[] = ['| key | type | default | meaning |', '| --- | --- | --- | --- |'];
  const walk = (node: SchemaNode, prefix: string) => {
    if (node.kind !== 'section') return;
    for (const [k, child] of Object.entries(node.fields)) {
      const key = prefix ? `${prefix}.${k}` : k;
      if (child.kind === 'section') {
        rows.push(`| **${key}** | section | | ${child.doc} |`);
        walk(child, key);
      } else if (child.kind === 'list' && child.item.kind === 'section') {
        rows.push(`| \`${key}\` | list of mappings${child.nullable ? ' or null' : ''} | \`${JSON.stringify(child.default)}\` | ${child.doc} |`);
        walk(child.item, `${key}[]`);
      } else {
        rows.push(`| \`${key}\` | ${typeOf(child)} | \`${JSON.stringify(child.default)}\` | ${child.doc} |`);
      }
    }
  };
  walk(CONFIG_SCHEMA, '');
  return rows.join('\n');
}
