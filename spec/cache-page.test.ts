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

  test('the images come a page at a time in catalog order, filtered by the server, with counters in the summary', async () => {
    for (const name of ['team/a', 'team/b', 'team/c']) {
      for (const tag of ['v1', 'v2']) {
        seedImage(upstream, name, tag, [randomBytes(200)]);
        await request(mirror.url).get(`/v2/${name}/manifests/${tag}`).set('Accept', ACCEPT).expect(200);
      }
    }
    const html = async (path: string): Promise<string> => (await request(mirror.url).get(path).set('Accept', HTML).expect(200)).text;
    const rows = (page: string): string[] => [...page.matchAll(/<tr data-ref="([^"]+)">/g)].map((m) => m[1]!);
    const next = (page: string): string | undefined => /<a href="([^"]+)" rel="next">/.exec(page)?.[1]?.replaceAll('&amp;', '&');

    const first = await html('/?n=4');
    expect(rows(first)).toEqual(['team/a:v1', 'team/a:v2', 'team/b:v1', 'team/b:v2']);
    expect(first).toContain('3 repositories, 6 tags.');
    // The cursor is the last row: the next page resumes inside a repository's tags or after it.
    expect(next(first)).toBe('?n=4&after=team%2Fb%3Av2');
    const second = await html(`/${next(first)}`);
    expect(rows(second)).toEqual(['team/c:v1', 'team/c:v2']);
    expect(next(second)).toBeUndefined();
    expect(second).toContain('rel="first"');
    expect(rows(await html('/?n=1&after=team%2Fa%3Av1'))).toEqual(['team/a:v2']);

    // The filter is the server's: every repository is searched, not only the rows of a page.
    const filtered = await html('/?q=B%3Av&n=1');
    expect(rows(filtered)).toEqual(['team/b:v1']);
    expect(filtered).toContain('value="b:v"');
    expect(rows(await html(`/${next(filtered)}`))).toEqual(['team/b:v2']);
    expect(rows(await html('/?q=nothing-like-this'))).toEqual([]);
    // Parameters that make no sense give the first page.
    expect(rows(await html('/?n=zero&after=nocolon'))).toHaveLength(6);
  });

  test("a client that does not ask for HTML gets distribution's empty 200", async () => {
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
    rows: [],
    page: { n: 100 },
    stats: { requests: 0, hits: 0, bytesServed: 0, bytesFetched: 0 },
    upstreams: [
      {
        host: 'evil.example',
        url: 'http://evil.example',
        circuitOpen: false,
        retryInMs: 0,
        lastFailure: { at: new Date(), message: '<script>alert(1)</script>' },
      },
    ],
    disk: {},
  });
  expect(html).not.toContain('<script>alert(1)</script>');
  expect(html).toContain('&lt;script&gt;alert(1)&lt;/script&gt;');
  expect(html).toContain('Nothing here: pull an image through the mirror');
});
