/**
 * The API base: `/v2/`, the error envelope, read-only proxy mode, input validation, catalog and
 * tag listing with pagination.
 */
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import request from 'supertest';
import { startFakeUpstream, seedImage, type FakeUpstream } from './helpers/fake-upstream.js';
import { startMirror, type TestMirror } from './helpers/mirror.js';
import { allDescriptors } from '../lib/api/errors.js';

describe('the /v2/ API', () => {
  let upstream: FakeUpstream;
  let mirror: TestMirror;

  beforeAll(async () => {
    upstream = await startFakeUpstream();
    mirror = await startMirror(upstream.url);
  });
  afterAll(async () => {
    await mirror.close();
    await upstream.close();
  });

  test('GET and HEAD /v2/ answer 200 {} with the API version header', async () => {
    const res = await request(mirror.url).get('/v2/');
    expect(res.status).toBe(200);
    expect(res.body).toEqual({});
    expect(res.headers['docker-distribution-api-version']).toBe('registry/2.0');
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    const head = await request(mirror.url).head('/v2/');
    expect(head.status).toBe(200);
  });

  test('the root answers an empty 200', async () => {
    const res = await request(mirror.url).get('/');
    expect(res.status).toBe(200);
  });

  test('the error table has distribution codes, messages and statuses', () => {
    const byCode = Object.fromEntries(allDescriptors().map((d) => [d.code, d]));
    expect(byCode.UNSUPPORTED).toEqual({ code: 'UNSUPPORTED', message: 'The operation is unsupported.', status: 405 });
    expect(byCode.BLOB_UNKNOWN!.status).toBe(404);
    expect(byCode.MANIFEST_UNKNOWN!.message).toBe('manifest unknown');
    expect(byCode.TOOMANYREQUESTS!.status).toBe(429);
    expect(byCode.PAGINATION_NUMBER_INVALID!.status).toBe(400);
    expect(byCode.NAME_INVALID!.status).toBe(400);
  });

  test('unknown routes answer 404 in the registry error format', async () => {
    const res = await request(mirror.url).get('/nothing/here');
    expect(res.status).toBe(404);
    expect(res.body.errors).toHaveLength(1);
    expect(res.body.errors[0]).toMatchObject({ code: expect.any(String), message: expect.any(String) });
  });

  test.each([
    ['POST', '/v2/library/busybox/blobs/uploads/'],
    ['PUT', '/v2/library/busybox/manifests/latest'],
    ['DELETE', '/v2/library/busybox/manifests/latest'],
    ['DELETE', `/v2/library/busybox/blobs/sha256:${'a'.repeat(64)}`],
    ['PATCH', '/v2/library/busybox/blobs/uploads/1234'],
  ])('%s %s is 405 UNSUPPORTED as in distribution proxy mode', async (method, path) => {
    const res = await request(mirror.url)[method.toLowerCase() as 'post'](path);
    expect(res.status).toBe(405);
    expect(res.body).toEqual({ errors: [{ code: 'UNSUPPORTED', message: 'The operation is unsupported.' }] });
  });

  test.each([
    ['/v2/..%2F..%2Fetc/manifests/latest', 'NAME_INVALID'],
    ['/v2/library/../../etc/manifests/latest', 'NAME_INVALID'],
    ['/v2/Library/Busybox/manifests/latest', 'NAME_INVALID'],
    ['/v2/library/busybox%00/manifests/latest', 'NAME_INVALID'],
    ['/v2/library/busybox/manifests/sha256:xyz', 'DIGEST_INVALID'],
    ['/v2/library/busybox/blobs/sha256:1234', 'DIGEST_INVALID'],
    ['/v2/library/busybox/blobs/latest', 'DIGEST_INVALID'],
    ['/v2/library/busy%0D%0Abox/manifests/latest', 'NAME_INVALID'],
    ['/v2/library%2Fbusybox/manifests/latest', 'NAME_INVALID'],
    [`/v2/${'a'.repeat(256)}/manifests/latest`, 'NAME_INVALID'],
    ['/v2/library/busybox/blobs/sha256:%2E%2E%2F%2E%2E', 'DIGEST_INVALID'],
  ])('%s is refused with %s before any storage path is built', async (path, code) => {
    const res = await request(mirror.url).get(path);
    expect(res.status).toBe(400);
    expect(res.body.errors[0].code).toBe(code);
  });

  test.each(['..%2F..', 'latest%0D%0AX-Injected:%201', 'lat%00est', 't'.repeat(129), '.INVALID_MANIFEST_NAME', '-latest', '%2E%2E'])(
    'a manifest under the invalid tag %s cannot exist: GET and HEAD are 404 MANIFEST_UNKNOWN, the upstream is not asked',
    async (tag) => {
      const before = upstream.hits.length;
      const res = await request(mirror.url).get(`/v2/library/busybox/manifests/${tag}`);
      expect(res.status).toBe(404);
      expect(res.body.errors[0]).toMatchObject({ code: 'MANIFEST_UNKNOWN', detail: { Tag: tag } });
      expect((await request(mirror.url).head(`/v2/library/busybox/manifests/${tag}`)).status).toBe(404);
      expect(upstream.hits.length).toBe(before);
    },
  );

  test.each([
    ['/v2/_catalog?n=abc', { n: 'abc' }],
    ['/v2/_catalog?n=-1', { n: -1 }],
    ['/v2/_catalog?n=1&n=2', { n: ['1', '2'] }],
    ['/v2/_catalog?last=a&last=b', { last: ['a', 'b'] }],
    ['/v2/library/busybox/tags/list?n=1.5', { n: '1.5' }],
  ])('%s is PAGINATION_NUMBER_INVALID', async (path, detail) => {
    const res = await request(mirror.url).get(path);
    expect(res.status).toBe(400);
    expect(res.body.errors[0]).toEqual({ code: 'PAGINATION_NUMBER_INVALID', message: 'invalid number of results requested', detail });
  });

  test('the catalog lists cached repositories with n/last pagination and a Link header', async () => {
    for (const repo of ['library/alpine', 'library/busybox', 'org/app']) {
      seedImage(upstream, repo, 'latest', [randomBytes(10)]);
      await request(mirror.url).get(`/v2/${repo}/manifests/latest`).expect(200);
    }
    const all = await request(mirror.url).get('/v2/_catalog');
    expect(all.body).toEqual({ repositories: ['library/alpine', 'library/busybox', 'org/app'] });
    const page = await request(mirror.url).get('/v2/_catalog?n=2');
    expect(page.body).toEqual({ repositories: ['library/alpine', 'library/busybox'] });
    expect(page.headers.link).toBe('</v2/_catalog?last=library%2Fbusybox&n=2>; rel="next"');
    const next = await request(mirror.url).get('/v2/_catalog?n=2&last=library%2Fbusybox');
    expect(next.body).toEqual({ repositories: ['org/app'] });
    expect(next.headers.link).toBeUndefined();
  });

  test('a catalog page size above catalog.maxentries is PAGINATION_NUMBER_INVALID with the n detail', async () => {
    const res = await request(mirror.url).get('/v2/_catalog?n=1001');
    expect(res.status).toBe(400);
    expect(res.body.errors[0]).toEqual({ code: 'PAGINATION_NUMBER_INVALID', message: 'invalid number of results requested', detail: { n: 1001 } });
    const negative = await request(mirror.url).get('/v2/_catalog?n=-1');
    expect(negative.status).toBe(400);
  });

  test('tags are listed from the upstream, and from the cache when it is down', async () => {
    seedImage(upstream, 'org/tagged', '1.0', [randomBytes(10)]);
    seedImage(upstream, 'org/tagged', '2.0', [randomBytes(10)]);
    const res = await request(mirror.url).get('/v2/org/tagged/tags/list');
    expect(res.body).toEqual({ name: 'org/tagged', tags: ['1.0', '2.0'] });
    await request(mirror.url).get('/v2/org/tagged/manifests/1.0').expect(200);
    upstream.setDown(true);
    try {
      const cached = await request(mirror.url).get('/v2/org/tagged/tags/list');
      expect(cached.body).toEqual({ name: 'org/tagged', tags: ['1.0'] });
    } finally {
      upstream.setDown(false);
    }
    const missing = await request(mirror.url).get('/v2/org/none/tags/list');
    expect(missing.status).toBe(404);
    expect(missing.body.errors[0].code).toBe('NAME_UNKNOWN');
  });

  test('oversized request headers get 431, and the server keeps serving', async () => {
    const status = await new Promise<number | undefined>((resolve) => {
      const req = http.get(`${mirror.url}/v2/`, { agent: false, headers: { 'x-padding': 'a'.repeat(20 * 1024) } }, (res) => {
        res.resume();
        resolve(res.statusCode);
      });
      req.on('error', () => resolve(undefined));
    });
    expect(status).toBe(431);
    await request(mirror.url).get('/v2/').expect(200);
  });
});
