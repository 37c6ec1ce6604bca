/**
 * A crawling upstream connection does not hold a blob's clients: the fetch is raced by a second
 * connection (a Range request from the bytes already received, or the whole blob again from an
 * upstream that ignores ranges), the faster wins and the other is cancelled, the blob is still
 * verified and committed once; a crawling fetch nobody reads any more stops.
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

interface Download {
  readonly status: number;
  readonly body: Buffer;
  readonly complete: boolean;
  readonly ms: number;
}

/** GETs `url`; `onResponse` may keep the request to cancel it. */
function download(url: string, onRequest?: (req: http.ClientRequest) => void): Promise<Download> {
  const started = Date.now();
  return new Promise((resolve) => {
    const req = http.get(url, { agent: false }, (res) => {
      const chunks: Buffer[] = [];
      const done = (complete: boolean): void => resolve({ status: res.statusCode!, body: Buffer.concat(chunks), complete, ms: Date.now() - started });
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => done(res.complete));
      res.on('error', () => done(false));
      res.on('aborted', () => undefined);
    });
    req.on('error', () => resolve({ status: 0, body: Buffer.alloc(0), complete: false, ms: Date.now() - started }));
    onRequest?.(req);
  });
}

/** 50 KB/s, the trickle of the chaos run (64 MiB would take 22 minutes). */
const TRICKLE = { kind: 'slow', bytesPerTick: 2500, tickMs: 50 } as const;
const AFTER_MS = 1000;

describe('overtaking a crawling blob fetch', () => {
  let upstream: FakeUpstream;
  let mirror: TestMirror;
  const blobGets = /^GET \/v2\/library\/big\/blobs\//;

  beforeEach(async () => {
    upstream = await startFakeUpstream();
    mirror = await startMirror(upstream.url, { proxyYaml: `overtake:\n  after: ${AFTER_MS}ms` });
  });
  afterEach(async () => {
    await mirror.close();
    await upstream.close();
  });

  const metric = async (outcome: string): Promise<number> => {
    const text = await mirror.registry.metrics.registry.metrics();
    return Number(new RegExp(`registry_mirror_blob_races_total\\{outcome="${outcome}"\\} (\\d+)`).exec(text)?.[1]);
  };

  test('a trickling upstream is overtaken: a late client of a 64 MiB blob gets it at the speed of a healthy connection, the upstream sends it less than twice', async () => {
    const content = randomBytes(64 * MiB);
    const digest = upstream.addBlob('library/big', content);
    // A cold blob of the same size through the mirror over a healthy connection, on this machine now.
    const healthyDigest = upstream.addBlob('library/healthy', randomBytes(64 * MiB));
    const healthy = await download(`${mirror.url}/v2/library/healthy/blobs/${healthyDigest}`);
    expect(healthy.complete).toBe(true);

    upstream.fault(blobGets, TRICKLE, 1);
    const first = download(`${mirror.url}/v2/library/big/blobs/${digest}`);
    await until(() => upstream.count(blobGets) === 1, 'the first fetch');
    await new Promise((r) => setTimeout(r, AFTER_MS / 2));
    const late = await download(`${mirror.url}/v2/library/big/blobs/${digest}`);
    const early = await first;

    for (const d of [early, late]) {
      expect(d.status).toBe(200);
      expect(d.complete).toBe(true);
      expect(sha(d.body)).toBe(digest);
    }
    // At most the detection (one window of AFTER_MS, less the half the late client came after) and
    // the healthy connection's pace, with room for a loaded machine; the trickle alone would take 1340 s.
    expect(late.ms).toBeLessThan(healthy.ms * 1.5 + AFTER_MS + 2000);
    expect(upstream.count(blobGets)).toBe(2);
    expect(upstream.hits.filter((h) => blobGets.test(`${h.method} ${h.path}`))[1]!.range).toMatch(/^bytes=\d+-$/);
    expect(upstream.bytes(blobGets)).toBeLessThan(2 * content.length);
    expect(existsSync(blobPath(mirror.root, digest))).toBe(true);
    expect(await temporaryFiles(mirror.root)).toEqual([]);
    expect(await metric('won')).toBe(1);
    expect(mirror.logs()).toMatch(
      /library\/big@sha256:[0-9a-f]+: the upstream sends .* below proxy.overtake.minrate: racing a second connection from byte \d+/,
    );
    expect(mirror.logs()).toMatch(/the second connection won/);
  }, 120_000);

  test('an upstream that ignores Range: the new connection brings the whole blob and takes over past the bytes already received', async () => {
    const content = randomBytes(16 * MiB);
    const digest = upstream.addBlob('library/big', content);
    upstream.fault(blobGets, TRICKLE, 1);
    upstream.fault(blobGets, { kind: 'no-range' }, 1);
    const res = await download(`${mirror.url}/v2/library/big/blobs/${digest}`);
    expect(res.complete).toBe(true);
    expect(sha(res.body)).toBe(digest);
    expect(upstream.count(blobGets)).toBe(2);
    expect(upstream.bytes(blobGets)).toBeLessThan(2 * content.length);
    expect(existsSync(blobPath(mirror.root, digest))).toBe(true);
    expect(await metric('won')).toBe(1);
  }, 60_000);

  test('a second connection no faster than the first loses and is cancelled; the first completes the blob, verified', async () => {
    // 8 s at the trickle's pace: every race (one a second, judged half a second later) is judged
    // before the last bytes, which a racer started just before the end could bring first by chance.
    const content = randomBytes(400_000);
    const digest = upstream.addBlob('library/big', content);
    // Every connection trickles (a slow link, not a slow connection): racing cannot help.
    upstream.fault(blobGets, TRICKLE);
    const res = await download(`${mirror.url}/v2/library/big/blobs/${digest}`);
    expect(res.complete).toBe(true);
    expect(sha(res.body)).toBe(digest);
    expect(await metric('lost')).toBeGreaterThanOrEqual(1);
    expect(await metric('won')).toBe(0);
    expect(mirror.logs()).toMatch(/the second connection lost/);
    expect(existsSync(blobPath(mirror.root, digest))).toBe(true);
  }, 60_000);

  test('a crawling fetch that every client left, and that racing did not speed up, stops; the next request fetches anew at full speed', async () => {
    const content = randomBytes(8 * MiB);
    const digest = upstream.addBlob('library/big', content);
    upstream.fault(blobGets, TRICKLE, 2);
    let req: http.ClientRequest | undefined;
    const gone = download(`${mirror.url}/v2/library/big/blobs/${digest}`, (r) => (req = r));
    await until(() => upstream.count(blobGets) === 1, 'the first fetch');
    await new Promise((r) => setTimeout(r, 200));
    req!.destroy();
    await gone;
    await until(async () => (await metric('stopped')) === 1, 'the fetch to stop', 20_000);
    expect(await metric('lost')).toBe(1);
    expect(mirror.logs()).toMatch(/upstream fetch stopped: no client reads it and it crawls at/);
    // The upstream connections were closed: nothing more is sent.
    const sent = upstream.bytes(blobGets);
    await new Promise((r) => setTimeout(r, 300));
    expect(upstream.bytes(blobGets)).toBe(sent);
    expect(existsSync(blobPath(mirror.root, digest))).toBe(false);
    await until(async () => (await temporaryFiles(mirror.root)).length === 0, 'the temporary file to go');

    const next = await download(`${mirror.url}/v2/library/big/blobs/${digest}`);
    expect(next.complete).toBe(true);
    expect(sha(next.body)).toBe(digest);
    expect(upstream.count(blobGets)).toBe(3);
    expect(existsSync(blobPath(mirror.root, digest))).toBe(true);
  }, 60_000);

  test('proxy.overtake.minrate: 0 turns it off: a trickle is never raced', async () => {
    const off = await startMirror(upstream.url, { proxyYaml: 'overtake:\n  minrate: 0\n  after: 200ms' });
    try {
      const content = randomBytes(100_000);
      const digest = upstream.addBlob('library/big', content);
      upstream.fault(blobGets, { kind: 'slow', bytesPerTick: 5000, tickMs: 50 }, 1);
      const res = await download(`${off.url}/v2/library/big/blobs/${digest}`);
      expect(sha(res.body)).toBe(digest);
      expect(upstream.count(blobGets)).toBe(1);
    } finally {
      await off.close();
    }
  });
});
