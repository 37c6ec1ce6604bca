/**
 * Several registries behind one mirror (extension `proxy.upstreams`): chosen by containerd's
 * `?ns=` parameter or a path prefix, cached under separate repository prefixes so that their content
 * never mixes; and immutable tags (extension `proxy.immutabletags`) served with no upstream request.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import request from 'supertest';
import { startFakeUpstream, seedImage, type FakeUpstream } from './helpers/fake-upstream.js';
import { startMirror, type TestMirror } from './helpers/mirror.js';
import { ProxyNamespace } from '../lib/proxy/namespace.js';
import { NamespaceRouter } from '../lib/services/serving.js';
import { FilesystemDriver } from '../lib/storage/filesystem.js';

const ACCEPT = 'application/vnd.oci.image.manifest.v1+json';
const REPOS = 'docker/registry/v2/repositories';

describe('several upstreams behind one mirror', () => {
  let hub: FakeUpstream;
  let ghcr: FakeUpstream;
  let mirror: TestMirror;

  beforeEach(async () => {
    hub = await startFakeUpstream();
    ghcr = await startFakeUpstream();
    mirror = await startMirror(hub.url, {
      proxyYaml: ['ttl: 168h', 'upstreams:', '  ghcr.io:', `    remoteurl: ${ghcr.url}`, '    ttl: 1h'].join('\n'),
    });
  });
  afterEach(async () => {
    await mirror.close();
    await Promise.all([hub.close(), ghcr.close()]);
  });

  const manifest = (path: string) => request(mirror.url).get(path).set('Accept', ACCEPT);

  test('?ns=ghcr.io reaches the ghcr.io upstream only, and is cached under ghcr.io/', async () => {
    const img = seedImage(ghcr, 'org/app', 'v1', [randomBytes(300)]);
    const res = await manifest('/v2/org/app/manifests/v1?ns=ghcr.io').expect(200);
    expect(res.headers['docker-content-digest']).toBe(img.manifest);
    const blob = await request(mirror.url).get(`/v2/org/app/blobs/${img.layers[0]}?ns=ghcr.io`).expect(200);
    expect(blob.body.length).toBe(300);
    expect(ghcr.count(/^GET \/v2\/org\/app\/manifests\//)).toBe(1);
    expect(hub.hits).toEqual([]);
    expect(existsSync(join(mirror.root, REPOS, 'ghcr.io/org/app/_manifests/tags/v1/current/link'))).toBe(true);
    expect(existsSync(join(mirror.root, REPOS, 'ghcr.io/org/app/_layers/sha256', img.layers[0]!.slice(7), 'link'))).toBe(true);
    expect(existsSync(join(mirror.root, REPOS, 'org/app'))).toBe(false);
  });

  test('a path prefix selects the same upstream and the same cache as ?ns=', async () => {
    const img = seedImage(ghcr, 'org/app', 'v1', [randomBytes(300)]);
    await manifest('/v2/org/app/manifests/v1?ns=ghcr.io').expect(200);
    await request(mirror.url).get(`/v2/org/app/blobs/${img.layers[0]}?ns=ghcr.io`).expect(200);
    const byPrefix = await manifest('/v2/ghcr.io/org/app/manifests/v1').expect(200);
    expect(byPrefix.headers['docker-content-digest']).toBe(img.manifest);
    await request(mirror.url).get(`/v2/ghcr.io/org/app/blobs/${img.layers[0]}`).expect(200);
    // Once each: the manifest, the layer (the config was fetched ahead of the client, once).
    expect(ghcr.count(/^GET \/v2\/org\/app\/manifests\//)).toBe(1);
    expect(ghcr.count(new RegExp(`^GET /v2/org/app/blobs/${img.layers[0]}$`))).toBe(1);
    const tags = await request(mirror.url).get('/v2/ghcr.io/org/app/tags/list').expect(200);
    expect(tags.body).toEqual({ name: 'ghcr.io/org/app', tags: ['v1'] });
    const catalog = await request(mirror.url).get('/v2/_catalog').expect(200);
    expect(catalog.body.repositories).toEqual(['ghcr.io/org/app']);
    expect(hub.hits).toEqual([]);
  });

  test('the same name on two upstreams: two images, never mixed', async () => {
    const fromHub = seedImage(hub, 'org/app', 'v1', [randomBytes(100)]);
    const fromGhcr = seedImage(ghcr, 'org/app', 'v1', [randomBytes(100)]);
    expect((await manifest('/v2/org/app/manifests/v1').expect(200)).headers['docker-content-digest']).toBe(fromHub.manifest);
    expect((await manifest('/v2/org/app/manifests/v1?ns=ghcr.io').expect(200)).headers['docker-content-digest']).toBe(fromGhcr.manifest);
    await request(mirror.url).get(`/v2/org/app/blobs/${fromHub.layers[0]}`).expect(200);
    // A blob cached for the Hub image is not served for the ghcr.io name the upstream does not know.
    const crossed = await request(mirror.url).get(`/v2/org/app/blobs/${fromHub.layers[0]}?ns=ghcr.io`);
    expect(crossed.status).toBe(404);
    expect(crossed.body.errors[0].code).toBe('BLOB_UNKNOWN');
    expect(existsSync(join(mirror.root, REPOS, 'ghcr.io/org/app/_layers/sha256', fromHub.layers[0]!.slice(7)))).toBe(false);
  });

  test('?ns= naming the default registry or nothing goes to proxy.remoteurl; an unknown registry is NAME_UNKNOWN with no upstream request', async () => {
    const img = seedImage(hub, 'library/busybox', 'latest', [randomBytes(100)]);
    const hubHost = new URL(hub.url).host;
    expect((await manifest(`/v2/library/busybox/manifests/latest?ns=${hubHost}`).expect(200)).headers['docker-content-digest']).toBe(img.manifest);
    // proxy.remoteurl stands for Docker Hub (often another Hub mirror): containerd names it docker.io.
    expect((await manifest('/v2/library/busybox/manifests/latest?ns=docker.io').expect(200)).headers['docker-content-digest']).toBe(img.manifest);
    const unknown = await manifest('/v2/library/busybox/manifests/latest?ns=quay.io');
    expect(unknown.status).toBe(404);
    expect(unknown.body.errors[0].code).toBe('NAME_UNKNOWN');
    const doubled = await manifest('/v2/library/busybox/manifests/latest?ns=quay.io&ns=ghcr.io');
    expect(doubled.status).toBe(404);
    expect(ghcr.hits).toEqual([]);
    // A GET for the cold tag, a HEAD for the cached one.
    expect(hub.count(/manifests/)).toBe(2);
  });

  test('each upstream has its own TTL in scheduler-state.json', async () => {
    const a = seedImage(hub, 'library/busybox', 'latest', [randomBytes(100)]);
    const b = seedImage(ghcr, 'org/app', 'v1', [randomBytes(100)]);
    await manifest('/v2/library/busybox/manifests/latest').expect(200);
    await manifest('/v2/org/app/manifests/v1?ns=ghcr.io').expect(200);
    const started = Date.now();
    await mirror.close({ keepRoot: true });
    const state = JSON.parse(readFileSync(join(mirror.root, 'scheduler-state.json'), 'utf8')) as Record<string, { ExpiryData: string }>;
    const hours = (key: string) => (Date.parse(state[key]!.ExpiryData) - started) / 3600_000;
    expect(hours(`library/busybox@${a.manifest}`)).toBeCloseTo(168, 1);
    expect(hours(`ghcr.io/org/app@${b.manifest}`)).toBeCloseTo(1, 1);
    mirror = await startMirror(hub.url, { root: mirror.root });
  });
});

describe('with only proxy.remoteurl, distribution behaviour', () => {
  test('?ns= and host-like first components are ordinary: everything goes to the one upstream', async () => {
    const hub = await startFakeUpstream();
    const mirror = await startMirror(hub.url);
    try {
      const img = seedImage(hub, 'ghcr.io/org/app', 'v1', [randomBytes(100)]);
      const res = await request(mirror.url).get('/v2/ghcr.io/org/app/manifests/v1?ns=ghcr.io').set('Accept', ACCEPT).expect(200);
      expect(res.headers['docker-content-digest']).toBe(img.manifest);
      expect(existsSync(join(mirror.root, REPOS, 'ghcr.io/org/app/_manifests/tags/v1/current/link'))).toBe(true);
    } finally {
      await mirror.close();
      await hub.close();
    }
  });
});

describe('immutable tags', () => {
  test('a cached immutable tag is served with no upstream request; excluded tags are still checked', async () => {
    const hub = await startFakeUpstream();
    const mirror = await startMirror(hub.url, { proxyYaml: 'immutabletags:\n  exclude: ["^latest$"]' });
    try {
      const v1 = seedImage(hub, 'library/app', '1.0', [randomBytes(100)]);
      seedImage(hub, 'library/app', 'latest', [randomBytes(100)]);
      const get = (tag: string) => request(mirror.url).get(`/v2/library/app/manifests/${tag}`).set('Accept', ACCEPT).expect(200);
      await get('1.0');
      await get('latest');
      const before = hub.hits.length;
      // The upstream moves 1.0: an immutable tag keeps its cached digest, with no request at all.
      seedImage(hub, 'library/app', '1.0', [randomBytes(100)]);
      for (let i = 0; i < 3; i++) expect((await get('1.0')).headers['docker-content-digest']).toBe(v1.manifest);
      expect(hub.hits.length).toBe(before);
      await get('latest');
      expect(hub.count(/^HEAD \/v2\/library\/app\/manifests\/latest$/)).toBe(1);
      // Not yet cached: the first pull of an immutable tag asks the upstream.
      seedImage(hub, 'library/app', '2.0', [randomBytes(100)]);
      await get('2.0');
      expect(hub.count(/^GET \/v2\/library\/app\/manifests\/2\.0$/)).toBe(1);
    } finally {
      await mirror.close();
      await hub.close();
    }
  });
});

describe('Docker Hub semantics', () => {
  test('with Docker Hub as the upstream, busybox and library/busybox are one image, stored under library/busybox', async () => {
    const hub = new ProxyNamespace({
      host: 'docker.io',
      isDefault: true,
      config: { remoteurl: 'https://registry-1.docker.io', ttlms: 0, dockerhub: true },
      timeouts: { connect: 1000, response: 1000, idle: 1000 },
      maxConnections: 8,
      driver: new FilesystemDriver('/nonexistent'),
      blobs: undefined as never,
      repository: () => undefined as never,
      events: { stored: () => undefined, hit: () => undefined, miss: () => undefined, cacheWriteFailed: () => undefined },
    });
    const router = new NamespaceRouter(hub, []);
    for (const name of ['busybox', 'library/busybox']) {
      const resolved = router.resolve(name, undefined)!;
      expect(resolved.name).toBe('library/busybox');
      expect(resolved.namespace.storedName(resolved.name)).toBe('library/busybox');
    }
    expect(router.resolve('bitnami/redis', 'docker.io')!.name).toBe('bitnami/redis');
    await hub.close();
  });

  test('proxy.dockerhub: true makes another mirror of Docker Hub (not Docker Hub by hostname) answer busybox as library/busybox; auto and false do not', async () => {
    const central = await startFakeUpstream();
    const img = seedImage(central, 'library/busybox', 'latest', [randomBytes(100)]);
    const ask = async (proxyYaml: string | undefined, name: string): Promise<number> => {
      const mirror = await startMirror(central.url, { proxyYaml });
      try {
        const res = await request(mirror.url).get(`/v2/${name}/manifests/latest`).set('Accept', ACCEPT);
        if (res.status === 200) expect(res.headers['docker-content-digest']).toBe(img.manifest);
        return res.status;
      } finally {
        await mirror.close();
      }
    };
    try {
      expect(await ask('dockerhub: true', 'busybox')).toBe(200);
      expect(central.count(/^(GET|HEAD) \/v2\/busybox\//)).toBe(0);
      expect(await ask('dockerhub: true', 'library/busybox')).toBe(200);
      for (const setting of [undefined, 'dockerhub: auto', 'dockerhub: false']) {
        expect(await ask(setting, 'busybox')).toBe(404);
        expect(await ask(setting, 'library/busybox')).toBe(200);
      }
      expect(central.count(/^(GET|HEAD) \/v2\/busybox\/manifests\/latest$/)).toBeGreaterThanOrEqual(3);
    } finally {
      await central.close();
    }
  });

  test("Docker Hub's RateLimit headers are logged and exported; a 429 is passed on with Retry-After", async () => {
    const upstream = await startFakeUpstream();
    const mirror = await startMirror(upstream.url);
    try {
      upstream.fault(/^(HEAD|GET) \/v2\/library\/busybox\/manifests\/latest$/, {
        kind: 'status',
        status: 429,
        headers: { 'ratelimit-limit': '100;w=21600', 'ratelimit-remaining': '0;w=21600', 'retry-after': '3600' },
        body: '{"errors":[{"code":"TOOMANYREQUESTS","message":"You have reached your pull rate limit."}]}',
      });
      const res = await request(mirror.url).get('/v2/library/busybox/manifests/latest').set('Accept', ACCEPT);
      expect(res.status).toBe(429);
      expect(res.headers['retry-after']).toBe('3600');
      expect(res.body.errors[0].code).toBe('TOOMANYREQUESTS');
      expect(mirror.logs()).toMatch(/msg="upstream rate limit remaining" .*ratelimit\.remaining="0;w=21600"/);
      const gauge = await mirror.registry.metrics.rateLimitRemaining.get();
      expect(gauge.values[0]?.value).toBe(0);
    } finally {
      await mirror.close();
      await upstream.close();
    }
  });

  test('a malformed or empty RateLimit-Remaining is ignored: the gauge keeps the last real count, nothing is logged for it', async () => {
    const upstream = await startFakeUpstream();
    const mirror = await startMirror(upstream.url);
    try {
      // 404s (no rate limit hit, so every request still goes out), each with a remaining count.
      const counted = (remaining: string) => ({
        kind: 'status' as const,
        status: 404,
        headers: { 'ratelimit-limit': '100;w=21600', 'ratelimit-remaining': remaining },
        body: '{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}',
      });
      for (const [repo, remaining] of [
        ['a', '57;w=21600'],
        ['b', ''],
        ['c', 'many;w=21600'],
      ] as const) {
        upstream.fault(new RegExp(`^(HEAD|GET) /v2/library/${repo}/manifests/latest$`), counted(remaining));
        expect((await request(mirror.url).get(`/v2/library/${repo}/manifests/latest`).set('Accept', ACCEPT)).status).toBe(404);
      }
      const gauge = await mirror.registry.metrics.rateLimitRemaining.get();
      expect(gauge.values[0]?.value).toBe(57);
      expect(mirror.logs().match(/msg="upstream rate limit remaining"/g)).toHaveLength(1);
      expect(upstream.count(/^GET \/v2\/library\/[abc]\/manifests\/latest$/)).toBe(3);
    } finally {
      await mirror.close();
      await upstream.close();
    }
  });
});
