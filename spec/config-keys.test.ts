// The one definition of every configuration key (lib/config/keys.ts) is consistent with itself,
// with what is derived from it, and with the reference (docs/configuration.md).
import { readFileSync } from 'node:fs';
import { Ajv } from 'ajv';
import { CONFIG_KEYS, defaultOf } from '../lib/config/keys.js';
import { CONFIG_KEYWORD_CHECKS, EXTENSION_KEYS, KNOWN_KEYS } from '../lib/config/schema.js';
import type { KeyDef } from '../lib/config/key-def.js';

/** Every definition below the root, with its dotted path. */
function walk(def: KeyDef, path: string[] = []): Array<[string, KeyDef]> {
  return Object.entries(def.keys ?? {}).flatMap(([name, child]) => [[[...path, name].join('.'), child] as [string, KeyDef], ...walk(child, [...path, name])]);
}

const all = walk(CONFIG_KEYS);

describe('configuration keys', () => {
  test('a key this registry does not implement has no schema: it is warned about or refused, never validated', () => {
    const validatedButNotImplemented = all.filter(([, d]) => (d.status === 'ignored' || d.status === 'rejected') && d.schema !== undefined).map(([p]) => p);
    expect(validatedButNotImplemented).toEqual([]);
  });

  test("every default a definition states is a valid value of the key's own schema", () => {
    const ajv = new Ajv({ strict: false, allErrors: true });
    for (const keyword of Object.keys(CONFIG_KEYWORD_CHECKS) as Array<keyof typeof CONFIG_KEYWORD_CHECKS>) {
      ajv.addKeyword({ keyword, validate: (_: unknown, data: unknown) => CONFIG_KEYWORD_CHECKS[keyword](data) });
    }
    const withDefault = all.filter(([, d]) => d.schema?.default !== undefined);
    expect(withDefault.length).toBeGreaterThan(30);
    const wrong = withDefault.filter(([, d]) => !ajv.validate(d.schema!, d.schema!.default)).map(([p, d]) => `${p}: ${JSON.stringify(d.schema!.default)}`);
    expect(wrong).toEqual([]);
    expect(defaultOf('proxy.ttl')).toBe('168h');
    expect(() => defaultOf('proxy.nonsense')).toThrow('no configuration key proxy.nonsense');
  });

  test('extensions are only keys of a top-level section, and never listed among the official keys', () => {
    const nested = all.filter(([p, d]) => d.extension && p.split('.').length !== 2).map(([p]) => p);
    expect(nested).toEqual([]);
    for (const [section, keys] of Object.entries(EXTENSION_KEYS)) {
      for (const key of Object.keys(keys)) expect([section, key, (KNOWN_KEYS[section] as Record<string, unknown>)[key]]).toEqual([section, key, undefined]);
    }
    expect(Object.keys(EXTENSION_KEYS.proxy!)).toContain('overtake');
  });

  test('the reference names every section, every extension key, and every key refused', () => {
    const reference = readFileSync(new URL('../docs/configuration.md', import.meta.url), 'utf8');
    const sections = Object.keys(CONFIG_KEYS.keys!);
    const extensions = Object.entries(EXTENSION_KEYS).flatMap(([s, keys]) => Object.keys(keys).map((k) => `${s}.${k}`));
    const refused = all.filter(([, d]) => d.status === 'rejected').map(([p]) => p);
    // A key is named in full (`proxy.overtake`), or as the last part of a path the row starts
    // (`storage.azure`, `gcs`), or in its section's own table (`prefix` (extension)).
    const named = (path: string): boolean => {
      const last = path.split('.').pop()!;
      return reference.includes(`\`${path}`) || reference.includes(`\`${last}\``);
    };
    expect([...sections, ...extensions, ...refused].filter((p) => !named(p))).toEqual([]);
  });
});
