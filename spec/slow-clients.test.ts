/**
 * Slow clients cannot hold the server: connections that never finish their headers do not stop
 * others being served, and a client that stops reading a large blob (cached or being fetched) makes
 * the mirror stop reading too, instead of buffering the blob in memory.
 */
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import v8 from 'node:v8';
import vm from 'node:vm';
import request from 'supertest';
import { startFakeUpstream, type FakeUpstream } from './helpers/fake-upstream.js';
import { type TestMirror } from './helpers/mirror.js';
import { closeBoth, mirrorOfFakeUpstream } from './helpers/mirror-of-fake-upstream.js';
import { sha256 } from './helpers/digest.js';

const sha = sha256;
const MiB = 1024 * 1024;
v8.setFlagsFromString('--expose-gc');
/** A full collection, so that Buffer memory counts what is held, not garbage not yet collected. */
const gc = vm.runInNewContext('gc') as () => void;
/** Buffer memory held after a full collection. */
const heldBuffers = (): number => {
  gc();
  return process.memoryUsage().arrayBuffers;
};

/**
 * GETs `url`, reads 1 MiB, then reads nothing for `pauseMs`; resolves with the body and how much
 * more Buffer memory the process holds at the end of the pause than at its start.
 */
function pausedDownload(url: string, pauseMs: number): Promise<{ body: Buffer; complete: boolean; growth: number }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { agent: false }, (res) => {
        const chunks: Buffer[] = [];
        let received = 0;
        let growth = 0;
        let paused = false;
        res.on('data', (c: Buffer) => {
          chunks.push(c);
          received += c.length;
          if (paused || received < MiB) return;
          paused = true;
          res.pause();
          const base = heldBuffers();
          setTimeout(() => {
            growth = heldBuffers() - base;
            res.resume();
          }, pauseMs);
        });
        res.on('end', () => resolve({ body: Buffer.concat(chunks), complete: res.complete, growth }));
        res.on('error', reject);
      })
      .on('error', reject);
  });
}

describe('slow clients', () => {
  let upstream: FakeUpstream;
  let mirror: TestMirror;

  beforeEach(async () => ({ upstream, mirror } = await mirrorOfFakeUpstream()));
  afterEach(() => closeBoth({ upstream, mirror }));

  test('fifty connections sending headers a byte at a time do not keep others from being served', async () => {
    const port = new URL(mirror.url).port;
    const loris = await Promise.all(
      Array.from({ length: 50 }, () => new Promise<net.Socket>((r) => {
        const s = net.connect(Number(port), '127.0.0.1', () => r(s));
        s.on('error', () => undefined);
      })),
    );
    const drip = setInterval(() => loris.forEach((s) => s.write('X')), 50);
    for (const s of loris) s.write('GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Slow: ');
    try {
      const started = Date.now();
      const res = await request(mirror.url).get('/v2/');
      expect(res.status).toBe(200);
      // Not a timing target: only "not held until the slow clients give up" (30 s header timeout),
      // with room for a loaded machine.
      expect(Date.now() - started).toBeLessThan(20_000);
    } finally {
      clearInterval(drip);
      loris.forEach((s) => s.destroy());
    }
  });

  test.each([
    ['cached', true],
    ['being fetched from the upstream', false],
  ])('a client that stops reading a 64 MiB blob (%s) is not buffered for, and then gets all of it', async (_name, warm) => {
    const content = randomBytes(64 * MiB);
    const digest = upstream.addBlob('library/big', content);
    if (warm) await request(mirror.url).get(`/v2/library/big/blobs/${digest}`).expect(200);
    const res = await pausedDownload(`${mirror.url}/v2/library/big/blobs/${digest}`, 1500);
    expect(res.complete).toBe(true);
    expect(sha(res.body)).toBe(digest);
    // Socket buffers and a read-ahead of a few MiB, not the 63 MiB left to send.
    expect(res.growth).toBeLessThan(16 * MiB);
    expect(upstream.count(/^GET \/v2\/library\/big\/blobs\//)).toBe(1);
  });
});
