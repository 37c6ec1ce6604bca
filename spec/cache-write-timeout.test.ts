/**
 * `proxy.cachewritetimeout` (distribution 3): a blob fetch whose clients all left goes on filling
 * the cache for that long at most; within it, the blob is cached as if the client had stayed.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { startFakeUpstream, type FakeUpstream } from './helpers/fake-upstream.js';
import { startMirror, type TestMirror } from './helpers/mirror.js';
import { temporaryFiles } from './helpers/temp-files.js';
import { until } from './helpers/until.js';

const MiB = 1024 * 1024;
const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const blobPath = (root: string, digest: string): string => join(root, 'docker/registry/v2/blobs/sha256', digest.slice(7, 9), digest.slice(7), 'data');
const blobGets = /^GET \/v2\/library\/big\/blobs\//;
/** About 400 KB/s: a 2 MiB blob takes some 5 s. */
const SLOW = { kind: 'slow', bytesPerTick: 20_000, tickMs: 50 } as const;

/** GETs `url` and hangs up after the first bytes. */
function leaveEarly(url: string): Promise<void> {
  return new Promise((resolve) => {
    const req = http.get(url, { agent: false }, (res) => {
      res.once('data', () => {
        req.destroy();
        resolve();
      });
      res.on('error', () => undefined);
    });
    req.on('error', () => resolve());
  });
}

function download(url: string): Promise<{ body: Buffer; complete: boolean }> {
  return new Promise((resolve) => {
    http
      .get(url, { agent: false }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ body: Buffer.concat(chunks), complete: res.complete }));
        res.on('error', () => resolve({ body: Buffer.concat(chunks), complete: false }));
      })
      .on('error', () => resolve({ body: Buffer.alloc(0), complete: false }));
  });
}

describe('proxy.cachewritetimeout', () => {
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

  test('a fetch every client left stops once the timeout passes: nothing cached, nothing left behind, the next request fetches anew', async () => {
    // Overtaking off: only the timeout may stop the fetch.
    mirror = await startMirror(upstream.url, { proxyYaml: 'cachewritetimeout: 1s\novertake:\n  minrate: 0' });
    const content = randomBytes(2 * MiB);
    const digest = upstream.addBlob('library/big', content);
    upstream.fault(blobGets, SLOW, 1);
    await leaveEarly(`${mirror.url}/v2/library/big/blobs/${digest}`);
    await until(() => mirror!.logs().includes('no client has read it for proxy.cachewritetimeout (1000 ms)'), 'the fetch to stop', 20_000);
    expect(mirror.logs()).toMatch(
      /level=warning msg="cache write abandoned" err\.message="the fetch of sha256:[0-9a-f]+ was stopped[^"]*" type=blob vars\.digest=sha256:[0-9a-f]+ vars\.name=library\/big/,
    );
    // The upstream connection was closed: nothing more is sent.
    await until(
      async () => {
        const sent = upstream.bytes(blobGets);
        await new Promise((r) => setTimeout(r, 300));
        return upstream.bytes(blobGets) === sent;
      },
      'the upstream to stop sending',
      10_000,
    );
    expect(upstream.bytes(blobGets)).toBeLessThan(content.length);
    expect(existsSync(blobPath(mirror.root, digest))).toBe(false);
    await until(async () => (await temporaryFiles(mirror!.root)).length === 0, 'the temporary file to go');
    const next = await download(`${mirror.url}/v2/library/big/blobs/${digest}`);
    expect(next.complete).toBe(true);
    expect(sha(next.body)).toBe(digest);
    expect(upstream.count(blobGets)).toBe(2);
    expect(existsSync(blobPath(mirror.root, digest))).toBe(true);
  }, 60_000);

  test('within the timeout, a fetch every client left is completed and cached', async () => {
    mirror = await startMirror(upstream.url, { proxyYaml: 'cachewritetimeout: 10m\novertake:\n  minrate: 0' });
    const digest = upstream.addBlob('library/big', randomBytes(2 * MiB));
    upstream.fault(blobGets, SLOW, 1);
    await leaveEarly(`${mirror.url}/v2/library/big/blobs/${digest}`);
    await until(() => existsSync(blobPath(mirror!.root, digest)), 'the blob to be cached', 30_000);
    expect(upstream.count(blobGets)).toBe(1);
    expect(mirror.logs()).not.toContain('cache write abandoned');
  }, 60_000);
});
