/**
 * Cache lifetime through a running mirror: content expires after proxy.ttl, a layer shared with a
 * still-cached image survives its first owner's expiry, and a corrupt state file does not stop the
 * registry.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import request from 'supertest';
import { startFakeUpstream, seedImage, type FakeUpstream } from './helpers/fake-upstream.js';
import { startMirror } from './helpers/mirror.js';

const V2 = 'docker/registry/v2';
const blobFile = (root: string, d: string) => join(root, V2, 'blobs/sha256', d.slice(7, 9), d.slice(7), 'data');
const revision = (root: string, repo: string, d: string) => join(root, V2, 'repositories', repo, '_manifests/revisions/sha256', d.slice(7), 'link');
const until = async (cond: () => boolean, ms = 8000) => {
  for (const end = Date.now() + ms; !cond() && Date.now() < end;) await new Promise((r) => setTimeout(r, 50));
  return cond();
};
const OCI = 'application/vnd.oci.image.manifest.v1+json';

describe('cache lifetime', () => {
  let upstream: FakeUpstream;
  let root: string;
  beforeEach(async () => {
    upstream = await startFakeUpstream();
    root = await mkdtemp(join(tmpdir(), 'lifetime-'));
  });
  afterEach(async () => {
    await upstream.close();
    await rm(root, { recursive: true, force: true });
  });

  async function pull(url: string, repo: string, img: { manifest: string; config: string; layers: string[] }) {
    await request(url).get(`/v2/${repo}/manifests/latest`).set('Accept', OCI).expect(200);
    for (const d of [img.config, ...img.layers]) await request(url).get(`/v2/${repo}/blobs/${d}`).expect(200);
  }

  test('expiry removes one image and keeps a layer another cached image links', async () => {
    const shared = randomBytes(2000);
    const a = seedImage(upstream, 'org/a', 'latest', [shared, randomBytes(100)]);
    const b = seedImage(upstream, 'org/b', 'latest', [shared, randomBytes(200)]);
    const mirror = await startMirror(upstream.url, { root, proxyYaml: 'ttl: 2s' });
    try {
      await pull(mirror.url, 'org/a', a);
      await new Promise((r) => setTimeout(r, 1000));
      await pull(mirror.url, 'org/b', b);
      expect(await until(() => !existsSync(revision(root, 'org/a', a.manifest)) && !existsSync(blobFile(root, a.layers[1]!)))).toBe(true);
      expect(existsSync(blobFile(root, a.layers[0]!))).toBe(true);
      upstream.setDown(true);
      const manifest = await request(mirror.url).get(`/v2/org/b/manifests/${b.manifest}`).set('Accept', OCI);
      expect(manifest.status).toBe(200);
      const layer = await request(mirror.url).get(`/v2/org/b/blobs/${b.layers[0]}`);
      expect(layer.status).toBe(200);
      expect(await until(() => !existsSync(blobFile(root, b.layers[0]!)))).toBe(true);
      expect(mirror.logs()).toMatch(/msg="expired" freed=0 type=blob vars\.digest=sha256:[0-9a-f]+ vars\.name=org\/a/);
      const expired = await mirror.registry.metrics.expirations.get();
      expect(expired.values.find((v) => v.labels.type === 'manifest')?.value).toBeGreaterThanOrEqual(1);
    } finally {
      await mirror.close({ keepRoot: true });
    }
  });

  test.each([
    ['on (default): a cache hit extends the expiry', '', true],
    ['off (proxy.touchonhit: false, distribution behaviour): a hit leaves it', 'touchonhit: false', false],
  ])('touch on hit %s', async (_what, yaml, extended) => {
    const img = seedImage(upstream, 'org/a', 'latest', [randomBytes(100)]);
    const mirror = await startMirror(upstream.url, { root, proxyYaml: `ttl: 1h${yaml ? `\n${yaml}` : ''}` });
    const key = `org/a@${img.layers[0]}`;
    await pull(mirror.url, 'org/a', img);
    const pulledAt = Date.now();
    await new Promise((r) => setTimeout(r, 1500));
    await request(mirror.url).get(`/v2/org/a/blobs/${img.layers[0]}`).expect(200);
    await mirror.close({ keepRoot: true });
    const state = JSON.parse(await readFile(join(root, 'scheduler-state.json'), 'utf8')) as Record<string, { ExpiryData: string }>;
    const pushedBy = Date.parse(state[key]!.ExpiryData) - (pulledAt + 3600_000);
    if (extended) expect(pushedBy).toBeGreaterThan(1000);
    else expect(pushedBy).toBeLessThan(200);
  });

  test('expiry survives a restart in between', async () => {
    const img = seedImage(upstream, 'org/a', 'latest', [randomBytes(100)]);
    const first = await startMirror(upstream.url, { root, proxyYaml: 'ttl: 1s' });
    await pull(first.url, 'org/a', img);
    await first.close({ keepRoot: true });
    expect(existsSync(join(root, 'scheduler-state.json'))).toBe(true);
    await new Promise((r) => setTimeout(r, 1200));
    const second = await startMirror(upstream.url, { root, proxyYaml: 'ttl: 1s' });
    try {
      expect(await until(() => !existsSync(blobFile(root, img.layers[0]!)) && !existsSync(revision(root, 'org/a', img.manifest)))).toBe(true);
    } finally {
      await second.close({ keepRoot: true });
    }
  });

  test('a corrupt state file is set aside: the registry starts, serves its cache and rebuilds the schedule', async () => {
    const img = seedImage(upstream, 'org/a', 'latest', [randomBytes(100)]);
    const first = await startMirror(upstream.url, { root, proxyYaml: 'ttl: 1h' });
    await pull(first.url, 'org/a', img);
    await first.close({ keepRoot: true });
    await writeFile(join(root, 'scheduler-state.json'), '{"org/a@sha256:');
    upstream.setDown(true);
    const second = await startMirror(upstream.url, { root, proxyYaml: 'ttl: 1h' });
    try {
      await request(second.url).get(`/v2/org/a/manifests/latest`).set('Accept', OCI).expect(200);
      // The schedule loads (and is rebuilt) in the background.
      expect(await until(() => /scheduler state: .*moved to/.test(second.logs()))).toBe(true);
      expect((await readdir(root)).some((n) => n.startsWith('scheduler-state.json.corrupt-'))).toBe(true);
    } finally {
      await second.close({ keepRoot: true });
    }
    const state = JSON.parse(await import('node:fs').then((fs) => fs.readFileSync(join(root, 'scheduler-state.json'), 'utf8'))) as Record<string, unknown>;
    expect(Object.keys(state)).toContain(`org/a@${img.manifest}`);
    expect(Object.keys(state)).toContain(`org/a@${img.layers[0]}`);
  });

  test('a rebuild of the schedule cut short (its marker left, its entries never written) is done again at the next start, and its marker removed', async () => {
    const img = seedImage(upstream, 'org/a', 'latest', [randomBytes(100)]);
    const first = await startMirror(upstream.url, { root, proxyYaml: 'ttl: 1h' });
    await pull(first.url, 'org/a', img);
    await first.close({ keepRoot: true });
    // What a stop during the rebuild leaves: the marker, and a schedule without what the walk had not reached.
    await writeFile(join(root, 'scheduler-state.json'), '{}');
    await writeFile(join(root, 'scheduler-state.json.rebuilding'), '');
    const second = await startMirror(upstream.url, { root, proxyYaml: 'ttl: 1h' });
    await until(() => /schedule loaded/.test(second.logs()));
    await second.close({ keepRoot: true });
    const state = JSON.parse(await readFile(join(root, 'scheduler-state.json'), 'utf8')) as Record<string, unknown>;
    expect(Object.keys(state)).toEqual(expect.arrayContaining([`org/a@${img.manifest}`, `org/a@${img.layers[0]}`]));
    expect(existsSync(join(root, 'scheduler-state.json.rebuilding'))).toBe(false);
  });

  /** Every path under `root`, with each file's size: what a stop must have finished changing. */
  const tree = (): string =>
    (readdirSync(root, { recursive: true }) as string[])
      .sort()
      .map((p) => `${p} ${statSync(join(root, p)).size}`)
      .join('\n');

  test('a stop with a fetch ahead stalled mid-blob resolves once it has failed and been cleaned up: nothing changes afterwards, nothing is committed', async () => {
    const img = seedImage(upstream, 'org/a', 'latest', [randomBytes(100)]);
    upstream.fault(new RegExp(`^GET /v2/org/a/blobs/${img.config}$`), { kind: 'stall' });
    const mirror = await startMirror(upstream.url, { root, proxyYaml: 'ttl: 1h' });
    await request(mirror.url).get('/v2/org/a/manifests/latest').set('Accept', OCI).expect(200);
    // The config's fetch ahead is under way: its first bytes sent, the rest never.
    expect(await until(() => upstream.count(new RegExp(`^GET /v2/org/a/blobs/${img.config}$`)) === 1)).toBe(true);
    await new Promise((r) => setTimeout(r, 200));
    await mirror.close({ keepRoot: true });
    const after = tree();
    await new Promise((r) => setTimeout(r, 500));
    expect(tree()).toBe(after);
    expect(existsSync(blobFile(root, img.config))).toBe(false);
    expect(after).not.toMatch(/\.lock\b/);
  });

  test("a stop does not wait for another process's download that a fetch ahead waits on, nor take its lock afterwards", async () => {
    const img = seedImage(upstream, 'org/a', 'latest', [randomBytes(100)]);
    upstream.fault(new RegExp(`^GET /v2/org/a/blobs/${img.config}$`), { kind: 'stall' });
    // Two registries on one root (as replicas on a shared volume): the first downloads the config
    // for its client and holds the blob's lock, the upstream never finishing it.
    const holder = await startMirror(upstream.url, { root });
    const other = await startMirror(upstream.url, { root });
    const stalled = request(holder.url)
      .get(`/v2/org/a/blobs/${img.config}`)
      .then(
        () => undefined,
        () => undefined,
      );
    let deadline: NodeJS.Timeout | undefined;
    try {
      expect(await until(() => upstream.count(new RegExp(`^GET /v2/org/a/blobs/${img.config}$`)) === 1)).toBe(true);
      // The other's fetch ahead of that config waits for the holder's download.
      await request(other.url).get('/v2/org/a/manifests/latest').set('Accept', OCI).expect(200);
      await new Promise((r) => setTimeout(r, 300));
      const stopped = await Promise.race([
        other.close({ keepRoot: true }).then(() => 'stopped'),
        new Promise((r) => (deadline = setTimeout(() => r('still waiting after 20 s'), 20_000))),
      ]);
      expect(stopped).toBe('stopped');
      // Nor does the stopped one take the lock once the holder's download fails and frees it.
      await holder.close({ keepRoot: true });
      const after = tree();
      await new Promise((r) => setTimeout(r, 300));
      expect(tree()).toBe(after);
    } finally {
      clearTimeout(deadline);
      await other.close({ keepRoot: true });
      await holder.close({ keepRoot: true });
      await stalled;
    }
  });

  test('without storage.delete.enabled nothing is scheduled and start-up says why', async () => {
    const mirror = await startMirror(upstream.url, { root, proxyYaml: 'ttl: 1s', env: { REGISTRY_STORAGE_DELETE_ENABLED: 'false' } });
    try {
      expect(mirror.logs()).toMatch(/storage.delete.enabled is false: cached content will never expire/);
    } finally {
      await mirror.close({ keepRoot: true });
    }
  });
});
