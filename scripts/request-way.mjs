#!/usr/bin/env node
/**
 * Which of our modules one request runs through ("the way" of issue 30), measured rather than read:
 * the mirror is started from the per-module tsc output in dist/ (not the bundle, whose one file
 * would hide the modules), V8's precise coverage counts calls per function, and the modules whose
 * functions ran between two snapshots are the request's way. The first snapshot is taken after a
 * warm-up request of the same kind and once nothing of ours has run for a while (taking a snapshot
 * resets the counts), so start-up and first-use work (lazy imports, a token, a connection) and what
 * earlier requests started (the prefetch of an image's config) are not counted; the second once the
 * response has ended and the work it started (the commit, the cache events) has settled.
 *
 *   node scripts/request-way.mjs <upstream URL> <repository> <tag> <warm-up blob digest> <blob digest>
 *
 * The upstream holds `<repository>:<tag>` and both blobs in `<repository>`. Prints one JSON object:
 * `{ "coldBlob": [...], "warmManifestByTag": [...], "idle": [...] }`, each a sorted list of module
 * paths under lib/ (`proxy/proxy-blob-store.ts`); `idle` is what ran in a window with no request
 * (timers), which a way should not need. Run `npm run build` first.
 */
import { Session } from 'node:inspector/promises';
import http from 'node:http';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { PassThrough } from 'node:stream';
import { fileURLToPath, pathToFileURL } from 'node:url';

const functions = process.argv.includes('--functions');
const [upstream, repository, tag, warmupBlob, blob] = process.argv.slice(2).filter((a) => a !== '--functions');
if (!blob) {
  process.stderr.write('usage: request-way.mjs <upstream URL> <repository> <tag> <warm-up blob digest> <blob digest>\n');
  process.exit(2);
}

const dist = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist');
const distURL = pathToFileURL(dist).href + '/';
const { loadConfig } = await import(`${distURL}config/load.js`);
const { createLogger } = await import(`${distURL}log/logger.js`);
const { startRegistry } = await import(`${distURL}server.js`);

/** GETs `path` on the mirror, reads the whole body, resolves with the status. */
function get(base, path, headers = {}) {
  return new Promise((resolve, reject) => {
    http
      .get(`${base}${path}`, { headers, agent: false }, (res) => {
        res.on('data', () => undefined);
        res.on('end', () => resolve(res.statusCode));
        res.on('error', reject);
      })
      .on('error', reject);
  });
}

/** Lets the work a response started settle: a few turns of the event loop and a short pause. */
async function settle() {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
  await new Promise((r) => setTimeout(r, 100));
}

const session = new Session();
session.connect();
await session.post('Profiler.enable');
await session.post('Profiler.startPreciseCoverage', { callCount: true, detailed: false });

/** The lib/ modules (as `proxy/upstream.ts`) with a function called since the last snapshot. */
async function snapshot() {
  const { result } = await session.post('Profiler.takePreciseCoverage');
  const ran = new Map();
  for (const script of result) {
    if (!script.url.startsWith(distURL)) continue;
    const path = relative(dist, fileURLToPath(script.url));
    // The bundle and its chunks are not the per-module output.
    if (path === 'registry.js' || path.startsWith('chunks/')) continue;
    const called = script.functions.filter((f) => f.ranges[0].count > 0).map((f) => f.functionName || '(anonymous)');
    if (called.length > 0) ran.set(path.replace(/\.js$/, '.ts'), called);
  }
  const modules = [...ran.keys()].sort();
  return functions ? Object.fromEntries(modules.map((m) => [m, ran.get(m)])) : modules;
}

/**
 * Waits until nothing of ours runs for a settle window (the work an earlier request started, such
 * as the prefetch of an image's config after its manifest, has ended), leaving the counts reset.
 */
async function quiet() {
  for (let i = 0; i < 100; i++) {
    await settle();
    const ran = await snapshot();
    if ((Array.isArray(ran) ? ran.length : Object.keys(ran).length) === 0) return;
  }
  throw new Error('the mirror never went quiet: something runs without a request');
}

const root = await mkdtemp(join(tmpdir(), 'request-way-'));
// As config.yml.example: the access log on, a configured header, a TTL.
const text = [
  'version: 0.1',
  'log:',
  '  fields:',
  '    service: registry',
  'storage:',
  '  filesystem:',
  `    rootdirectory: ${root}`,
  '  delete:',
  '    enabled: true',
  'http:',
  '  addr: 127.0.0.1:0',
  '  headers:',
  '    X-Content-Type-Options: [nosniff]',
  'proxy:',
  `  remoteurl: ${upstream}`,
  '  ttl: 168h',
  '',
].join('\n');
const { config } = loadConfig({ text, env: {} });
const sink = new PassThrough();
sink.resume();
const registry = await startRegistry(config, createLogger(config.log, sink));
const base = `http://127.0.0.1:${registry.port}`;
const accept = { accept: 'application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json' };

const expectOk = (what, status) => {
  if (status !== 200) throw new Error(`${what}: ${status}`);
};

try {
  // Warm-up: one cold blob of the same repository, then the measured cold blob.
  expectOk('warm-up blob', await get(base, `/v2/${repository}/blobs/${warmupBlob}`));
  await quiet();
  expectOk('cold blob', await get(base, `/v2/${repository}/blobs/${blob}`));
  await settle();
  const coldBlob = await snapshot();

  // The manifest by tag, cold and once warm, then the measured warm request.
  expectOk('manifest (cold)', await get(base, `/v2/${repository}/manifests/${tag}`, accept));
  expectOk('manifest (warm-up)', await get(base, `/v2/${repository}/manifests/${tag}`, accept));
  await quiet();
  expectOk('manifest (warm)', await get(base, `/v2/${repository}/manifests/${tag}`, accept));
  await settle();
  const warmManifestByTag = await snapshot();

  // A window as long as a measured one, with no request.
  await settle();
  const idle = await snapshot();
  process.stdout.write(`${JSON.stringify({ coldBlob, warmManifestByTag, idle })}\n`);
} finally {
  await session.post('Profiler.stopPreciseCoverage');
  session.disconnect();
  await registry.close();
  await rm(root, { recursive: true, force: true });
}
