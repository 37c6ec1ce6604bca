/**
 * `REGISTRY_*` environment overrides as distribution's `configuration/parser.go`: the name after
 * the prefix, split on `_`, is a key path matched case-insensitively; values are YAML; missing
 * sections are created; variables apply in lexical order of name.
 */
import yaml from 'js-yaml';
import { KNOWN_KEYS, EXTENSION_KEYS, type KeyStatus, type KeyTree } from './schema.js';

type Tree = Record<string, unknown>;

/** Applies the overrides of `env` to `tree` in place; returns warnings for unknown variables. */
export function applyEnvOverrides(tree: Tree, env: NodeJS.ProcessEnv): string[] {
  const warnings: string[] = [];
  const names = Object.keys(env)
    .filter((n) => n.startsWith('REGISTRY_') && n !== 'REGISTRY_CONFIGURATION_PATH')
    .sort();
  for (const name of names) {
    const path = name.slice('REGISTRY_'.length).split('_').filter((p) => p.length > 0);
    if (path.length === 0) continue;
    if (!isKnownPath(path.map((p) => p.toLowerCase()))) warnings.push(`${name} does not name a known configuration key: it is applied but ignored`);
    let node = tree;
    for (let i = 0; i < path.length; i++) {
      const key = Object.keys(node).find((k) => k.toLowerCase() === path[i]!.toLowerCase()) ?? path[i]!.toLowerCase();
      if (i === path.length - 1) {
        node[key] = parseValue(env[name] ?? '');
      } else {
        const next = node[key];
        if (next === null || typeof next !== 'object' || Array.isArray(next)) node[key] = {};
        node = node[key] as Tree;
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

/** True when `path` is an official key, lies under a free-form section, or is an extension key. */
export function isKnownPath(path: string[]): boolean {
  let node: KeyStatus | KeyTree = KNOWN_KEYS;
  for (let i = 0; i < path.length; i++) {
    if (typeof node === 'string') return node !== 'supported';
    const next: KeyStatus | KeyTree | undefined = node[path[i]!] ?? (i === 1 ? EXTENSION_KEYS[path[0]!]?.[path[1]!] : undefined);
    if (next === undefined) return false;
    node = next;
  }
  return true;
}
