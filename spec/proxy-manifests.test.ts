/**
 * Manifests through the pull-through cache: verified before they are stored, a cold tag fetched
 * with one GET, a cached tag checked with one upstream HEAD, the cache answering when the upstream is down or rate-limits, but never for a tag
 * the upstream says is gone.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import request from 'supertest';
import { seedImage, type FakeUpstream } from './helpers/fake-upstream.js';
import { type TestMirror } from './helpers/mirror.js';
import { closeBoth, mirrorOfFakeUpstream } from './helpers/mirror-of-fake-upstream.js';
import { sha256 } from './helpers/digest.js';

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
const DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json';
const sha = sha256;

describe('manifests through the mirror', () => {
  let upstream: FakeUpstream;
  let mirror: TestMirror;

  beforeEach(async () => ({ upstream, mirror } = await mirrorOfFakeUpstream()));
  afterEach(() => closeBoth({ upstream, mirror }));

  const get = (path: string, accept = `${OCI_INDEX}, ${OCI_MANIFEST}, ${DOCKER_MANIFEST}`) =>
    request(mirror.url)
      .get(path)
      .set('Accept', accept)
      .buffer(true)
      .parse((res, cb) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => cb(null, Buffer.concat(chunks)));
      });

  test('by tag: one GET and no HEAD when cold, one HEAD and no GET when warm', async () => {
    const img = seedImage(upstream, 'library/busybox', 'latest', [randomBytes(100)]);
    const first = await get('/v2/library/busybox/manifests/latest');
    expect(first.status).toBe(200);
    expect((first.body as Buffer).equals(img.manifestBody)).toBe(true);
    expect(first.headers['docker-content-digest']).toBe(img.manifest);
    expect(first.headers['content-type']).toBe(OCI_MANIFEST);
    expect(first.headers['content-length']).toBe(String(img.manifestBody.length));
    expect(first.headers.etag).toBe(`"${img.manifest}"`);
    // Nothing cached to compare with: a HEAD first would only cost a round trip.
    expect(upstream.count(/^HEAD \/v2\/library\/busybox\/manifests\//)).toBe(0);
    expect(upstream.count(/^GET \/v2\/library\/busybox\/manifests\//)).toBe(1);

    const tagLink = join(mirror.root, 'docker/registry/v2/repositories/library/busybox/_manifests/tags/latest/current/link');
    expect(readFileSync(tagLink, 'utf8')).toBe(img.manifest);

    const second = await get('/v2/library/busybox/manifests/latest');
    expect((second.body as Buffer).equals(img.manifestBody)).toBe(true);
    expect(upstream.count(/^HEAD \/v2\/library\/busybox\/manifests\/latest$/)).toBe(1);
    expect(upstream.count(/^GET \/v2\/library\/busybox\/manifests\//)).toBe(1);
  });

  test('an image manifest from the upstream has its config fetched before the client asks for it', async () => {
    const img = seedImage(upstream, 'library/busybox', 'latest', [randomBytes(100)]);
    await get('/v2/library/busybox/manifests/latest').expect(200);
    // Stored and linked into the repository, with no client request for it.
    const configLink = join(mirror.root, 'docker/registry/v2/repositories/library/busybox/_layers/sha256', img.config.slice(7), 'link');
    for (let i = 0; i < 100 && !existsSync(configLink); i++) await new Promise((r) => setTimeout(r, 20));
    expect(existsSync(configLink)).toBe(true);
    const configRequests = (): number => upstream.count(new RegExp(`^GET /v2/library/busybox/blobs/${img.config}$`));
    expect(configRequests()).toBe(1);
    const config = await request(mirror.url)
      .get(`/v2/library/busybox/blobs/${img.config}`)
      .buffer(true)
      .parse((res, cb) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => cb(null, Buffer.concat(chunks)));
      });
    expect(config.status).toBe(200);
    expect(sha(config.body as Buffer)).toBe(img.config);
    expect(configRequests()).toBe(1);
    // Nothing is fetched ahead for a manifest served from the cache, nor are the layers.
    await get('/v2/library/busybox/manifests/latest').expect(200);
    expect(upstream.count(/\/blobs\//)).toBe(1);
  });

  test('by digest: served from the cache once stored, without asking the upstream', async () => {
    const img = seedImage(upstream, 'library/busybox', 'latest', [randomBytes(100)]);
    await get(`/v2/library/busybox/manifests/${img.manifest}`).expect(200);
    // (The config blob is fetched ahead of the client meanwhile: only manifest requests count.)
    const manifestRequests = (): number => upstream.count(/\/manifests\//);
    const before = manifestRequests();
    const again = await get(`/v2/library/busybox/manifests/${img.manifest}`);
    expect(again.status).toBe(200);
    expect(manifestRequests()).toBe(before);
  });

  test('HEAD answers the same headers without a body', async () => {
    const img = seedImage(upstream, 'library/busybox', 'latest', [randomBytes(100)]);
    const res = await request(mirror.url).head('/v2/library/busybox/manifests/latest').set('Accept', OCI_MANIFEST);
    expect(res.status).toBe(200);
    expect(res.headers['docker-content-digest']).toBe(img.manifest);
    expect(res.headers['content-length']).toBe(String(img.manifestBody.length));
  });

  test('a tag that moved upstream is fetched again and the tag link follows it', async () => {
    seedImage(upstream, 'library/busybox', 'latest', [randomBytes(100)]);
    await get('/v2/library/busybox/manifests/latest').expect(200);
    const moved = seedImage(upstream, 'library/busybox', 'latest', [randomBytes(200)]);
    const res = await get('/v2/library/busybox/manifests/latest');
    expect(res.headers['docker-content-digest']).toBe(moved.manifest);
    const tagLink = join(mirror.root, 'docker/registry/v2/repositories/library/busybox/_manifests/tags/latest/current/link');
    expect(readFileSync(tagLink, 'utf8')).toBe(moved.manifest);
  });

  test('with the upstream down, cached tags and digests are still served', async () => {
    const img = seedImage(upstream, 'library/busybox', 'latest', [randomBytes(100)]);
    await get('/v2/library/busybox/manifests/latest').expect(200);
    upstream.setDown(true);
    const byTag = await get('/v2/library/busybox/manifests/latest');
    expect(byTag.status).toBe(200);
    expect(byTag.headers['docker-content-digest']).toBe(img.manifest);
    const byDigest = await get(`/v2/library/busybox/manifests/${img.manifest}`);
    expect(byDigest.status).toBe(200);
    const uncached = await get('/v2/library/other/manifests/latest');
    expect(uncached.status).toBe(503);
    expect(uncached.body.toString()).toContain('UNAVAILABLE');
  });

  test('an upstream 429 serves the cache, and is passed on with Retry-After for uncached content', async () => {
    seedImage(upstream, 'library/busybox', 'latest', [randomBytes(100)]);
    await get('/v2/library/busybox/manifests/latest').expect(200);
    // The HEAD of a cached tag and the GET of an uncached one both rate-limited.
    upstream.fault(/^(HEAD|GET) \/v2\/library\/\w+\/manifests\//, { kind: 'status', status: 429, headers: { 'retry-after': '30' } });
    await get('/v2/library/busybox/manifests/latest').expect(200);
    seedImage(upstream, 'library/alpine', 'latest', [randomBytes(100)]);
    const limited = await get('/v2/library/alpine/manifests/latest');
    expect(limited.status).toBe(429);
    expect(limited.headers['retry-after']).toBe('30');
    expect(JSON.parse(limited.body.toString()).errors[0].code).toBe('TOOMANYREQUESTS');
  });

  test('a tag the upstream deleted is MANIFEST_UNKNOWN even though it is cached', async () => {
    seedImage(upstream, 'library/busybox', 'latest', [randomBytes(100)]);
    await get('/v2/library/busybox/manifests/latest').expect(200);
    upstream.setTag('library/busybox', 'latest', undefined);
    const res = await get('/v2/library/busybox/manifests/latest');
    expect(res.status).toBe(404);
    expect(JSON.parse(res.body.toString()).errors[0].code).toBe('MANIFEST_UNKNOWN');
  });

  test('wrong bytes for a digest are refused and nothing is stored', async () => {
    const img = seedImage(upstream, 'library/busybox', 'latest', [randomBytes(100)]);
    upstream.fault(/^GET \/v2\/library\/busybox\/manifests\//, { kind: 'wrong-bytes' }, 1);
    const res = await get(`/v2/library/busybox/manifests/${img.manifest}`);
    expect(res.status).toBe(503);
    const hex = img.manifest.slice(7);
    expect(existsSync(join(mirror.root, 'docker/registry/v2/blobs/sha256', hex.slice(0, 2), hex, 'data'))).toBe(false);
    expect(existsSync(join(mirror.root, 'docker/registry/v2/repositories/library/busybox/_manifests/revisions/sha256', hex, 'link'))).toBe(false);
    await get(`/v2/library/busybox/manifests/${img.manifest}`).expect(200);
  });

  test('concurrent checks of one tag share one upstream HEAD', async () => {
    seedImage(upstream, 'library/busybox', 'latest', [randomBytes(100)]);
    await get('/v2/library/busybox/manifests/latest').expect(200);
    upstream.fault(/^HEAD /, { kind: 'delay', ms: 300 }, 1);
    const results = await Promise.all(Array.from({ length: 10 }, () => get('/v2/library/busybox/manifests/latest')));
    for (const r of results) expect(r.status).toBe(200);
    expect(upstream.count(/^HEAD \/v2\/library\/busybox\/manifests\//)).toBe(1);
  });

  test('an index is narrowed to linux/amd64 for a client that accepts only image manifests', async () => {
    const amd = seedImage(upstream, 'library/multi', 'amd', [randomBytes(100)]);
    const arm = seedImage(upstream, 'library/multi', 'arm', [randomBytes(100)]);
    const index = {
      schemaVersion: 2,
      mediaType: OCI_INDEX,
      manifests: [
        { mediaType: OCI_MANIFEST, digest: arm.manifest, size: arm.manifestBody.length, platform: { os: 'linux', architecture: 'arm64' } },
        { mediaType: OCI_MANIFEST, digest: amd.manifest, size: amd.manifestBody.length, platform: { os: 'linux', architecture: 'amd64' } },
      ],
    };
    const indexDigest = upstream.addManifest('library/multi', index, 'latest');
    const full = await get('/v2/library/multi/manifests/latest');
    expect(full.headers['docker-content-digest']).toBe(indexDigest);
    const narrowed = await get('/v2/library/multi/manifests/latest', OCI_MANIFEST);
    expect(narrowed.status).toBe(200);
    expect(narrowed.headers['docker-content-digest']).toBe(amd.manifest);
    const refused = await get(`/v2/library/multi/manifests/${amd.manifest}`, DOCKER_MANIFEST);
    expect(refused.status).toBe(404);
  });

  test('a manifest whose HEAD has no digest header is resolved with one GET', async () => {
    const img = seedImage(upstream, 'library/busybox', 'latest', [randomBytes(100)]);
    upstream.fault(/^HEAD /, { kind: 'no-digest-header' }, 1);
    const res = await get('/v2/library/busybox/manifests/latest');
    expect(res.status).toBe(200);
    expect(res.headers['docker-content-digest']).toBe(img.manifest);
    expect(sha(res.body as Buffer)).toBe(img.manifest);
  });

  test('an oversized upstream manifest is refused, not buffered', async () => {
    const huge = Buffer.alloc(5 * 1024 * 1024, 0x20);
    huge.write('{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{}}');
    const digest = upstream.addManifest('library/huge', huge, 'latest', OCI_MANIFEST);
    const res = await get(`/v2/library/huge/manifests/${digest}`);
    expect(res.status).toBe(503);
    expect(res.body.toString()).toMatch(/"code":"UNAVAILABLE"/);
    expect(existsSync(join(mirror.root, 'docker/registry/v2/repositories/library/huge'))).toBe(false);
  });

  test('an endless upstream manifest body (no Content-Length) is cut at 4 MiB: 503, nothing stored, the next request retries', async () => {
    const img = seedImage(upstream, 'library/endless', 'latest', [randomBytes(100)]);
    upstream.fault(/^GET \/v2\/library\/endless\/manifests\//, { kind: 'endless' }, 1);
    const res = await get(`/v2/library/endless/manifests/${img.manifest}`);
    expect(res.status).toBe(503);
    expect(existsSync(join(mirror.root, 'docker/registry/v2/repositories/library/endless'))).toBe(false);
    const again = await get(`/v2/library/endless/manifests/${img.manifest}`);
    expect(again.status).toBe(200);
    expect((again.body as Buffer).equals(img.manifestBody)).toBe(true);
  });

  test('an upstream 500 for an uncached manifest is 503 UNAVAILABLE, and nothing is stored', async () => {
    const img = seedImage(upstream, 'library/flaky', 'latest', [randomBytes(100)]);
    upstream.fault(/^(HEAD|GET) \/v2\/library\/flaky\/manifests\//, { kind: 'status', status: 500 }, 1);
    const res = await get('/v2/library/flaky/manifests/latest');
    expect(res.status).toBe(503);
    expect(res.body.toString()).toMatch(/"code":"UNAVAILABLE"/);
    expect(existsSync(join(mirror.root, 'docker/registry/v2/repositories/library/flaky'))).toBe(false);
    const retried = await get('/v2/library/flaky/manifests/latest');
    expect(retried.status).toBe(200);
    expect(retried.headers['docker-content-digest']).toBe(img.manifest);
  });

  test('a connection reset mid-body is logged with the path it failed on', async () => {
    const img = seedImage(upstream, 'library/reset', 'latest', [randomBytes(100)]);
    upstream.fault(/^GET \/v2\/library\/reset\/manifests\//, { kind: 'reset-after', bytes: 10 }, 1);
    const res = await get(`/v2/library/reset/manifests/${img.manifest}`);
    expect(res.status).toBe(503);
    expect(mirror.logs()).toContain(`upstream GET /v2/library/reset/manifests/${img.manifest} failed:`);
    expect(mirror.logs()).not.toMatch(/upstream GET {2}failed/);
  });
});
