/**
 * The extension `proxy.maxsize`: the cache stays under its cap by evicting the least recently pulled
 * content; what was pulled last, and blobs it shares with evicted images, stay servable offline.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import request from 'supertest';
import { startFakeUpstream, seedImage, type FakeUpstream } from './helpers/fake-upstream.js';
import { startMirror, type TestMirror } from './helpers/mirror.js';
import { until } from './helpers/until.js';
import { loadConfig } from '../lib/config/load.js';
import { tryParseSize } from '../lib/config/size.js';

const ACCEPT = 'application/vnd.oci.image.manifest.v1+json';
const BLOBS = 'docker/registry/v2/blobs';

/** Bytes of blob data on disk. */
function diskBytes(root: string): number {
  let total = 0;
  const walk = (dir: string): void => {
    if (!existsSync(dir)) return;
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, entry.name);
      if (entry.isDirectory()) walk(p);
      else if (entry.name === 'data') total += statSync(p).size;
    }
  };
  walk(join(root, BLOBS));
  return total;
}

const dataPath = (root: string, digest: string): string => join(root, BLOBS, 'sha256', digest.slice(7, 9), digest.slice(7), 'data');

describe('size cap (proxy.maxsize)', () => {
  let upstream: FakeUpstream;
  let mirror: TestMirror;
  beforeEach(async () => {
    upstream = await startFakeUpstream();
  });
  afterEach(async () => {
    await mirror?.close();
    await upstream.close();
  });

  async function pull(name: string, tag: string, img: ReturnType<typeof seedImage>): Promise<void> {
    const m = await request(mirror.url).get(`/v2/${name}/manifests/${tag}`).set('Accept', ACCEPT);
    expect(m.status).toBe(200);
    expect(m.headers['docker-content-digest']).toBe(img.manifest);
    for (const d of [img.config, ...img.layers]) {
      const b = await request(mirror.url).get(`/v2/${name}/blobs/${d}`);
      expect(b.status).toBe(200);
    }
  }

  test('the cache stays under the cap; the most recent image is served with the upstream down', async () => {
    mirror = await startMirror(upstream.url, { proxyYaml: 'maxsize: 70KB' });
    const images = ['a', 'b', 'c', 'd'].map((n) => ({ name: `team/${n}`, img: seedImage(upstream, `team/${n}`, 'v1', [randomBytes(30_000)]) }));
    for (const { name, img } of images) {
      await pull(name, 'v1', img);
      await until(() => diskBytes(mirror.root) <= 70_000, 'the cap');
    }
    const last = images[3]!;
    expect(existsSync(dataPath(mirror.root, images[0]!.img.layers[0]!))).toBe(false);
    expect(mirror.logs()).toMatch(/msg="evicted" .*maxsize\.bytes=70000 type=manifest vars\.digest=sha256:\w+ vars\.name=team\/a/);
    upstream.setDown(true);
    await pull(last.name, 'v1', last.img);
    const metrics = await mirror.registry.metrics.registry.getSingleMetricAsString('registry_mirror_evictions_total');
    expect(metrics).toMatch(/registry_mirror_evictions_total\{type="manifest"\} [1-9]/);
  });

  test('a cache hit makes content recent: the image pulled again survives, the other goes', async () => {
    mirror = await startMirror(upstream.url, { proxyYaml: 'maxsize: 70KB' });
    const a = seedImage(upstream, 'team/a', 'v1', [randomBytes(30_000)]);
    const b = seedImage(upstream, 'team/b', 'v1', [randomBytes(30_000)]);
    const c = seedImage(upstream, 'team/c', 'v1', [randomBytes(30_000)]);
    await pull('team/a', 'v1', a);
    await pull('team/b', 'v1', b);
    await pull('team/a', 'v1', a);
    await pull('team/c', 'v1', c);
    await until(() => diskBytes(mirror.root) <= 70_000, 'the cap');
    expect(existsSync(dataPath(mirror.root, b.layers[0]!))).toBe(false);
    expect(existsSync(dataPath(mirror.root, a.layers[0]!))).toBe(true);
    upstream.setDown(true);
    await pull('team/a', 'v1', a);
    await pull('team/c', 'v1', c);
  });

  test('a layer shared with a recently pulled image stays when the older image is evicted', async () => {
    mirror = await startMirror(upstream.url, { proxyYaml: 'maxsize: 100KB' });
    const shared = randomBytes(40_000);
    const old = seedImage(upstream, 'team/old', 'v1', [shared, randomBytes(20_000)]);
    const recent = seedImage(upstream, 'team/recent', 'v1', [shared, randomBytes(10_000)]);
    const next = seedImage(upstream, 'team/next', 'v1', [randomBytes(30_000)]);
    await pull('team/old', 'v1', old);
    await pull('team/recent', 'v1', recent);
    await pull('team/next', 'v1', next);
    await until(() => diskBytes(mirror.root) <= 100_000, 'the cap');
    expect(existsSync(dataPath(mirror.root, old.layers[1]!))).toBe(false);
    expect(existsSync(dataPath(mirror.root, old.layers[0]!))).toBe(true);
    upstream.setDown(true);
    await pull('team/recent', 'v1', recent);
    await pull('team/next', 'v1', next);
  });

  test('evicting an image keeps a layer another cached manifest of the repository references as a schema 1 fsLayer', async () => {
    mirror = await startMirror(upstream.url, { proxyYaml: 'maxsize: 70KB' });
    const shared = randomBytes(30_000);
    const image = seedImage(upstream, 'team/x', 'v2', [shared]);
    const schema1 = {
      schemaVersion: 1,
      name: 'team/x',
      tag: 'v1',
      architecture: 'amd64',
      fsLayers: [{ blobSum: image.layers[0] }],
      history: [{ v1Compatibility: '{}' }],
    };
    const v1 = upstream.addManifest('team/x', schema1, 'v1', 'application/vnd.docker.distribution.manifest.v1+json');
    const pullV1 = async (): Promise<void> => {
      const m = await request(mirror.url).get('/v2/team/x/manifests/v1').set('Accept', 'application/vnd.docker.distribution.manifest.v1+json');
      expect(m.status).toBe(200);
      expect(m.headers['docker-content-digest']).toBe(v1);
      expect((await request(mirror.url).get(`/v2/team/x/blobs/${image.layers[0]}`)).status).toBe(200);
    };
    await pull('team/x', 'v2', image);
    const b = seedImage(upstream, 'team/b', 'v1', [randomBytes(30_000)]);
    await pull('team/b', 'v1', b);
    // The schema 1 manifest is more recent than the image and team/b: the image goes first.
    await pullV1();
    await pull('team/c', 'v1', seedImage(upstream, 'team/c', 'v1', [randomBytes(30_000)]));
    await until(() => diskBytes(mirror.root) <= 70_000, 'the cap');
    expect(mirror.logs()).toMatch(new RegExp(`msg="evicted" .*type=manifest vars\\.digest=${image.manifest} vars\\.name=team/x`));
    expect(existsSync(dataPath(mirror.root, image.layers[0]!))).toBe(true);
    upstream.setDown(true);
    await pullV1();
  });

  test('at start-up, a cache over a lowered cap is brought under it', async () => {
    mirror = await startMirror(upstream.url);
    const root = mirror.root;
    for (const n of ['a', 'b', 'c']) await pull(`team/${n}`, 'v1', seedImage(upstream, `team/${n}`, 'v1', [randomBytes(30_000)]));
    await mirror.close({ keepRoot: true });
    expect(diskBytes(root)).toBeGreaterThan(90_000);
    mirror = await startMirror(upstream.url, { root, proxyYaml: 'maxsize: 50KB' });
    // The measure runs in the background (start-up never waits for a walk of the cache).
    await until(() => diskBytes(root) <= 50_000, 'the cache under its lowered cap');
    expect(mirror.logs()).toMatch(/msg="size cap: cache measured" cached\.bytes=\d+ maxsize\.bytes=50000/);
  });

  test('the most recent image is kept whole even when it alone is over the cap, with one warning', async () => {
    mirror = await startMirror(upstream.url, { proxyYaml: 'maxsize: 50KB' });
    const small = seedImage(upstream, 'team/small', 'v1', [randomBytes(10_000)]);
    const big = seedImage(upstream, 'team/big', 'v1', [randomBytes(40_000), randomBytes(20_000)]);
    await pull('team/small', 'v1', small);
    await pull('team/big', 'v1', big);
    await until(() => !existsSync(dataPath(mirror.root, small.layers[0]!)), 'eviction of the older image');
    for (const d of big.layers) expect(existsSync(dataPath(mirror.root, d))).toBe(true);
    upstream.setDown(true);
    await pull('team/big', 'v1', big);
    expect(
      mirror.logs().match(/msg="the most recently pulled image alone is over proxy.maxsize: it is kept" cached\.bytes=\d+ maxsize\.bytes=\d+/g),
    ).toHaveLength(1);
  });

  test('sizes in configuration, and touchonhit', () => {
    expect(tryParseSize('50GiB')).toBe(50 * 1024 ** 3);
    expect(tryParseSize('500MB')).toBe(500e6);
    expect(tryParseSize('1.5g')).toBe(1.5 * 1024 ** 3);
    expect(tryParseSize(1024)).toBe(1024);
    expect(tryParseSize('10 KiB')).toBe(10_240);
    expect(tryParseSize('lots')).toBeUndefined();
    expect(tryParseSize('-5MB')).toBeUndefined();
    expect(tryParseSize('5PB')).toBeUndefined();
    const load = (yaml: string) => loadConfig({ text: `proxy:\n  remoteurl: http://u\n${yaml}`, env: {} }).config.proxy;
    expect(load('  maxsize: 2GB\n')?.maxsizebytes).toBe(2e9);
    expect(load('')?.maxsizebytes).toBeUndefined();
    expect(load('  maxsize: 0\n')?.maxsizebytes).toBeUndefined();
    expect(load('')?.touchonhit).toBe(true);
    expect(load('  touchonhit: false\n')?.touchonhit).toBe(false);
    expect(() => load('  maxsize: huge\n')).toThrow('proxy.maxsize: "huge" is not a size like 50GiB or 500MB');
  });
});
