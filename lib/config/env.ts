/**
 * `REGISTRY_*` environment overrides as distribution's `configuration/parser.go`: the name after
 * the prefix, split on `_`, is a key path matched case-insensitively; values are YAML; missing
 * sections are created; variables apply in lexical order of name. A number names an element of a
 * list, as distribution 3 (`REGISTRY_HTTP_TLS_CLIENTCAS_1`): an existing one, or the one after
 * the last.
 */
import yaml from 'js-yaml';
import { ConfigError } from '../errors.js';
import { KNOWN_KEYS, EXTENSION_KEYS, type KeyStatus, type KeyTree } from './schema.js';

type Tree = Record<string, unknown>;

/** Applies the overrides of `env` to `tree` in place; returns warnings for unknown variables. */
export function applyEnvOverrides(tree: Tree, env: NodeJS.ProcessEnv): string[] {
  const warnings: string[] = [];
  const names = Object.keys(env)
    .filter((n) => n.startsWith('REGISTRY_') && n !== 'REGISTRY_CONFIGURATION_PATH')
    .sort();
  for (const name of names) {
    const path = name
      .slice('REGISTRY_'.length)
      .split('_')
      .filter((p) => p.length > 0);
    if (path.length === 0) continue;
    if (!isKnownPath(path.map((p) => p.toLowerCase()))) warnings.push(`${name} does not name a known configuration key: it is applied but ignored`);
    let node: Tree | unknown[] = tree;
    for (let i = 0; i < path.length; i++) {
      let key: string | number;
      if (Array.isArray(node)) {
        key = Number(path[i]);
        if (!/^\d+$/.test(path[i]!) || key > node.length) {
          const where = path
            .slice(0, i)
            .map((p) => p.toLowerCase())
            .join('.');
          throw new ConfigError(`${name}: index ${path[i]} is past the end of ${where} (${node.length} elements)`);
        }
      } else {
        const n = node;
        key = Object.keys(n).find((k) => k.toLowerCase() === path[i]!.toLowerCase()) ?? path[i]!.toLowerCase();
      }
      const here = node as Record<string | number, unknown>;
      if (i === path.length - 1) {
        here[key] = parseValue(env[name] ?? '');
      } else {
        const next = here[key];
        // A missing list (or list element) is made when the next part is an index.
        if (next === null || typeof next !== 'object') here[key] = /^\d+$/.test(path[i + 1]!) && !isMapKey(path.slice(0, i + 1)) ? [] : {};
        node = here[key] as Tree | unknown[];
      }
    }
  }
  return warnings;
}

function parseValue(raw: string): unknown {
  try {
    const v = yaml.load(raw);
    return v === undefined ? '' : v;
  } catch {
    return raw;
  }
}

/** True when `path` names a free-form section's entry (where a number is a key, not an index). */
function isMapKey(path: string[]): boolean {
  let node: KeyStatus | KeyTree | undefined = KNOWN_KEYS;
  for (const p of path) node = typeof node === 'object' ? node[p.toLowerCase()] : node;
  return node === 'map';
}

/** True when `path` is an official key, lies under a free-form section, or is an extension key (list indexes skipped). */
function isKnownPath(path: string[]): boolean {
  let node: KeyStatus | KeyTree = KNOWN_KEYS;
  path = path.filter((p) => !/^\d+$/.test(p));
  for (let i = 0; i < path.length; i++) {
    if (typeof node === 'string') return node !== 'supported';
    const next: KeyStatus | KeyTree | undefined = node[path[i]!] ?? (i === 1 ? EXTENSION_KEYS[path[0]!]?.[path[1]!] : undefined);
    if (next === undefined) return false;
    node = next;
  }
  return true;
}
