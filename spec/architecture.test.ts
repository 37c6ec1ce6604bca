/**
 * The layers of lib/ (docs/architecture.md): every import points down. A module may import its own
 * directory (its layer's group) and any lower layer, never a higher one nor a sibling group of its
 * own layer (lib/proxy, lib/hosted and lib/scheduler do not know each other; lib/api and
 * lib/registry-services do not: the services are built without the HTTP side). Static, dynamic and
 * type-only imports all count. A new directory or root module must be given its layer here.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Layer of each group (a directory of lib/, or a module at its root), lowest first. */
const LAYERS: Readonly<Record<string, number>> = {
  errors: 0,
  distribution: 1,
  tracing: 1,
  config: 2,
  log: 3,
  stores: 3,
  storage: 4,
  coordination: 5,
  auth: 5,
  health: 5,
  proxy: 6,
  hosted: 6,
  scheduler: 6,
  metrics: 6,
  'cache-policy': 7,
  notifications: 7,
  api: 8,
  'registry-services': 8,
  'http-listener': 8,
  warm: 9,
  server: 10,
  cli: 11,
};

const LIB = resolve(dirname(fileURLToPath(import.meta.url)), '../lib');

function modules(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    return e.isDirectory() ? modules(p) : e.name.endsWith('.ts') ? [p] : [];
  });
}

/** `api` for lib/api/handlers/blobs.ts, `server` for lib/server.ts. */
function groupOf(file: string): string {
  return relative(LIB, file).split('/')[0]!.replace(/\.ts$/, '');
}

/** `import ... from`, `export ... from`, `import(...)` and bare `import '...'` specifiers. */
function specifiersIn(text: string): string[] {
  const re = /(?:^|[\s;])(?:import|export)\s[^'"]*?\sfrom\s+['"]([^'"]+)['"]|import\s*\(\s*['"]([^'"]+)['"]\s*\)|^import\s+['"]([^'"]+)['"]/gm;
  return [...text.matchAll(re)].map((m) => m[1] ?? m[2] ?? m[3]!);
}

/** The lib/ modules a source imports (relative specifiers only; packages are not layers). */
function importsOf(file: string): string[] {
  const specifiers = specifiersIn(readFileSync(file, 'utf8'));
  return specifiers.filter((s) => s.startsWith('.')).map((s) => resolve(dirname(file), s.replace(/\.js$/, '.ts')));
}

describe('architecture', () => {
  const files = modules(LIB);

  test('every module belongs to a layer', () => {
    expect(files.map(groupOf).filter((g) => LAYERS[g] === undefined)).toEqual([]);
  });

  test('imports point down the layers: api -> proxy/hosted/scheduler -> storage -> distribution/config', () => {
    const upward: string[] = [];
    for (const file of files) {
      const from = groupOf(file);
      for (const target of importsOf(file)) {
        const to = groupOf(target);
        if (to !== from && LAYERS[to]! >= LAYERS[from]!) upward.push(`${relative(LIB, file)} -> ${relative(LIB, target)}`);
      }
    }
    expect(upward).toEqual([]);
  });

  test('the check sees imports of every form', () => {
    const probe = join(LIB, 'storage', 'probe.ts');
    const text = `import { a } from '../api/x.js';\nimport type { B } from '../proxy/y.js';\nexport { c } from '../hosted/z.js';\nconst w = await import('../warm/w.js');\nimport '../server.js';\n`;
    expect(specifiersIn(text)).toEqual(['../api/x.js', '../proxy/y.js', '../hosted/z.js', '../warm/w.js', '../server.js']);
    expect(groupOf(probe)).toBe('storage');
  });
});
