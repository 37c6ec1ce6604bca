/**
 * The cache page's content without a browser (the browser test is in spec/interop): the size cap,
 * an upstream that is down, HTML escaping, and distribution's empty 200 for non-browsers.
 */
import { randomBytes } from 'node:crypto';
import request from 'supertest';
import { renderCachePage } from '../lib/api/cache-page.js';
import { seedImage, startFakeUpstream, type FakeUpstream } from './helpers/fake-upstream.js';
import { startMirror, type TestMirror } from './helpers/mirror.js';

const HTML = 'text/html,application/xhtml+xml';
const ACCEPT = 'application/vnd.oci.image.manifest.v1+json';

describe('the cache page', () => {
  let upstream: FakeUpstream;
  let mirror: TestMirror;
  beforeEach(async () => {
    upstream = await startFakeUpstream();
    mirror = await startMirror(upstream.url, { proxyYaml: 'maxsize: 10MiB' });
  });
  afterEach(async () => {
    await mirror.close();
    await upstream.close();
  });

  test('shows the cache against its cap, and an upstream whose circuit opened', async () => {
    const img = seedImage(upstream, 'library/busybox', 'latest', [randomBytes(1024 * 1024)]);
    await request(mirror.url).get('/v2/library/busybox/manifests/latest').set('Accept', ACCEPT).expect(200);
    await request(mirror.url).get(`/v2/library/busybox/blobs/${img.layers[0]}`).expect(200);
    let page = (await request(mirror.url).get('/').set('Accept', HTML)).text;
    expect(page).toMatch(/<strong>1\.0 MiB of 10\.0 MiB cap<\/strong>/);
    expect(page).toContain('<td>library/busybox</td><td>latest</td><td>image</td>');

    upstream.setDown(true);
    for (let i = 0; i < 3; i++) await request(mirror.url).get('/v2/library/other/manifests/latest').set('Accept', ACCEPT).expect(503);
    page = (await request(mirror.url).get('/').set('Accept', HTML)).text;
    expect(page).toMatch(/unreachable: circuit open, next try in \d+ s/);
  });

  test('a client that does not ask for HTML gets distribution\'s empty 200', async () => {
    for (const accept of [undefined, '*/*', 'application/json']) {
      const req = request(mirror.url).get('/');
      const res = accept ? await req.set('Accept', accept) : await req;
      expect(res.status).toBe(200);
      expect(res.text).toBe('');
    }
  });
});

test('text from the outside world is escaped', () => {
  const html = renderCachePage({
    generatedAt: new Date(),
    repositories: [],
    stats: { requests: 0, hits: 0, bytesServed: 0, bytesFetched: 0 },
    upstreams: [{ host: 'evil.example', url: 'http://evil.example', circuitOpen: false, retryInMs: 0, lastFailure: { at: new Date(), message: '<script>alert(1)</script>' } }],
    disk: {},
  });
  expect(html).not.toContain('<script>alert(1)</script>');
  expect(html).toContain('&lt;script&gt;alert(1)&lt;/script&gt;');
  expect(html).toContain('The cache is empty');
});
