/**
 * The way of one request through our modules (issue 30): which files under lib/ a cold blob `GET`
 * and a warm manifest `GET` by tag execute, measured by scripts/request-way.mjs (V8's precise
 * coverage on the per-module build in dist/, after a warm-up request of the same kind), with
 * Debian's docker-registry as the upstream. The lists are printed; docs/architecture.md names them.
 *
 * The data path (`proxy/`, `storage/`, `coordination/`) and the whole way (the HTTP side, the
 * cache events' bookkeeping and the leaves included) are each held to what they measure today
 * (`LIMITS`), so that they can only shrink towards issue 30's 12 per way.
 */
import { randomBytes } from 'node:crypto';
import { spawnChild } from './helpers/children.js';
import { describeInterop } from './helpers/interop.js';
import { pushBlob, pushSmallImage, smallImage } from './helpers/push.js';
import { startDistribution, type DistributionProcess } from './helpers/upstream-registry.js';

const REPO = 'way/app';

/**
 * The most modules each way may run through: the counts measured on main (the schedule's keys
 * numbered by distribution/digest-table.ts; the health gate, the hosted names, both sides of the
 * notifications and the lock owner decided once; the route table, the response headers, `Range`, `Accept`, the upstream
 * choice and the upstream's guards each beside what uses them). A ratchet towards issue 30's 12 per
 * way: lower them as modules leave the way, never raise.
 */
const LIMITS = {
  coldBlob: { dataPath: 17, whole: 37 },
  warmManifestByTag: { dataPath: 14, whole: 35 },
} as const;

/** The modules of the data path: the pull-through stores, storage and the replicas' coordination. */
const isDataPath = (module: string): boolean => /^(proxy|storage|coordination)\//.test(module);

interface Way {
  readonly coldBlob: string[];
  readonly warmManifestByTag: string[];
  readonly idle: string[];
}

/** Runs the measurement against `upstream`, in a process of its own (its coverage is its own). */
async function measure(upstream: string, warmupBlob: string, blob: string): Promise<Way> {
  const child = spawnChild(process.execPath, ['scripts/request-way.mjs', upstream, REPO, 'v1', warmupBlob, blob], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.process.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  child.process.stderr!.on('data', (c: Buffer) => (err += c.toString()));
  const code = await child.exited;
  if (code !== 0) throw new Error(`request-way.mjs exited with ${code}: ${err}`);
  return JSON.parse(out) as Way;
}

describeInterop('the way of one request through our modules', () => {
  let upstream: DistributionProcess;

  beforeAll(async () => {
    upstream = await startDistribution();
  });
  afterAll(() => upstream?.destroy());

  test('a cold blob and a warm manifest by tag each run through few of our modules', async () => {
    await pushSmallImage(upstream.url, REPO, 'v1', smallImage('request-way'));
    // Blobs of a real layer's kind: many network chunks, written in several batches.
    const warmup = await pushBlob(upstream.url, REPO, randomBytes(2 * 1024 * 1024));
    const blob = await pushBlob(upstream.url, REPO, randomBytes(2 * 1024 * 1024));
    const way = await measure(upstream.url, warmup, blob);
    for (const kind of ['coldBlob', 'warmManifestByTag'] as const) {
      const modules = way[kind];
      const data = modules.filter(isDataPath);
      process.stdout.write(`${kind}: ${modules.length} modules, ${data.length} of the data path\n  ${modules.join('\n  ')}\n`);
      expect(modules).toContain(kind === 'coldBlob' ? 'proxy/proxy-blob-store.ts' : 'proxy/proxy-manifest-store.ts');
      expect(data.length).toBeLessThanOrEqual(LIMITS[kind].dataPath);
      expect(modules.length).toBeLessThanOrEqual(LIMITS[kind].whole);
    }
    // The mirror's own timers (a gauge sampled every second) are no request's way: left out.
    process.stdout.write(`without a request: ${way.idle.join(', ')}\n`);
  }, 150_000);
});
