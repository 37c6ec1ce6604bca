// The one definition of every configuration key (lib/config/keys.ts) is consistent with itself,
// with what is derived from it, and with the reference (docs/configuration.md).
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv } from 'ajv';
import { CONFIG_KEYS, SECTIONS, defaultOf } from '../lib/config/keys.js';
import { loadConfig } from '../lib/config/load.js';
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
    const withDefault = all.filter(([, d]) => d.default !== undefined && d.schema !== undefined);
    expect(withDefault.length).toBeGreaterThan(30);
    const wrong = withDefault.filter(([, d]) => !ajv.validate(d.schema!, d.default)).map(([p, d]) => `${p}: ${JSON.stringify(d.default)}`);
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

  test("Config's members are the top-level sections that have a conversion, each converted by it", () => {
    const converted = Object.entries(SECTIONS)
      .filter(([, d]) => 'convert' in d)
      .map(([name]) => name);
    expect(converted).toEqual([
      'version',
      'log',
      'storage',
      'http',
      'proxy',
      'health',
      'redis',
      'catalog',
      'tags',
      'validation',
      'auth',
      'notifications',
      'middleware',
      'policy',
    ]);
    const { config } = loadConfig({ text: 'proxy: {remoteurl: https://registry-1.docker.io}', env: {} });
    expect(Object.keys(config).sort()).toEqual([...converted].sort());
  });

  test('a default is stated once, in its definition: no other line of lib/ spells one of them', () => {
    const lib = fileURLToPath(new URL('../lib/', import.meta.url));
    const files = (dir: string): string[] =>
      readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
        e.isDirectory() ? files(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
      );
    // The string defaults that name nothing else: a key's choice among a list of values is a word
    // the code uses anyway (`info`, `auto`, `STANDARD` among the storage classes), and `/` is a path.
    const distinctive = [
      ...new Set(
        all
          .filter(([, d]) => typeof d.default === 'string' && d.default.length > 1 && d.schema?.enum === undefined && d.values === undefined)
          .map(([, d]) => d.default as string),
      ),
    ];
    expect(distinctive).toEqual(expect.arrayContaining(['168h', '5m', '10s', '128KiB', 'registry-mirror', '/var/lib/registry', '8ms']));
    // The program's own name, which the tracer is given, is not `redis.prefix`'s default.
    const elsewhere: Record<string, string> = { 'tracing/otel.ts': 'registry-mirror' };
    const found: string[] = [];
    for (const file of files(lib)) {
      const code = readFileSync(file, 'utf8')
        .replace(/\/\*[\s\S]*?\*\//g, '')
        .replace(/(^|[^:'"`\\])\/\/.*$/gm, '$1');
      const name = file.slice(lib.length);
      for (const value of distinctive) {
        // In lib/config, the definitions themselves: `default: '10s'`, `checked('registry-mirror')`.
        const spelt = [...code.matchAll(new RegExp(`(default: |checked\\()?'${value.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}'`, 'g'))];
        const again = spelt.filter((m) => !(name.startsWith('config/') && m[1] !== undefined));
        if (again.length > 0 && elsewhere[name] !== value) found.push(`${name}: '${value}'`);
      }
    }
    expect(found).toEqual([]);
  });
});
