/**
 * Blobs through the pull-through cache: fetched once, streamed while written, verified before
 * commit, served from disk afterwards, and never committed or reported complete when wrong.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import http from 'node:http';
import { join } from 'node:path';
import request from 'supertest';
import { binary } from './helpers/binary.js';
import { getHashed } from './helpers/hashed-get.js';
import type { FakeUpstream } from './helpers/fake-upstream.js';
import { startMirror, type TestMirror } from './helpers/mirror.js';
import { closeBoth, mirrorOfFakeUpstream } from './helpers/mirror-of-fake-upstream.js';
import { sha256 } from './helpers/digest.js';
import { temporaryFiles } from './helpers/temp-files.js';
import { until } from './helpers/until.js';

const sha = sha256;
const blobPath = (root: string, digest: string): string => {
  const hex = digest.slice('sha256:'.length);
  return join(root, 'docker/registry/v2/blobs/sha256', hex.slice(0, 2), hex, 'data');
};

/** GETs `url` with plain http, resolving with status, body and whether the transfer ended cleanly. */
function fetchRaw(
  url: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: Buffer; complete: boolean; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve) => {
    const req = http.get(url, { headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, body: Buffer.concat(chunks), complete: res.complete, headers: res.headers }));
      res.on('error', () => resolve({ status: res.statusCode!, body: Buffer.concat(chunks), complete: false, headers: res.headers }));
      res.on('aborted', () => undefined);
    });
    req.on('error', () => resolve({ status: 0, body: Buffer.alloc(0), complete: false, headers: {} }));
  });
}

describe('blobs through the mirror', () => {
  let upstream: FakeUpstream;
  let mirror: TestMirror;

  beforeEach(async () => ({ upstream, mirror } = await mirrorOfFakeUpstream()));
  afterEach(() => closeBoth({ upstream, mirror }));

  test('a cold blob is fetched once, stored in distribution layout and then served from disk', async () => {
    const content = randomBytes(300_000);
    const digest = upstream.addBlob('library/busybox', content);
    const first = await request(mirror.url).get(`/v2/library/busybox/blobs/${digest}`).buffer(true).parse(binary);
    expect(first.status).toBe(200);
    expect(sha(first.body as Buffer)).toBe(digest);
    expect(first.headers['docker-content-digest']).toBe(digest);
    expect(first.headers['content-length']).toBe(String(content.length));
    expect(first.headers['docker-distribution-api-version']).toBe('registry/2.0');
    expect(existsSync(blobPath(mirror.root, digest))).toBe(true);
    expect(existsSync(join(mirror.root, 'docker/registry/v2/repositories/library/busybox/_layers/sha256', digest.slice(7), 'link'))).toBe(true);

    const second = await request(mirror.url).get(`/v2/library/busybox/blobs/${digest}`).buffer(true).parse(binary);
    expect(sha(second.body as Buffer)).toBe(digest);
    expect(upstream.count(/^GET \/v2\/library\/busybox\/blobs\//)).toBe(1);
  });

  test('ten concurrent requests for one uncached 64 MiB blob make one upstream GET', async () => {
    const content = randomBytes(64 * 1024 * 1024);
    const digest = upstream.addBlob('library/big', content);
    // Hashed as they come: ten 64 MiB bodies kept in memory and hashed at the end would make the
    // test's own work, not the mirror's, outlast a deadline on a loaded machine.
    const results = await Promise.all(Array.from({ length: 10 }, () => getHashed(`${mirror.url}/v2/library/big/blobs/${digest}`)));
    for (const r of results) expect(r).toEqual({ status: 200, digest, bytes: content.length, complete: true });
    expect(upstream.count(/^GET \/v2\/library\/big\/blobs\//)).toBe(1);
  }, 180_000);

  test('HEAD of an uncached blob asks the upstream with HEAD and downloads nothing', async () => {
    const digest = upstream.addBlob('library/busybox', randomBytes(1000));
    const res = await request(mirror.url).head(`/v2/library/busybox/blobs/${digest}`);
    expect(res.status).toBe(200);
    expect(res.headers['content-length']).toBe('1000');
    expect(upstream.count(/^GET \/v2\/.+/)).toBe(0);
  });

  test('cached blobs answer Range requests with 206 and unsatisfiable ones with 416', async () => {
    const content = randomBytes(10_000);
    const digest = upstream.addBlob('library/busybox', content);
    await request(mirror.url).get(`/v2/library/busybox/blobs/${digest}`);
    const part = await request(mirror.url).get(`/v2/library/busybox/blobs/${digest}`).set('Range', 'bytes=100-199').buffer(true).parse(binary);
    expect(part.status).toBe(206);
    expect(part.headers['content-range']).toBe('bytes 100-199/10000');
    expect((part.body as Buffer).equals(content.subarray(100, 200))).toBe(true);
    const suffix = await request(mirror.url).get(`/v2/library/busybox/blobs/${digest}`).set('Range', 'bytes=-10').buffer(true).parse(binary);
    expect((suffix.body as Buffer).equals(content.subarray(9990))).toBe(true);
    const bad = await request(mirror.url).get(`/v2/library/busybox/blobs/${digest}`).set('Range', 'bytes=20000-');
    expect(bad.status).toBe(416);
    expect(bad.headers['content-range']).toBe('bytes */10000');
  });

  test.each([
    ['bytes=abc', 'malformed'],
    ['bytes=500-100', 'last before first'],
    ['bytes=0-1,5-6', 'several ranges'],
    ['items=0-1', 'another unit'],
  ])('Range %s (%s) is ignored: 200 with the whole blob, as RFC 9110 allows', async (range) => {
    const content = randomBytes(10_000);
    const digest = upstream.addBlob('library/busybox', content);
    await request(mirror.url).get(`/v2/library/busybox/blobs/${digest}`).expect(200);
    const res = await request(mirror.url).get(`/v2/library/busybox/blobs/${digest}`).set('Range', range).buffer(true).parse(binary);
    expect(res.status).toBe(200);
    expect((res.body as Buffer).equals(content)).toBe(true);
  });

  test('a Range on a blob still being fetched is served from the growing file', async () => {
    const content = randomBytes(2 * 1024 * 1024);
    const digest = upstream.addBlob('library/busybox', content);
    upstream.fault(/^GET \/v2\/library\/busybox\/blobs\//, { kind: 'slow', bytesPerTick: 256 * 1024, tickMs: 20 }, 1);
    const [whole, part] = await Promise.all([
      fetchRaw(`${mirror.url}/v2/library/busybox/blobs/${digest}`),
      new Promise((r) => setTimeout(r, 30)).then(() => fetchRaw(`${mirror.url}/v2/library/busybox/blobs/${digest}`, { Range: 'bytes=1000000-1000999' })),
    ]);
    expect(sha(whole.body)).toBe(digest);
    expect(part.status).toBe(206);
    expect(part.headers['content-range']).toBe(`bytes 1000000-1000999/${content.length}`);
    expect(part.body.equals(content.subarray(1_000_000, 1_001_000))).toBe(true);
    expect(upstream.count(/^GET \/v2\/library\/busybox\/blobs\//)).toBe(1);
  });

  test('a client far behind a download reads the growing file, in larger chunks once it keeps up, and gets every byte', async () => {
    const content = randomBytes(64 * 1024 * 1024);
    const digest = upstream.addBlob('library/big', content);
    // At most 50 MiB/s (timers on a loaded machine only make it slower): the download is still
    // under way, for about a second, when the late client starts.
    upstream.fault(/^GET \/v2\/library\/big\/blobs\//, { kind: 'slow', bytesPerTick: 1024 * 1024, tickMs: 20 }, 1);
    const url = `${mirror.url}/v2/library/big/blobs/${digest}`;
    const first = getHashed(url);
    // Start once the download is well past the tee's window: the late client begins in the file.
    const downloaded = async (): Promise<number> => {
      const sizes = await Promise.all(
        (await temporaryFiles(mirror.root)).map((f) =>
          stat(join(mirror.root, '.tmp', f)).then(
            (s) => s.size,
            () => 0,
          ),
        ),
      );
      return Math.max(0, ...sizes);
    };
    await until(async () => (await downloaded()) >= 16 * 1024 * 1024, 'the download 16 MiB in', 60_000);
    expect(await downloaded()).toBeLessThan(content.length);
    const late = await getHashed(url);
    expect(late).toEqual({ status: 200, digest, bytes: content.length, complete: true });
    expect(await first).toEqual({ status: 200, digest, bytes: content.length, complete: true });
    expect(upstream.count(/^GET \/v2\/library\/big\/blobs\//)).toBe(1);
  }, 120_000);

  test.each([
    ['a connection reset mid-body', { kind: 'reset-after', bytes: 100_000 } as const],
    ['wrong bytes for the digest', { kind: 'wrong-bytes' } as const],
    ['a truncated body', { kind: 'truncate', bytes: 50_000 } as const],
  ])('%s gives an aborted transfer, commits nothing, and the next request retries cleanly', async (_name, fault) => {
    const content = randomBytes(400_000);
    const digest = upstream.addBlob('library/busybox', content);
    upstream.fault(/^GET \/v2\/library\/busybox\/blobs\//, fault, 1);
    const broken = await fetchRaw(`${mirror.url}/v2/library/busybox/blobs/${digest}`);
    expect(broken.complete && sha(broken.body) === digest).toBe(false);
    expect(broken.complete).toBe(false);
    await new Promise((r) => setTimeout(r, 100));
    expect(existsSync(blobPath(mirror.root, digest))).toBe(false);
    expect(await temporaryFiles(mirror.root)).toEqual([]);

    const retry = await fetchRaw(`${mirror.url}/v2/library/busybox/blobs/${digest}`);
    expect(retry.status).toBe(200);
    expect(retry.complete).toBe(true);
    expect(sha(retry.body)).toBe(digest);
    expect(existsSync(blobPath(mirror.root, digest))).toBe(true);
  });

  test('a stalled upstream body hits the idle timeout: aborted transfer, nothing cached, retry works', async () => {
    const quick = await startMirror(upstream.url, { proxyYaml: 'timeouts:\n  idle: 300ms\n  response: 300ms' });
    try {
      const content = randomBytes(100_000);
      const digest = upstream.addBlob('library/busybox', content);
      upstream.fault(/^GET \/v2\/library\/busybox\/blobs\//, { kind: 'stall' }, 1);
      const stalled = await fetchRaw(`${quick.url}/v2/library/busybox/blobs/${digest}`);
      expect(stalled.complete).toBe(false);
      expect(existsSync(blobPath(quick.root, digest))).toBe(false);
      expect(await temporaryFiles(quick.root)).toEqual([]);
      const retry = await fetchRaw(`${quick.url}/v2/library/busybox/blobs/${digest}`);
      expect(retry.complete && sha(retry.body) === digest).toBe(true);

      upstream.fault(/^(HEAD|GET) \/v2\/library\/slow\/manifests\//, { kind: 'delay', ms: 2000 }, 1);
      const slow = await request(quick.url).get('/v2/library/slow/manifests/latest');
      expect(slow.status).toBe(503);
      expect(slow.body.errors[0].code).toBe('UNAVAILABLE');
    } finally {
      await quick.close();
    }
  });

  test('an upstream 500 becomes a registry error and nothing is cached', async () => {
    const digest = upstream.addBlob('library/busybox', randomBytes(1000));
    upstream.fault(/^GET \/v2\/library\/busybox\/blobs\//, { kind: 'status', status: 500 });
    const res = await request(mirror.url).get(`/v2/library/busybox/blobs/${digest}`);
    expect(res.status).toBe(503);
    expect(res.body.errors[0].code).toBe('UNAVAILABLE');
    expect(existsSync(blobPath(mirror.root, digest))).toBe(false);
  });

  test('an upstream 404 is BLOB_UNKNOWN', async () => {
    const res = await request(mirror.url).get(`/v2/library/busybox/blobs/sha256:${'a'.repeat(64)}`);
    expect(res.status).toBe(404);
    expect(res.body.errors[0].code).toBe('BLOB_UNKNOWN');
  });

  test('a client that goes away does not abort the cache write', async () => {
    const content = randomBytes(2 * 1024 * 1024);
    const digest = upstream.addBlob('library/busybox', content);
    upstream.fault(/^GET \/v2\/library\/busybox\/blobs\//, { kind: 'slow', bytesPerTick: 256 * 1024, tickMs: 20 }, 1);
    await new Promise<void>((resolve) => {
      const req = http.get(`${mirror.url}/v2/library/busybox/blobs/${digest}`, { agent: false }, (res) => {
        res.once('data', () => {
          req.destroy();
          resolve();
        });
      });
      req.on('error', () => undefined);
    });
    for (let i = 0; i < 100 && !existsSync(blobPath(mirror.root, digest)); i++) await new Promise((r) => setTimeout(r, 50));
    expect(existsSync(blobPath(mirror.root, digest))).toBe(true);
    const again = await fetchRaw(`${mirror.url}/v2/library/busybox/blobs/${digest}`);
    expect(sha(again.body)).toBe(digest);
    expect(upstream.count(/^GET \/v2\/library\/busybox\/blobs\//)).toBe(1);
  });

  test('a blob cached for one repository is served to another only if the upstream confirms it', async () => {
    const content = randomBytes(5000);
    const digest = upstream.addBlob('private/secret', content);
    await request(mirror.url).get(`/v2/private/secret/blobs/${digest}`).expect(200);
    const other = await request(mirror.url).get(`/v2/public/app/blobs/${digest}`);
    expect(other.status).toBe(404);
    expect(other.body.errors[0].code).toBe('BLOB_UNKNOWN');

    upstream.addBlob('public/app', content);
    const confirmed = await request(mirror.url).get(`/v2/public/app/blobs/${digest}`).buffer(true).parse(binary);
    expect(confirmed.status).toBe(200);
    expect(sha(confirmed.body as Buffer)).toBe(digest);
    expect(upstream.count(/^GET \/v2\/public\/app\/blobs\//)).toBe(0);
  });

  test('a cached blob is served with the upstream down', async () => {
    const content = randomBytes(5000);
    const digest = upstream.addBlob('library/busybox', content);
    await request(mirror.url).get(`/v2/library/busybox/blobs/${digest}`).expect(200);
    upstream.setDown(true);
    const res = await request(mirror.url).get(`/v2/library/busybox/blobs/${digest}`).buffer(true).parse(binary);
    expect(res.status).toBe(200);
    expect(sha(res.body as Buffer)).toBe(digest);
  });
});
