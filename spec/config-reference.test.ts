// The reference (docs/configuration.md) against the one definition of every key (lib/config/keys.ts):
// every key is documented, every documented key is defined, with the status and the default the
// definition states, so that neither can drift from the other.
import { readFileSync } from 'node:fs';
import { CONFIG_KEYS } from '../lib/config/keys.js';
import { isKeyOf, type KeyDef } from '../lib/config/key-def.js';

interface Row {
  /** The table's heading, for messages. */
  readonly table: string;
  /** The key paths the row names, as written but made absolute (`health.http[].uri`, `storage.s3.*`). */
  readonly paths: string[];
  readonly status?: string;
  readonly defaults: string;
}

/** The tables whose first column is `key`: the section they document (a `### \`redis\`` heading), or none. */
function rows(markdown: string): Row[] {
  const result: Row[] = [];
  let heading = '';
  let columns: string[] | undefined;
  for (const line of markdown.split('\n')) {
    if (line.startsWith('#')) heading = line.replace(/^#+\s*/, '');
    if (!line.startsWith('|')) {
      columns = undefined;
      continue;
    }
    const cells = line
      .slice(1, -1)
      .split(/(?<!\\)\|/)
      .map((c) => c.trim());
    if (!columns) {
      if (cells[0] === 'key') columns = cells;
      continue;
    }
    if (cells[0]!.startsWith('---')) continue;
    const prefix = /^`([a-z0-9.]+)`$/.exec(heading)?.[1];
    result.push({
      table: heading,
      paths: namesIn(cells[0]!, prefix),
      status: cells[columns.indexOf('status')],
      defaults: cells[columns.indexOf('default')] ?? '',
    });
  }
  return result;
}

/**
 * The key paths a row's first cell names: full paths, or (under a section's heading) relative to
 * it; `.path` is relative to the section of the last path written in full before it
 * (`auth.htpasswd.realm`, `.path`), and a bare name of the main table a sibling of the one before
 * it (`storage.azure`, `gcs`).
 */
function namesIn(cell: string, prefix: string | undefined): string[] {
  const paths: string[] = [];
  let anchor = '';
  for (const [, token] of cell.matchAll(/`([^`]+)`/g)) {
    if (!/^\.?[a-z0-9]+(?:(?:\.|\[\]\.?)(?:[a-z0-9]+|<[a-z]+>|\*))*$/.test(token!)) continue;
    const parentOf = (p: string): string => p.replace(/\.?[^.]*$/, '');
    if (token!.startsWith('.')) {
      paths.push(parentOf(anchor) + token);
      continue;
    }
    if (prefix) paths.push(`${prefix}.${token}`);
    else if (!token!.includes('.') && !token!.includes('[') && !isKeyOf(CONFIG_KEYS, token!)) paths.push(`${parentOf(paths.at(-1)!)}.${token}`);
    else paths.push(token!);
    anchor = paths.at(-1)!;
  }
  return paths;
}

/** The definition a documented path names: `[]` steps into a list's entries when they are keys, else stays on the list. */
function resolve(path: string): { path: string; def: KeyDef } | undefined {
  let def = CONFIG_KEYS;
  const at: string[] = [];
  for (const part of path.replace(/\.\*$/, '').split(/\.|(?=\[\])/)) {
    if (part === '[]' || (part.startsWith('[]') && !def.keys)) continue;
    const name = part.replace(/^\[\]/, '');
    if (/^<[a-z]+>$/.test(name) && def.status === 'map') continue;
    if (!def.keys && (def.status === 'map' || def.schema?.type === 'array')) return { path: at.join('.'), def };
    if (!isKeyOf(def, name)) return undefined;
    def = def.keys![name]!;
    at.push(name);
  }
  return { path: at.join('.'), def };
}

/** Every definition below the root, with its dotted path. */
function walk(def: KeyDef, path: string[] = []): Array<[string, KeyDef]> {
  return Object.entries(def.keys ?? {}).flatMap(([name, child]) => [[[...path, name].join('.'), child] as [string, KeyDef], ...walk(child, [...path, name])]);
}

/** A default as the reference writes it. */
const shown = (value: unknown): string => (typeof value === 'string' ? (value === '' ? '""' : value) : JSON.stringify(value));

const STATUS: Readonly<Record<string, readonly string[]>> = { supported: ['supported', 'map'], accepted: ['ignored'], rejected: ['rejected'] };

const table = rows(readFileSync(new URL('../docs/configuration.md', import.meta.url), 'utf8'));

describe('the configuration reference', () => {
  test('reads the tables', () => {
    expect(new Set(table.map((r) => r.table))).toEqual(new Set(['Keys', '`storage.s3`', '`redis`', '`notifications`', 'Extension keys']));
    expect(table.length).toBeGreaterThan(80);
  });

  test('names only keys that are defined', () => {
    const unknown = table.flatMap((r) => r.paths.filter((p) => resolve(p) === undefined).map((p) => `${r.table}: ${p}`));
    expect(unknown).toEqual([]);
  });

  test('names every key that is defined', () => {
    // A whole section's row that refers to the section's own table (`redis.*`: see below) names none of its keys.
    const named = table.flatMap((r) => r.paths.map((p) => ({ all: p.endsWith('.*') && !/see \[below\]/.test(r.defaults), path: resolve(p)?.path })));
    const covered = (path: string): boolean => named.some((n) => n.path === path || (n.all && (path === n.path || path.startsWith(`${n.path}.`))));
    const leaves = walk(CONFIG_KEYS).filter(([, d]) => !d.keys);
    expect(leaves.length).toBeGreaterThan(150);
    expect(leaves.map(([p]) => p).filter((p) => !covered(p))).toEqual([]);
  });

  test("gives each key the status its definition states (an s3 or redis row's `accepted` is its status)", () => {
    const wrong: string[] = [];
    for (const r of table) {
      const status = STATUS[r.status ?? ''] ? r.status! : r.defaults === 'accepted' ? 'accepted' : undefined;
      if (!status) continue;
      for (const p of r.paths.filter((q) => !q.endsWith('.*'))) {
        const def = resolve(p)?.def;
        if (def && !STATUS[status]!.includes(def.status)) wrong.push(`${p}: ${status}, defined ${def.status}`);
      }
    }
    expect(wrong).toEqual([]);
  });

  test('gives each default the definition states, in the order the row names the keys', () => {
    const wrong: string[] = [];
    for (const r of table) {
      const written = [...r.defaults.matchAll(/`([^`]+)`/g)].map((m) => m[1]!);
      // A row of a whole section (`redis.*`) with no value refers to the section's own table.
      const expanded = r.paths.flatMap((p) => {
        if (!p.endsWith('.*')) return [resolve(p)!];
        if (written.length === 0) return [];
        const at = resolve(p)!;
        return walk(at.def).map(([c, def]) => ({ path: `${at.path}.${c}`, def }));
      });
      const seen = new Set<string>();
      const expected = expanded.filter((e) => e && !seen.has(e.path) && seen.add(e.path) && e.def.default !== undefined).map((e) => shown(e.def.default));
      let i = 0;
      for (const w of written) if (w === expected[i]) i++;
      if (i < expected.length) wrong.push(`${r.paths.join(', ')}: default column ${JSON.stringify(r.defaults)} lacks \`${expected.slice(i).join('`, `')}\``);
    }
    expect(wrong).toEqual([]);
  });

  test('lists the extension keys (ours) in their own table', () => {
    const extensions = walk(CONFIG_KEYS).filter(([, d]) => d.extension);
    const inTable = table.filter((r) => r.table === 'Extension keys').flatMap((r) => r.paths.map((p) => resolve(p)?.path ?? p));
    const notExtension = inTable.filter((p) => !extensions.some(([e]) => p === e || p.startsWith(`${e}.`)));
    expect(notExtension).toEqual([]);
  });
});
