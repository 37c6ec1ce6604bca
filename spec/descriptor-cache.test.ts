/**
 * The hot path's descriptor cache (lib/storage/descriptor-cache.ts): bounded, short-lived, emptied
 * by every delete of this process; through a running mirror, content that expired, was evicted or
 * was removed by another process is not served from it.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, stat, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import request from 'supertest';
import { startFakeUpstream, seedImage, type FakeUpstream } from './helpers/fake-upstream.js';
import { startMirror, type TestMirror } from './helpers/mirror.js';
import { until } from './helpers/until.js';
import { sha256 } from './helpers/digest.js';
import { DescriptorCache, invalidatingDriver } from '../lib/storage/descriptor-cache.js';
import { FilesystemDriver } from '../lib/storage/filesystem.js';

const OCI = 'application/vnd.oci.image.manifest.v1+json';
const V2 = 'docker/registry/v2';
const blobFile = (root: string, d: string): string => join(root, V2, 'blobs/sha256', d.slice(7, 9), d.slice(7), 'data');
const revisionLink = (root: string, repo: string, d: string): string => join(root, V2, 'repositories', repo, '_manifests/revisions/sha256', d.slice(7), 'link');
const layerLink = (root: string, repo: string, d: string): string => join(root, V2, 'repositories', repo, '_layers/sha256', d.slice(7), 'link');
const blob = { kind: 'blob', size: 1 } as const;

describe('DescriptorCache', () => {
  test('keeps at most maxEntries, dropping the least recently used', () => {
    const c = new DescriptorCache({ maxEntries: 2 });
    c.set('r', 'a', blob, c.epoch);
    c.set('r', 'b', blob, c.epoch);
    expect(c.get('r', 'a')).toBeDefined(); // a is now the most recent
    c.set('r', 'c', blob, c.epoch);
    expect(c.get('r', 'b')).toBeUndefined();
    expect(c.get('r', 'a')).toBeDefined();
    expect(c.get('r', 'c')).toBeDefined();
    expect(c.size).toBe(2);
  });

  test('keeps at most maxPayloadBytes of manifests', () => {
    const c = new DescriptorCache({ maxPayloadBytes: 1600 });
    for (const d of ['a', 'b', 'c']) c.set('r', d, { kind: 'manifest', mediaType: OCI, payload: Buffer.alloc(100) }, c.epoch);
    expect(c.size).toBe(3);
    for (let i = 0; i < 20; i++) c.set('r', `m${i}`, { kind: 'manifest', mediaType: OCI, payload: Buffer.alloc(100) }, c.epoch);
    expect(c.size).toBe(16);
    expect(c.get('r', 'a')).toBeUndefined();
  });

  test('an entry is trusted for ttlMs only', () => {
    let now = 1000;
    const c = new DescriptorCache({ ttlMs: 500, now: () => now });
    c.set('r', 'a', blob, c.epoch);
    now += 499;
    expect(c.get('r', 'a')).toBeDefined();
    now += 1;
    expect(c.get('r', 'a')).toBeUndefined();
    expect(c.size).toBe(0);
  });

  test('past half its lifetime a hit asks for one refresh, and serves the entry meanwhile', () => {
    let now = 0;
    const c = new DescriptorCache({ ttlMs: 1000, now: () => now });
    c.set('r', 'a', blob, c.epoch);
    let refreshes = 0;
    const refresh = (): void => void refreshes++;
    now = 400;
    expect(c.get('r', 'a', refresh)).toBeDefined();
    expect(refreshes).toBe(0);
    now = 600;
    expect(c.get('r', 'a', refresh)).toBeDefined();
    expect(c.get('r', 'a', refresh)).toBeDefined();
    expect(refreshes).toBe(1);
    // The refresh confirmed it: a new entry, a new lifetime.
    c.set('r', 'a', blob, c.epoch);
    now = 1000;
    expect(c.get('r', 'a', refresh)).toBeDefined();
    expect(refreshes).toBe(1);
  });

  test('entries are per repository', () => {
    const c = new DescriptorCache();
    c.set('r', 'a', blob, c.epoch);
    expect(c.get('other', 'a')).toBeUndefined();
  });

  test('a lookup that spanned an invalidation does not fill the cache', () => {
    const c = new DescriptorCache();
    const epoch = c.epoch;
    c.invalidate();
    c.set('r', 'a', blob, epoch);
    expect(c.get('r', 'a')).toBeUndefined();
  });

  test('the invalidating driver empties it before and after every delete, and leaves other calls alone', async () => {
    const root = await mkdtemp(join(tmpdir(), 'descriptors-'));
    try {
      const c = new DescriptorCache();
      const driver = invalidatingDriver(new FilesystemDriver(root), c);
      await driver.putContent('/a/b', 'x');
      c.set('r', 'a', blob, c.epoch);
      expect((await driver.getContent('/a/b')).toString()).toBe('x');
      expect(c.get('r', 'a')).toBeDefined();
      const before = c.epoch;
      await driver.delete('/a');
      expect(c.get('r', 'a')).toBeUndefined();
      expect(c.epoch).toBe(before + 2);
      await expect(driver.stat('/a/b')).resolves.toBeUndefined();
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});

describe('descriptor cache through a mirror', () => {
  let upstream: FakeUpstream;
  let mirror: TestMirror | undefined;
  beforeEach(async () => {
    upstream = await startFakeUpstream();
  });
  afterEach(async () => {
    await mirror?.close();
    mirror = undefined;
    await upstream.close();
  });

  async function pull(repo: string, img: { manifest: string; config: string; layers: string[] }): Promise<void> {
    await request(mirror!.url).get(`/v2/${repo}/manifests/${img.manifest}`).set('Accept', OCI).expect(200);
    for (const d of [img.config, ...img.layers]) await request(mirror!.url).get(`/v2/${repo}/blobs/${d}`).expect(200);
  }

  test('hits are served without asking the upstream again', async () => {
    mirror = await startMirror(upstream.url, { proxyYaml: 'ttl: 1h' });
    const img = seedImage(upstream, 'team/hot', 'v1', [randomBytes(5000)]);
    await pull('team/hot', img);
    const asked = upstream.hits.length;
    for (let i = 0; i < 3; i++) await pull('team/hot', img);
    const head = await request(mirror.url).head(`/v2/team/hot/blobs/${img.layers[0]}`).expect(200);
    expect(head.headers['content-length']).toBe('5000');
    expect(upstream.hits.length).toBe(asked);
  });

  test('expired content is not served from the cache: the upstream down, the GET fails', async () => {
    mirror = await startMirror(upstream.url, { proxyYaml: 'ttl: 2s\ntouchonhit: false' });
    const img = seedImage(upstream, 'team/exp', 'v1', [randomBytes(5000)]);
    await pull('team/exp', img);
    // Pulled again and again (hits do not delay expiry) until expiry has removed it: the descriptors
    // are always fresh (renewed within their 1 s), so only the invalidation by the expiry's deletes
    // keeps them from answering. Pulled only while all of it is stored (a pull after a partial
    // removal would fetch it again).
    const present = async (): Promise<[boolean, boolean]> => [
      await exists(blobFile(mirror!.root, img.layers[0]!)),
      await exists(revisionLink(mirror!.root, 'team/exp', img.manifest)),
    ];
    await until(
      async () => {
        const [data, link] = await present();
        if (data && link) await pull('team/exp', img);
        return !data && !link;
      },
      'expiry',
      15_000,
    );
    upstream.setDown(true);
    const m = await request(mirror.url).get(`/v2/team/exp/manifests/${img.manifest}`).set('Accept', OCI);
    expect(m.status).not.toBe(200);
    const b = await request(mirror.url).get(`/v2/team/exp/blobs/${img.layers[0]}`);
    expect(b.status).not.toBe(200);
  });

  test('evicted content is fetched again, not served from the cache', async () => {
    mirror = await startMirror(upstream.url, { proxyYaml: 'maxsize: 40KB' });
    const a = seedImage(upstream, 'team/a', 'v1', [randomBytes(30_000)]);
    const b = seedImage(upstream, 'team/b', 'v1', [randomBytes(30_000)]);
    await pull('team/a', a);
    await pull('team/a', a);
    await pull('team/b', b);
    await until(async () => !(await exists(blobFile(mirror!.root, a.layers[0]!))), 'eviction', 15_000);
    const before = upstream.count(new RegExp(`^GET /v2/team/a/blobs/${a.layers[0]}`));
    await request(mirror.url).get(`/v2/team/a/blobs/${a.layers[0]}`).expect(200);
    expect(upstream.count(new RegExp(`^GET /v2/team/a/blobs/${a.layers[0]}`))).toBe(before + 1);
  });

  test("another process's removal is seen within the entries' lifetime (1 s), and a blob gone under a lookup is fetched again", async () => {
    mirror = await startMirror(upstream.url, { proxyYaml: 'ttl: 1h' });
    const img = seedImage(upstream, 'team/gc', 'v1', [randomBytes(5000)]);
    await pull('team/gc', img);
    await pull('team/gc', img);
    const layer = img.layers[0]!;
    // As `registry garbage-collect` or another replica would: links and data gone behind our back.
    await unlink(blobFile(mirror.root, layer));
    await unlink(layerLink(mirror.root, 'team/gc', layer));
    await unlink(revisionLink(mirror.root, 'team/gc', img.manifest));
    const blobGets = upstream.count(/^GET \/v2\/team\/gc\/blobs\//);
    // The descriptor still says "stored"; the file is gone when opened: served as a miss, never a
    // 404 for content the upstream has, a 500 or wrong bytes.
    const soon = await request(mirror.url)
      .get(`/v2/team/gc/blobs/${layer}`)
      .buffer(true)
      .parse((res, done) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => done(null, Buffer.concat(chunks)));
      });
    expect(soon.status).toBe(200);
    expect(sha256(soon.body as Buffer)).toBe(layer);
    await new Promise((r) => setTimeout(r, 1100));
    const manifestGets = upstream.count(/^GET \/v2\/team\/gc\/manifests\//);
    await request(mirror.url).get(`/v2/team/gc/blobs/${layer}`).expect(200);
    await request(mirror.url).get(`/v2/team/gc/manifests/${img.manifest}`).set('Accept', OCI).expect(200);
    // One fetch of the blob in all (the first GET's), stored again for the second.
    expect(upstream.count(/^GET \/v2\/team\/gc\/blobs\//)).toBe(blobGets + 1);
    expect(upstream.count(/^GET \/v2\/team\/gc\/manifests\//)).toBe(manifestGets + 1);
  });
});

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}
