// defaults < file (< the file it extends) < command-line overrides, then one validation pass over
// the merged tree so errors name the final key path whatever layer the bad value came from.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as yaml from 'js-yaml';
import { ConfigError } from './config-error';
import { CONFIG_SCHEMA } from './config-schema';
import type { SegdistConfig } from './config-types';
import { defaultsOf, nodeAt, validate } from './schema';

type Tree = Record<string, unknown>;

function isMapping(v: unknown): v is Tree {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Deep merge where mappings merge key by key and everything else (lists included) replaces. */
export function mergeTrees(base: Tree, over: Tree): Tree {
  const out: Tree = { ...base };
  for (const [k, v] of Object.entries(over)) {
    out[k] = isMapping(v) && isMapping(out[k]) ? mergeTrees(out[k] as Tree, v) : v;
  }
  return out;
}

function readYamlFile(file: string, from?: string): Tree {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    const why = (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'file not found' : (e as Error).message;
    throw new ConfigError(`config ${file}: ${why}${from ? ` (extended by ${from})` : ''}`);
  }
  let doc: unknown;
  try {
    doc = yaml.load(text, { filename: file });
  } catch (e) {
    if (e instanceof yaml.YAMLException) {
      const m = e.mark;
      throw new ConfigError(`config ${file}:${m.line + 1}:${m.column + 1}: malformed YAML: ${e.reason}`);
    }
    throw e;
  }
  if (doc === undefined || doc === null) return {};
  if (!isMapping(doc)) throw new ConfigError(`config ${file}: the top level must be a mapping of keys, got ${Array.isArray(doc) ? 'a list' : typeof doc}`);
  return doc;
}

/** Reads a config file with one level of `extends: other.yaml` (resolved next to the file). */
export function readConfigFile(file: string): Tree {
  const doc = readYamlFile(file);
  const parentRef = doc.extends;
  delete doc.extends;
  if (parentRef === undefined) return doc;
  if (typeof parentRef !== 'string') throw new ConfigError(`config ${file}: extends: expected a file name, got ${JSON.stringify(parentRef)}`);
  const parentFile = path.resolve(path.dirname(file), parentRef);
  const parent = readYamlFile(parentFile, file);
  if ('extends' in parent) {
    throw new ConfigError(`config ${parentFile}: extends is one level only, and ${file} already extends this file`);
  }
  return mergeTrees(parent, doc);
}

/** Parses `a.b.c=value` overrides; values are YAML scalars or flow lists ([1, 2]). */
export function parseOverrides(args: readonly string[]): Tree {
  let tree: Tree = {};
  for (const arg of args) {
    const eq = arg.indexOf('=');
    if (eq <= 0) throw new ConfigError(`override '${arg}': expected key.path=value (for example optimizer.lr=0.01)`);
    const key = arg.slice(0, eq).trim();
    if (!/^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$/.test(key)) {
      throw new ConfigError(`override '${arg}': '${key}' is not a key path (letters, digits and _ joined by dots)`);
    }
    nodeAt(CONFIG_SCHEMA, key); // names the unknown segment, with a suggestion
    let value: unknown;
    try {
      value = yaml.load(arg.slice(eq + 1));
    } catch (e) {
      throw new ConfigError(`override '${arg}': the value is not valid YAML: ${(e as Error).message.split('\n')[0]}`);
    }
    const nested = key.split('.').reduceRight<unknown>((acc, part) => ({ [part]: acc }), value === undefined ? null : value) as Tree;
    tree = mergeTrees(tree, nested);
  }
  return tree;
}

export interface ResolveOptions {
  /** A config file; without one the embedded defaults are the base. */
  file?: string;
  overrides?: readonly string[];
}

export function resolveConfig(opts: ResolveOptions = {}): SegdistConfig {
  let tree = defaultsOf(CONFIG_SCHEMA) as Tree;
  const fromFile = opts.file ? readConfigFile(opts.file) : {};
  // Validate each layer on its own first so an error can say which file it came from.
  if (opts.file) {
    try {
      validate(CONFIG_SCHEMA, fromFile, '');
    } catch (e) {
      if (e instanceof ConfigError) throw new ConfigError(`config ${opts.file}: ${e.message}`);
      throw e;
    }
  }
  tree = mergeTrees(tree, fromFile);
  tree = mergeTrees(tree, parseOverrides(opts.overrides ?? []));
  validate(CONFIG_SCHEMA, tree, '');
  return tree as unknown as SegdistConfig;
}

/** Re-validates a config that was stored (e.g. in a checkpoint), so old or edited files fail clearly. */
export function checkConfig(tree: unknown, source: string): SegdistConfig {
  const merged = mergeTrees(defaultsOf(CONFIG_SCHEMA) as Tree, tree as Tree);
  try {
    validate(CONFIG_SCHEMA, merged, '');
  } catch (e) {
    if (e instanceof ConfigError) throw new ConfigError(`${source}: ${e.message}`);
    throw e;
  }
  return merged as unknown as SegdistConfig;
}

export function configToYaml(cfg: SegdistConfig): string {
  return yaml.dump(cfg, { lineWidth: 120, noRefs: true, flowLevel: 3 });
}
