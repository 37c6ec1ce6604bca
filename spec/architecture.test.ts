/**
 * The layers of lib/ (docs/architecture.md): every import points down. A module may import its own
 * directory (its layer's group) and any lower layer, never a higher one nor a sibling group of its
 * own layer (lib/proxy, lib/hosted, lib/expiry and lib/retention do not know each other; lib/api and
 * lib/services do not: the services are built without the HTTP side). Static, dynamic and
 * type-only imports all count. A new directory or root module must be given its layer here.
 *
 * And the rules docs/architecture.md states: lib/api names no class of the domain or of storage
 * (it works through the contracts of lib/stores.ts and its own small interfaces); the layout is
 * spelled only in lib/storage/paths.ts; no error code is compared as a string (`instanceof`, and
 * the getters of the class that owns the code, in lib/errors.ts).
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
  expiry: 6,
  retention: 6,
  metrics: 6,
  'cache-policy': 7,
  notifications: 7,
  api: 8,
  services: 8,
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

/** The groups whose classes lib/api must not name: the domain and storage. */
const CONCRETE = new Set(['proxy', 'hosted', 'expiry', 'retention', 'storage', 'coordination']);

/** The module allowed to spell the storage layout. */
const LAYOUT_MODULE = join(LIB, 'storage', 'paths.ts');

/**
 * Spellings of the layout (distribution's tree, and ours beside it at the storage root) in string
 * literals and templates. Path fragments only: `/v2/<name>/blobs/` of a URL is not one.
 */
const LAYOUT =
  /['"`/](?:docker\/registry\/v2|_manifests|_layers|_uploads|repositories\/|blobs\/sha|\.tmp\/|\.locks\/|\.scheduler-journal|scheduler-state\.json)/;

/** The module whose classes own the error codes and may test their own. */
const ERRORS_MODULE = join(LIB, 'errors.ts');

/** A `code` compared with a string: an internal error's code (`ERR_…`) or the registry's (`BLOB_UNKNOWN`); errno codes (`ENOENT`) are Node's. */
const CODE_COMPARISON = /\bcode\s*[!=]==?\s*['"](?:ERR_|[A-Z]+_[A-Z_]+['"])|['"](?:ERR_[A-Z_]+|[A-Z]+_[A-Z_]+)['"]\s*[!=]==?\s*[\w.?]*\bcode\b|case\s+['"]ERR_/;

/** The text of a module without its comments (a comment may name the layout or a code). */
function code(text: string): string {
  return text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/(^|[^:'"`\\])\/\/.*$/gm, '$1');
}

/** The names each import of `text` takes from `specifier` (`import { A, type B } from`, `import type { C } from`). */
function importedNames(text: string): Array<{ specifier: string; names: string[] }> {
  const re = /(?:import|export)\s+(?:type\s+)?\{([^}]*)\}\s*from\s+['"]([^'"]+)['"]/g;
  return [...text.matchAll(re)].map((m) => ({
    specifier: m[2]!,
    names: m[1]!
      .split(',')
      .map(
        (n) =>
          n
            .trim()
            .replace(/^type\s+/, '')
            .split(/\s+as\s+/)[0]!,
      )
      .filter(Boolean),
  }));
}

/** The classes a module exports. */
function classesOf(file: string): Set<string> {
  const text = readFileSync(file, 'utf8');
  return new Set([...text.matchAll(/^export\s+(?:abstract\s+)?class\s+(\w+)/gm)].map((m) => m[1]!));
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

  test('imports point down the layers: api -> proxy/hosted/expiry/retention -> storage -> distribution/config', () => {
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

  test('api/ names no class of the domain or of storage: only contracts', () => {
    expect(concreteImports(files.filter((f) => groupOf(f) === 'api'))).toEqual([]);
  });

  test('the layout is spelled only in storage/paths.ts', () => {
    expect(layoutSpellings(files)).toEqual([]);
  });

  test('no error code is compared as a string', () => {
    expect(codeComparisons(files)).toEqual([]);
  });

  test('the router and its handlers do not import each other (their contracts are api/resource.ts)', () => {
    const router = join(LIB, 'api', 'router.ts');
    const handlers = files.filter((f) => relative(LIB, f).startsWith('api/handlers/'));
    expect(handlers.filter((f) => importsOf(f).includes(router)).map((f) => relative(LIB, f))).toEqual([]);
  });

  test('per-request state is typed: nothing travels on res.locals', () => {
    expect(files.filter((f) => /\.locals\b/.test(code(readFileSync(f, 'utf8')))).map((f) => relative(LIB, f))).toEqual([]);
  });

  test('the rules fail on a violation', () => {
    const probe = join(LIB, 'api', 'probe.ts');
    const text = `import { BlobStore, listOrEmpty } from '../storage/blob-store.js';\nimport type { UpstreamStatus } from '../proxy/upstream.js';\n`;
    expect(concreteImports([probe], () => text)).toEqual(['api/probe.ts -> storage/blob-store.ts: BlobStore']);
    expect(layoutSpellings([probe], () => 'const p = `${ROOT}/repositories/${name}/_manifests`;\n// a comment: _layers\n')).toEqual(['api/probe.ts']);
    expect(layoutSpellings([probe], () => 'res.setHeader("Location", `/v2/${name}/blobs/${digest}`);\n')).toEqual([]);
    expect(codeComparisons([probe], () => "if (err.code === 'ERR_UPSTREAM_AUTH_FAILED') x();\n")).toEqual(['api/probe.ts']);
    expect(codeComparisons([probe], () => "if (e.code === 'BLOB_UNKNOWN') x();\n")).toEqual(['api/probe.ts']);
    expect(codeComparisons([probe], () => "if ((err as NodeJS.ErrnoException).code === 'ENOENT') x();\n")).toEqual([]);
  });

  test('the check sees imports of every form', () => {
    const probe = join(LIB, 'storage', 'probe.ts');
    const text = `import { a } from '../api/x.js';\nimport type { B } from '../proxy/y.js';\nexport { c } from '../hosted/z.js';\nconst w = await import('../warm/w.js');\nimport '../server.js';\n`;
    expect(specifiersIn(text)).toEqual(['../api/x.js', '../proxy/y.js', '../hosted/z.js', '../warm/w.js', '../server.js']);
    expect(groupOf(probe)).toBe('storage');
  });
});

/** `file -> target: Class` for each class of a domain or storage module that `files` import. */
function concreteImports(files: string[], read = (f: string) => readFileSync(f, 'utf8')): string[] {
  const found: string[] = [];
  for (const file of files) {
    for (const { specifier, names } of importedNames(read(file))) {
      if (!specifier.startsWith('.')) continue;
      const target = resolve(dirname(file), specifier.replace(/\.js$/, '.ts'));
      if (!CONCRETE.has(groupOf(target))) continue;
      const classes = classesOf(target);
      for (const name of names) if (classes.has(name)) found.push(`${relative(LIB, file)} -> ${relative(LIB, target)}: ${name}`);
    }
  }
  return found;
}

/** The modules other than storage/paths.ts that spell the layout. */
function layoutSpellings(files: string[], read = (f: string) => readFileSync(f, 'utf8')): string[] {
  return files.filter((f) => f !== LAYOUT_MODULE && LAYOUT.test(code(read(f)))).map((f) => relative(LIB, f));
}

/** The modules other than errors.ts that compare an error code with a string. */
function codeComparisons(files: string[], read = (f: string) => readFileSync(f, 'utf8')): string[] {
  return files.filter((f) => f !== ERRORS_MODULE && CODE_COMPARISON.test(code(read(f)))).map((f) => relative(LIB, f));
}
