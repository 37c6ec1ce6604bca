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
 * paths under lib/ (`proxy/proxy-blob-store.ts`); `idle` the modules whose functions ran in two
 * windows without a request (the mirror's own timers): those functions are left out of the ways. Run
 * `npm run build` first.
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

/** GETs `path` on the mirror, reads the whole body, resolves with the status (and the body, with `keep`). */
function get(base, path, headers = {}, keep = false) {
  return new Promise((resolve, reject) => {
    http
      .get(`${base}${path}`, { headers, agent: false }, (res) => {
        const chunks = [];
        res.on('data', (c) => keep && chunks.push(c));
        res.on('end', () => resolve(keep ? { status: res.statusCode, body: Buffer.concat(chunks) } : res.statusCode));
        res.on('error', reject);
      })
      .on('error', reject);
  });
}

/** How long nothing but the mirror's own timers must run before a measured request. */
const QUIET_MS = 6000;

/** Lets the work a response started settle: a few turns of the event loop and a short pause. */
async function settle() {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
  await new Promise((r) => setTimeout(r, 100));
}

const session = new Session();
session.connect();
await session.post('Profiler.enable');
await session.post('Profiler.startPreciseCoverage', { callCount: true, detailed: false });

/** Functions the mirror runs on its own timers (a metrics gauge's sampling), as `module@offset`: no request's way. */
const background = new Set();

/**
 * The lib/ modules (as `proxy/upstream.ts`) with a function called since the last snapshot, other
 * than those in `background` (`seen`: a set the keys of those called are added to); with
 * `--functions`, with their names.
 */
async function snapshot(seen) {
  const { result } = await session.post('Profiler.takePreciseCoverage');
  const ran = new Map();
  for (const script of result) {
    if (!script.url.startsWith(distURL)) continue;
    const path = relative(dist, fileURLToPath(script.url));
    // The bundle and its chunks are not the per-module output.
    if (path === 'registry.js' || path.startsWith('chunks/')) continue;
    const module = path.replace(/\.js$/, '.ts');
    const called = script.functions.filter((f) => f.ranges[0].count > 0 && !background.has(`${module}@${f.ranges[0].startOffset}`));
    for (const f of called) seen?.add(`${module}@${f.ranges[0].startOffset}`);
    if (called.length > 0)
      ran.set(
        module,
        called.map((f) => f.functionName || '(anonymous)'),
      );
  }
  const modules = [...ran.keys()].sort();
  return functions ? Object.fromEntries(modules.map((m) => [m, ran.get(m)])) : modules;
}

/**
 * Waits until nothing of ours but `background` has run for `QUIET_MS` (the work earlier requests
 * started or deferred, such as the prefetch of an image's config or the schedule's write, has
 * ended), leaving the counts reset.
 */
async function quiet() {
  // Long enough for the work earlier requests deferred (the schedule's write, within its 5 s
  // interval) to have run; a short window alone may fall while background work waits for the disk.
  const deadline = Date.now() + 60_000;
  let since = Date.now();
  while (Date.now() < deadline) {
    await settle();
    const ran = await snapshot();
    if ((Array.isArray(ran) ? ran.length : Object.keys(ran).length) > 0) since = Date.now();
    else if (Date.now() - since >= QUIET_MS) return;
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
  // What runs with no request (the mirror's own timers: a gauge every second, the schedule's
  // tick and lease every 5 s): what two idle windows of 5.5 s both ran (one-off work, such as the
  // start-up's or a deferred write, runs in one at most).
  await snapshot();
  const windows = [new Set(), new Set()];
  for (const seen of windows) {
    await new Promise((r) => setTimeout(r, 5500));
    await snapshot(seen);
  }
  for (const key of windows[0]) if (windows[1].has(key)) background.add(key);
  const idle = [...new Set([...background].map((key) => key.slice(0, key.lastIndexOf('@'))))].sort();
  await quiet();
  expectOk('cold blob', await get(base, `/v2/${repository}/blobs/${blob}`));
  await settle();
  const coldBlob = await snapshot();

  // The manifest by tag, cold and once warm, then the measured warm request.
  const cold = await get(base, `/v2/${repository}/manifests/${tag}`, accept, true);
  expectOk('manifest (cold)', cold.status);
  // The mirror fetches the image's config ahead of the client: this joins that fetch, so that it has ended.
  expectOk('config blob', await get(base, `/v2/${repository}/blobs/${JSON.parse(cold.body.toString()).config.digest}`));
  expectOk('manifest (warm-up)', await get(base, `/v2/${repository}/manifests/${tag}`, accept));
  await quiet();
  // Past the hot path's trust in what storage said (storage/descriptor-cache.ts, 1 s), so that the
  // request reads storage, every time: within it, it would or would not renew the entry in the
  // background depending on the entry's age.
  await new Promise((r) => setTimeout(r, 1100));
  await quiet();
  expectOk('manifest (warm)', await get(base, `/v2/${repository}/manifests/${tag}`, accept));
  await settle();
  const warmManifestByTag = await snapshot();

  process.stdout.write(`${JSON.stringify({ coldBlob, warmManifestByTag, idle })}\n`);
} finally {
  await session.post('Profiler.stopPreciseCoverage');
  session.disconnect();
  await registry.close();
  await rm(root, { recursive: true, force: true });
}
