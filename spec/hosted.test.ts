/**
 * Hosted repositories (extension `proxy.hosted`): the push side of the API as distribution's
 * non-proxy mode, in its on-disk layout, beside an unchanged pull-through cache; hosted names never
 * reach the upstream.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import request from 'supertest';
import { startFakeUpstream, seedImage, type FakeUpstream } from './helpers/fake-upstream.js';
import { startMirror, type TestMirror } from './helpers/mirror.js';
import { loadConfig } from '../lib/config/load.js';
import { isHostedName } from '../lib/hosted/hosted.js';
import { packUploadState, unpackUploadState } from '../lib/hosted/upload-state.js';
import { OCI_INDEX, OCI_MANIFEST, pushBlob, pushManifest, pushSmallImage, sha256, smallImage } from './helpers/push.js';

const V2 = 'docker/registry/v2';
let upstream: FakeUpstream;
let mirror: TestMirror;

beforeAll(async () => {
  upstream = await startFakeUpstream();
  seedImage(upstream, 'library/busybox', 'latest', [randomBytes(300)]);
  mirror = await startMirror(upstream.url, { proxyYaml: 'hosted: [internal/, ci]\nhostedanonymouspush: true' });
});
afterAll(async () => {
  await mirror.close();
  await upstream.close();
});

const api = () => request(mirror.url);
const link = (repo: string, kind: string, digest: string): string =>
  readFileSync(join(mirror.root, V2, 'repositories', repo, kind, digest.replace(':', '/'), 'link'), 'utf8');
const blobData = (digest: string): string => join(mirror.root, V2, 'blobs/sha256', digest.slice(7, 9), digest.slice(7), 'data');

describe('blob uploads', () => {
  test("POST then monolithic PUT ?digest=: 201 with Location and digest; stored in distribution's layout", async () => {
    const content = randomBytes(5000);
    const start = await api().post('/v2/internal/app/blobs/uploads/');
    expect(start.status).toBe(202);
    const uuid = start.headers['docker-upload-uuid'];
    expect(uuid).toMatch(/^[0-9a-f-]{36}$/);
    expect(start.headers.location).toBe(`/v2/internal/app/blobs/uploads/${uuid}`);
    expect(start.headers.range).toBe('0-0');
    expect(start.headers['content-length']).toBe('0');
    const dir = join(mirror.root, V2, 'repositories/internal/app/_uploads', uuid);
    expect(readFileSync(join(dir, 'startedat'), 'utf8')).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    expect(readFileSync(join(dir, 'data')).length).toBe(0);
    const digest = sha256(content);
    const put = await api().put(`${start.headers.location}?digest=${digest}`).set('Content-Type', 'application/octet-stream').send(content);
    expect(put.status).toBe(201);
    expect(put.headers.location).toBe(`/v2/internal/app/blobs/${digest}`);
    expect(put.headers['docker-content-digest']).toBe(digest);
    expect(existsSync(dir)).toBe(false);
    expect(readFileSync(blobData(digest)).equals(content)).toBe(true);
    expect(link('internal/app', '_layers', digest)).toBe(digest);
    const got = await api()
      .get(`/v2/internal/app/blobs/${digest}`)
      .buffer(true)
      .parse((res, cb) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => cb(null, Buffer.concat(chunks)));
      });
    expect(got.status).toBe(200);
    expect((got.body as Buffer).equals(content)).toBe(true);
    const head = await api().head(`/v2/internal/app/blobs/${digest}`);
    expect(head.status).toBe(200);
    expect(head.headers['content-length']).toBe('5000');
    expect((await api().head(`/v2/internal/other/blobs/${digest}`)).status).toBe(404);
  });

  test('the one-request form POST ?digest= stores the blob (201)', async () => {
    const content = randomBytes(777);
    const digest = sha256(content);
    const res = await api().post(`/v2/ci/blobs/uploads/?digest=${digest}`).set('Content-Type', 'application/octet-stream').send(content);
    expect(res.status).toBe(201);
    expect(res.headers['docker-content-digest']).toBe(digest);
    expect((await api().head(`/v2/ci/blobs/${digest}`)).status).toBe(200);
    expect(readdirSync(join(mirror.root, V2, 'repositories/ci/_uploads'))).toEqual([]);
  });

  test('chunked PATCH with Content-Range, status GET, a wrong range (416) and resume, then PUT with the last chunk', async () => {
    const content = randomBytes(3000);
    const [a, b, c] = [content.subarray(0, 1000), content.subarray(1000, 2000), content.subarray(2000)];
    const start = await api().post('/v2/internal/chunked/blobs/uploads/');
    let location = start.headers.location as string;
    const first = await api().patch(location).set('Content-Type', 'application/octet-stream').set('Content-Range', '0-999').send(a);
    expect(first.status).toBe(202);
    expect(first.headers.range).toBe('0-999');
    expect(first.headers['docker-upload-uuid']).toBe(start.headers['docker-upload-uuid']);
    location = first.headers.location;
    const status = await api().get(location);
    expect(status.status).toBe(204);
    expect(status.headers.range).toBe('0-999');
    const wrong = await api().patch(location).set('Content-Type', 'application/octet-stream').set('Content-Range', '500-1499').send(b);
    expect(wrong.status).toBe(416);
    expect(wrong.body.errors[0].code).toBe('RANGE_INVALID');
    expect(wrong.headers.range).toBe('0-999');
    const badLength = await api().patch(location).set('Content-Range', '1000-1998').send(b);
    expect(badLength.status).toBe(400);
    expect(badLength.body.errors[0].code).toBe('SIZE_INVALID');
    expect((await api().get(location)).headers.range).toBe('0-999');
    const second = await api().patch(location).set('Content-Range', '1000-1999').send(b);
    expect(second.status).toBe(202);
    expect(second.headers.range).toBe('0-1999');
    const digest = sha256(content);
    const put = await api().put(`${second.headers.location}?digest=${digest}`).send(c);
    expect(put.status).toBe(201);
    expect(readFileSync(blobData(digest)).equals(content)).toBe(true);
  });

  test("a chunked upload without Content-Range (docker's streaming PATCH) and an empty final PUT", async () => {
    const content = randomBytes(4096);
    const start = await api().post('/v2/internal/stream/blobs/uploads/');
    const patch = await api().patch(start.headers.location).send(content);
    expect(patch.status).toBe(202);
    expect(patch.headers.range).toBe('0-4095');
    const put = await api().put(`${patch.headers.location}?digest=${sha256(content)}`);
    expect(put.status).toBe(201);
  });

  test('a wrong digest is DIGEST_INVALID and ends the upload; a missing digest is DIGEST_INVALID and keeps it', async () => {
    const start = await api().post('/v2/internal/bad/blobs/uploads/');
    const missing = await api().put(start.headers.location).send(Buffer.from('abc'));
    expect(missing.status).toBe(400);
    expect(missing.body.errors[0]).toMatchObject({ code: 'DIGEST_INVALID', detail: 'digest missing' });
    const wrong = await api()
      .put(`${start.headers.location}?digest=${sha256(Buffer.from('other'))}`)
      .send(Buffer.from('abc'));
    expect(wrong.status).toBe(400);
    expect(wrong.body.errors[0].code).toBe('DIGEST_INVALID');
    const gone = await api().get(start.headers.location);
    expect(gone.status).toBe(404);
    expect(gone.body.errors[0].code).toBe('BLOB_UPLOAD_UNKNOWN');
  });

  test('DELETE cancels an upload (204); unknown uploads are BLOB_UPLOAD_UNKNOWN', async () => {
    const start = await api().post('/v2/internal/cancel/blobs/uploads/');
    const del = await api().delete(start.headers.location);
    expect(del.status).toBe(204);
    expect(del.headers['docker-upload-uuid']).toBe(start.headers['docker-upload-uuid']);
    for (const res of [
      await api().get(start.headers.location),
      await api().patch(start.headers.location).send('x'),
      await api().get('/v2/internal/cancel/blobs/uploads/not-a-uuid'),
    ]) {
      expect(res.status).toBe(404);
      expect(res.body.errors[0].code).toBe('BLOB_UPLOAD_UNKNOWN');
    }
  });

  test('mounts from a hosted repository and from the cache; an unknown blob falls back to an upload', async () => {
    const content = randomBytes(1234);
    const digest = await pushBlob(mirror.url, 'internal/source', content);
    const mount = await api().post(`/v2/internal/target/blobs/uploads/?mount=${digest}&from=internal/source`);
    expect(mount.status).toBe(201);
    expect(mount.headers.location).toBe(`/v2/internal/target/blobs/${digest}`);
    expect(mount.headers['docker-content-digest']).toBe(digest);
    expect(link('internal/target', '_layers', digest)).toBe(digest);
    // A proxied repository's cached blob.
    const cached = await api().get('/v2/library/busybox/manifests/latest').set('Accept', OCI_MANIFEST);
    const layer = JSON.parse(cached.text).layers[0].digest as string;
    await api().get(`/v2/library/busybox/blobs/${layer}`).expect(200);
    const fromCache = await api().post(`/v2/internal/target/blobs/uploads/?mount=${layer}&from=library/busybox`);
    expect(fromCache.status).toBe(201);
    const unknown = await api().post(`/v2/internal/target/blobs/uploads/?mount=${sha256(Buffer.from('nope'))}&from=internal/source`);
    expect(unknown.status).toBe(202);
    expect(unknown.headers['docker-upload-uuid']).toBeDefined();
  });
});

describe('manifests', () => {
  test('PUT by tag: 201 with Location and digest; GET/HEAD by tag and digest; tags/list', async () => {
    const image = smallImage('tagged');
    const put = await pushSmallImage(mirror.url, 'internal/app', '1.0', image);
    expect(put.status).toBe(201);
    expect(put.headers['docker-content-digest']).toBe(image.digest);
    expect(put.headers.location).toBe(`/v2/internal/app/manifests/${image.digest}`);
    expect(link('internal/app', '_manifests/revisions', image.digest)).toBe(image.digest);
    expect(readFileSync(join(mirror.root, V2, 'repositories/internal/app/_manifests/tags/1.0/current/link'), 'utf8')).toBe(image.digest);
    expect(link('internal/app', '_manifests/tags/1.0/index', image.digest)).toBe(image.digest);
    for (const ref of ['1.0', image.digest]) {
      const got = await api().get(`/v2/internal/app/manifests/${ref}`).set('Accept', OCI_MANIFEST);
      expect(got.status).toBe(200);
      expect(got.headers['content-type']).toBe(OCI_MANIFEST);
      expect(got.headers['docker-content-digest']).toBe(image.digest);
      expect(Buffer.from(got.text).equals(image.manifest)).toBe(true);
    }
    expect((await api().head('/v2/internal/app/manifests/1.0')).status).toBe(200);
    const second = smallImage('tagged', { annotations: { v: '2' } });
    expect((await pushManifest(mirror.url, 'internal/app', second.digest, second.manifest)).status).toBe(201);
    expect((await api().get('/v2/internal/app/tags/list')).body).toEqual({ name: 'internal/app', tags: ['1.0'] });
    expect((await api().get('/v2/internal/app/manifests/2.0')).body.errors[0].code).toBe('MANIFEST_UNKNOWN');
    expect((await api().get('/v2/internal/nothing/tags/list')).body.errors[0].code).toBe('NAME_UNKNOWN');
  });

  test('missing blobs or child manifests are MANIFEST_BLOB_UNKNOWN; bad payloads MANIFEST_INVALID or DIGEST_INVALID', async () => {
    const image = smallImage('missing');
    await pushBlob(mirror.url, 'internal/missing', image.config);
    const res = await pushManifest(mirror.url, 'internal/missing', 'latest', image.manifest);
    expect(res.status).toBe(400);
    expect(res.body.errors[0]).toEqual({ code: 'MANIFEST_BLOB_UNKNOWN', message: 'blob unknown to registry', detail: sha256(image.layers[0]!) });
    // Blobs of another repository do not count.
    await pushSmallImage(mirror.url, 'internal/elsewhere', 'x', image);
    expect((await pushManifest(mirror.url, 'internal/missing', 'latest', image.manifest)).status).toBe(400);
    const index = { schemaVersion: 2, mediaType: OCI_INDEX, manifests: [{ mediaType: OCI_MANIFEST, digest: image.digest, size: image.manifest.length }] };
    const idx = await pushManifest(mirror.url, 'internal/missing', 'multi', index, OCI_INDEX);
    expect(idx.status).toBe(400);
    expect(idx.body.errors[0]).toMatchObject({ code: 'MANIFEST_BLOB_UNKNOWN', detail: image.digest });
    expect((await pushManifest(mirror.url, 'internal/elsewhere', 'multi', index, OCI_INDEX)).status).toBe(201);
    const invalid = await pushManifest(mirror.url, 'internal/missing', 'latest', Buffer.from('{not json'));
    expect(invalid.body.errors[0].code).toBe('MANIFEST_INVALID');
    const wrongType = await pushManifest(mirror.url, 'internal/elsewhere', 'y', image.manifest, OCI_INDEX);
    expect(wrongType.body.errors[0].code).toBe('MANIFEST_INVALID');
    const wrongDigest = await pushManifest(mirror.url, 'internal/elsewhere', sha256(Buffer.from('x')), image.manifest);
    expect(wrongDigest.status).toBe(400);
    expect(wrongDigest.body.errors[0].code).toBe('DIGEST_INVALID');
    const huge = await pushManifest(mirror.url, 'internal/elsewhere', 'huge', Buffer.alloc(4 * 1024 * 1024 + 1, 0x20));
    expect(huge.status).toBe(400);
    expect(huge.body.errors[0].code).toBe('MANIFEST_INVALID');
  });
});

describe('referrers', () => {
  test('manifests whose subject is the digest, with the artifactType filter', async () => {
    const image = smallImage('subject');
    expect((await pushSmallImage(mirror.url, 'internal/ref', 'v1', image)).status).toBe(201);
    const subject = { mediaType: OCI_MANIFEST, digest: image.digest, size: image.manifest.length };
    const emptyConfig = Buffer.from('{}');
    await pushBlob(mirror.url, 'internal/ref', emptyConfig);
    const sig = smallImage('sig', { artifactType: 'application/vnd.example.sig', subject, annotations: { who: 'ci' } }, 1);
    const sbom = smallImage('sbom', { subject }, 1);
    const sigPut = await pushSmallImage(mirror.url, 'internal/ref', sig.digest, sig);
    expect(sigPut.status).toBe(201);
    expect(sigPut.headers['oci-subject']).toBe(image.digest);
    expect((await pushSmallImage(mirror.url, 'internal/ref', sbom.digest, sbom)).status).toBe(201);
    const all = await api().get(`/v2/internal/ref/referrers/${image.digest}`);
    expect(all.status).toBe(200);
    expect(all.headers['content-type']).toBe(OCI_INDEX);
    expect(all.headers['oci-filters-applied']).toBeUndefined();
    const body = JSON.parse(all.text);
    expect(body.schemaVersion).toBe(2);
    expect(body.mediaType).toBe(OCI_INDEX);
    expect(body.manifests).toHaveLength(2);
    expect(body.manifests).toContainEqual({
      mediaType: OCI_MANIFEST,
      digest: sig.digest,
      size: sig.manifest.length,
      artifactType: 'application/vnd.example.sig',
      annotations: { who: 'ci' },
    });
    expect(body.manifests).toContainEqual({
      mediaType: OCI_MANIFEST,
      digest: sbom.digest,
      size: sbom.manifest.length,
      artifactType: 'application/vnd.oci.image.config.v1+json',
    });
    const filtered = await api().get(`/v2/internal/ref/referrers/${image.digest}?artifactType=application/vnd.example.sig`);
    expect(filtered.headers['oci-filters-applied']).toBe('artifactType');
    expect(JSON.parse(filtered.text).manifests.map((m: { digest: string }) => m.digest)).toEqual([sig.digest]);
    const none = await api().get(`/v2/internal/ref/referrers/${sha256(Buffer.from('unknown'))}`);
    expect(none.status).toBe(200);
    expect(JSON.parse(none.text).manifests).toEqual([]);
  });
});

describe('deletes with storage.delete.enabled', () => {
  test('a tag, a manifest (with its tags) and a blob link: 202; then unknown', async () => {
    const image = smallImage('deleted');
    await pushSmallImage(mirror.url, 'internal/del', 'a', image);
    await pushManifest(mirror.url, 'internal/del', 'b', image.manifest);
    expect((await api().delete('/v2/internal/del/manifests/a')).status).toBe(202);
    expect((await api().get('/v2/internal/del/tags/list')).body.tags).toEqual(['b']);
    expect((await api().delete('/v2/internal/del/manifests/a')).body.errors[0].code).toBe('MANIFEST_UNKNOWN');
    expect((await api().delete(`/v2/internal/del/manifests/${image.digest}`)).status).toBe(202);
    expect((await api().get(`/v2/internal/del/manifests/${image.digest}`)).status).toBe(404);
    expect((await api().get('/v2/internal/del/tags/list')).body.tags).toEqual([]);
    const layer = sha256(image.layers[0]!);
    expect((await api().delete(`/v2/internal/del/blobs/${layer}`)).status).toBe(202);
    expect((await api().head(`/v2/internal/del/blobs/${layer}`)).status).toBe(404);
    const again = await api().delete(`/v2/internal/del/blobs/${layer}`);
    expect(again.status).toBe(404);
    expect(again.body.errors[0].code).toBe('BLOB_UNKNOWN');
    // The data stays for garbage-collect.
    expect(existsSync(blobData(layer))).toBe(true);
  });
});

describe('the pull-through side is unchanged', () => {
  test.each([
    ['post', '/v2/library/busybox/blobs/uploads/'],
    ['post', '/v2/internalx/blobs/uploads/'],
    ['put', '/v2/busybox/manifests/latest'],
    ['delete', `/v2/busybox/blobs/sha256:${'a'.repeat(64)}`],
  ])('%s %s is 405 UNSUPPORTED', async (method, path) => {
    const res = await api()[method as 'post'](path);
    expect(res.status).toBe(405);
    expect(res.body).toEqual({ errors: [{ code: 'UNSUPPORTED', message: 'The operation is unsupported.' }] });
  });

  test('hosted names never reached the upstream', () => {
    expect(upstream.hits.length).toBeGreaterThan(0);
    expect(upstream.hits.filter((h) => /\/v2\/(internal|ci)[/]/.test(h.path))).toEqual([]);
  });
});

test("the _state token is distribution's HMAC format and refuses another secret", () => {
  const token = packUploadState('s3cret', 'internal/app', '0b9f3c2e-8a61-4d55-9d0c-1f2e3d4c5b6a', 1234, new Date('2026-01-02T03:04:05.678Z'));
  expect(token).toMatch(/^[A-Za-z0-9_-]+=*$/);
  expect(unpackUploadState('s3cret', token)).toEqual({
    Name: 'internal/app',
    UUID: '0b9f3c2e-8a61-4d55-9d0c-1f2e3d4c5b6a',
    Offset: 1234,
    StartedAt: '2026-01-02T03:04:05Z',
  });
  expect(unpackUploadState('other', token)).toBeUndefined();
});

describe('configuration', () => {
  const load = (proxy: string) => loadConfig({ text: `proxy:\n  remoteurl: http://u\n${proxy}\n`, env: {} }).config.proxy!;

  test('prefixes end with a slash, an invalid one or one hiding an upstream fails at start-up', () => {
    expect(load('  hosted: [internal/, ci, "team/x//"]').hosted).toEqual(['internal/', 'ci/', 'team/x/']);
    expect(load('').hosted).toEqual([]);
    expect(load('').hostedanonymouspush).toBe(false);
    expect(() => load('  hosted: [Internal/]')).toThrow('proxy.hosted.0: "Internal/" is not a repository name prefix like internal/');
    expect(() => load('  hosted: [ghcr.io/]\n  upstreams:\n    ghcr.io:\n      remoteurl: https://ghcr.io')).toThrow('would hide the upstream ghcr.io');
  });

  test('a prefix hosts whole path components', () => {
    expect(isHostedName(['internal/', 'ci/'], 'internal/app')).toBe(true);
    expect(isHostedName(['internal/', 'ci/'], 'ci')).toBe(true);
    expect(isHostedName(['internal/', 'ci/'], 'internalx/app')).toBe(false);
    expect(isHostedName(['internal/', 'ci/'], 'library/internal')).toBe(false);
  });
});

describe('validation.manifests.indexes (distribution 3): which children of a pushed index must be present', () => {
  const arm = smallImage('arm-child');
  const amd = smallImage('amd-child');
  const child = (image: typeof arm, architecture: string) => ({
    mediaType: OCI_MANIFEST,
    digest: image.digest,
    size: image.manifest.length,
    platform: { architecture, os: 'linux' },
  });
  const index = { schemaVersion: 2, mediaType: OCI_INDEX, manifests: [child(amd, 'amd64'), child(arm, 'arm64')] };

  test.each([
    // [the validation section, pushing with only the amd64 child present, with neither present]
    ['', 400, 400],
    ['validation:\n  manifests:\n    indexes:\n      platforms: all', 400, 400],
    ['validation:\n  manifests:\n    indexes:\n      platforms: None', 201, 201],
    ['validation:\n  disabled: true', 201, 201],
    ['validation:\n  manifests:\n    indexes:\n      platforms: list\n      platformlist:\n        - {architecture: amd64, os: linux}', 201, 400],
    ['validation:\n  manifests:\n    indexes:\n      platforms: list\n      platformlist:\n        - {architecture: arm64, os: linux}', 400, 400],
    ['validation:\n  manifests:\n    indexes:\n      platforms: list', 400, 400],
  ])('%j: %d with only the amd64 child pushed, %d with none', async (section, someStatus, noneStatus) => {
    const m = await startMirror(upstream.url, { proxyYaml: 'hosted: [internal/]\nhostedanonymouspush: true', extraYaml: section });
    try {
      expect((await pushManifest(m.url, 'internal/none', 'multi', index, OCI_INDEX)).status).toBe(noneStatus);
      expect((await pushSmallImage(m.url, 'internal/sparse', 'amd', amd)).status).toBe(201);
      const res = await pushManifest(m.url, 'internal/sparse', 'multi', index, OCI_INDEX);
      expect(res.status).toBe(someStatus);
      if (someStatus === 400) expect(res.body.errors[0]).toMatchObject({ code: 'MANIFEST_BLOB_UNKNOWN', detail: arm.digest });
      else expect((await request(m.url).get('/v2/internal/sparse/manifests/multi').set('Accept', OCI_INDEX)).status).toBe(200);
    } finally {
      await m.close();
    }
  });
});
