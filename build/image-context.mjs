#!/usr/bin/env node
/**
 * The build's third step (after build/bundle.mjs): lays out in `.image/rootfs/` the files the
 * `Dockerfile` copies into the image, so that `docker build` needs no network and runs nothing
 * inside the image (a build farm without internet access builds it from what `npm ci && npm run
 * build` left here; see docs/image.md):
 *
 *   usr/local/lib/registry-mirror/   package.json, bin/registry, the bundle (dist/registry.js and
 *                                    dist/chunks/), the schedule's writer thread and the catalog
 *                                    index's thread (each bundled into one file), and node_modules/ with only the packages the bundle
 *                                    leaves external (the AWS SDK, the OpenTelemetry SDK, iconv-lite's tables) and what
 *                                    they depend on, as package-lock.json resolves them
 *   usr/local/bin/registry           -> the command, on PATH as in registry:2
 *   etc/distribution/config.yml      config.yml.example with the volume as its root directory;
 *   etc/docker/registry/config.yml   -> a link to it (a file or folder mounted on either path is read)
 *   var/lib/registry/                the volume
 *
 * Which packages the bundle needs at run time comes from esbuild's metafile
 * (`dist/registry.meta.json`): every import it left external that is not one of Node's own.
 */
import { builtinModules } from 'node:module';
import { cp, mkdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = fileURLToPath(new URL('..', import.meta.url));
const rootfs = join(root, '.image', 'rootfs');
const app = join(rootfs, 'usr/local/lib/registry-mirror');

/** The packages (`@scope/name` or `name`) the bundle imports at run time from node_modules. */
async function externalPackages() {
  const meta = JSON.parse(await readFile(join(root, 'dist/registry.meta.json'), 'utf8'));
  const names = new Set();
  for (const output of Object.values(meta.outputs)) {
    for (const imp of output.imports) {
      if (!imp.external || imp.path.startsWith('node:') || imp.path.startsWith('.')) continue;
      const parts = imp.path.split('/');
      const name = imp.path.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0];
      if (!builtinModules.includes(name)) names.add(name);
    }
  }
  return [...names].sort();
}

/**
 * The package-lock.json keys (`node_modules/a`, `node_modules/a/node_modules/b`) of `roots` and
 * everything they depend on (optional dependencies that were not installed are left out), found
 * as Node's resolver finds them: the nearest node_modules folder up from the dependent.
 */
function dependencyClosure(lock, roots) {
  const packages = lock.packages;
  const resolve = (from, name) => {
    for (let base = from; ;) {
      const key = `${base ? `${base}/` : ''}node_modules/${name}`;
      if (packages[key]) return key;
      if (!base) return undefined;
      const cut = base.lastIndexOf('node_modules/');
      base = cut <= 0 ? '' : base.slice(0, cut - 1);
    }
  };
  const seen = new Set();
  const visit = (from, name, optional) => {
    const key = resolve(from, name);
    if (!key || !existsSync(join(root, key))) {
      if (optional) return;
      throw new Error(`image: ${name} (needed by ${from || 'the bundle'}) is not installed: run npm ci`);
    }
    if (seen.has(key)) return;
    seen.add(key);
    const p = packages[key];
    for (const dep of Object.keys(p.dependencies ?? {})) visit(key, dep, false);
    for (const dep of Object.keys(p.optionalDependencies ?? {})) visit(key, dep, true);
    for (const [dep, meta] of Object.entries(p.peerDependenciesMeta ?? {})) if (!meta.optional) visit(key, dep, false);
  };
  for (const name of roots) visit('', name, false);
  return [...seen].sort();
}

/** Type declarations and source maps serve no start of the registry. */
const runtimeFile = (path) => !/\.(d\.[cm]?ts|map)$/.test(path);

await rm(join(root, '.image'), { recursive: true, force: true });
await mkdir(join(app, 'dist'), { recursive: true });

const pkg = JSON.parse(await readFile(join(root, 'package.json'), 'utf8'));
// `registry --version` reads the version; `type` makes bin/registry and dist/ ES modules.
await writeFile(
  join(app, 'package.json'),
  `${JSON.stringify({ name: pkg.name, version: pkg.version, type: pkg.type, private: true, license: pkg.license }, null, 2)}\n`,
);
await cp(join(root, 'bin/registry'), join(app, 'bin/registry'));
await cp(join(root, 'dist/registry.js'), join(app, 'dist/registry.js'));
await cp(join(root, 'dist/chunks'), join(app, 'dist/chunks'), { recursive: true, filter: runtimeFile });
// The worker threads are started from files (lib/expiry/state-store.ts finds its own in dist/expiry/,
// lib/storage/repository-index.ts in dist/storage/).
for (const thread of ['expiry/state-writer-thread.js', 'storage/repository-probe-thread.js'])
  await build({
    entryPoints: [join(root, 'dist', thread)],
    outfile: join(app, 'dist', thread),
    bundle: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    // As in build/bundle.mjs: the CommonJS dependencies it bundles call require() for Node's modules.
    banner: { js: "import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);" },
    minifyWhitespace: true,
    logLevel: 'warning',
  });

const lock = JSON.parse(await readFile(join(root, 'package-lock.json'), 'utf8'));
for (const key of dependencyClosure(lock, await externalPackages())) {
  const from = join(root, key);
  // A package's own nested node_modules/ holds packages of their own keys, copied if needed.
  await cp(from, join(app, key), { recursive: true, filter: (src) => src === from || (runtimeFile(src) && !src.startsWith(join(from, 'node_modules'))) });
}

await mkdir(join(rootfs, 'usr/local/bin'), { recursive: true });
await symlink('../lib/registry-mirror/bin/registry', join(rootfs, 'usr/local/bin/registry'));

const example = await readFile(join(root, 'config.yml.example'), 'utf8');
const config = example.replace(/^(\s+rootdirectory:) \.\/data$/m, '$1 /var/lib/registry');
if (config === example) throw new Error('image: config.yml.example has no "rootdirectory: ./data" line to point at the volume');
await mkdir(join(rootfs, 'etc/distribution'), { recursive: true });
await writeFile(join(rootfs, 'etc/distribution/config.yml'), config);
await mkdir(join(rootfs, 'etc/docker/registry'), { recursive: true });
await symlink('../../distribution/config.yml', join(rootfs, 'etc/docker/registry/config.yml'));
await mkdir(join(rootfs, 'var/lib/registry'), { recursive: true });
