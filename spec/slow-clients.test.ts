/**
 * Slow clients cannot hold the server: connections that never finish their headers do not stop
 * others being served, and a client that stops reading a large blob (cached or being fetched) makes
 * the mirror stop writing to it too, instead of buffering the blob in memory for it.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { join } from 'node:path';
import request from 'supertest';
import type { FakeUpstream } from './helpers/fake-upstream.js';
import { type TestMirror } from './helpers/mirror.js';
import { closeBoth, mirrorOfFakeUpstream } from './helpers/mirror-of-fake-upstream.js';
import { sha256 } from './helpers/digest.js';
import { until } from './helpers/until.js';
import { heldBuffers } from './helpers/held-buffers.js';
import { serverResponses } from './helpers/server-responses.js';
import { parseDigest } from '../lib/distribution/digest.js';
import { blobDataPath } from '../lib/storage/paths.js';

const sha = sha256;
const MiB = 1024 * 1024;

/** What the mirror did while its client read nothing. */
interface Pause {
  /** Bytes the client had received when it stopped reading. */
  readonly receivedAtPause: number;
  /** Bytes the mirror had handed to the connection (sent, or queued in its memory) at the end of the pause. */
  readonly handedOver: number;
  /** Bytes queued in the mirror's memory for the connection (the response's and its socket's buffers) at the end. */
  readonly queued: number;
  /**
   * How much more Buffer memory the whole process (mirror, fake upstream, client) held at the end
   * of the pause than at its start. Meaningful only with nothing else in flight at the end: at the
   * start a transfer is under way, and its buffers of the moment (tens of MiB at times under load)
   * can only make this smaller.
   */
  readonly growth: number;
}

/**
 * GETs `url`, reads 1 MiB, then reads nothing until `ready()` holds and the mirror's response
 * (`response()`) has stopped writing (its byte count unchanged for 500 ms), at least 1.5 s;
 * resolves with the body and what the mirror did during the pause.
 */
function pausedDownload(
  url: string,
  response: () => http.ServerResponse | undefined,
  ready: () => boolean,
): Promise<{ body: Buffer; complete: boolean; pause: Pause }> {
  return new Promise((resolve, reject) => {
    let pause: Pause | undefined;
    http
      .get(url, { agent: false }, (res) => {
        const chunks: Buffer[] = [];
        let received = 0;
        let paused = false;
        const hold = async (): Promise<void> => {
          const receivedAtPause = received;
          const base = await heldBuffers();
          const began = Date.now();
          let last = -1;
          let since = Date.now();
          // Waiting for a condition, not for a time: on a loaded machine the mirror may need long to get there.
          await until(
            () => {
              const written = response()?.socket?.bytesWritten ?? -1;
              if (written !== last) [last, since] = [written, Date.now()];
              return ready() && Date.now() - began >= 1500 && Date.now() - since >= 500;
            },
            'the mirror to stop writing to the paused client',
            90_000,
          );
          const r = response()!;
          pause = { receivedAtPause, handedOver: r.socket!.bytesWritten, queued: r.writableLength, growth: (await heldBuffers()) - base };
        };
        res.on('data', (c: Buffer) => {
          chunks.push(c);
          received += c.length;
          if (paused || received < MiB) return;
          paused = true;
          res.pause();
          hold().then(
            () => res.resume(),
            (err: unknown) => res.destroy(err as Error),
          );
        });
        res.on('end', () => resolve({ body: Buffer.concat(chunks), complete: res.complete, pause: pause! }));
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
      Array.from(
        { length: 50 },
        () =>
          new Promise<net.Socket>((r) => {
            const s = net.connect(Number(port), '127.0.0.1', () => r(s));
            s.on('error', () => undefined);
          }),
      ),
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
  ])(
    'a client that stops reading a 64 MiB blob (%s) is not buffered for, and then gets all of it',
    async (_name, warm) => {
      const content = randomBytes(64 * MiB);
      const digest = upstream.addBlob('library/big', content);
      if (warm) await request(mirror.url).get(`/v2/library/big/blobs/${digest}`).expect(200);
      const responses = serverResponses();
      try {
        const mirrorPort = Number(new URL(mirror.url).port);
        const upstreamPort = Number(new URL(upstream.url).port);
        // Being fetched: the pause lasts until the upstream has sent the whole blob and the mirror has
        // stored it (it reads the upstream at the disk's pace, not at its client's), so that a mirror
        // buffering for its client would have all of it to buffer, and nothing else is in flight.
        const stored = join(mirror.root, blobDataPath(parseDigest(digest)!));
        const upstreamDone = (): boolean => warm || (responses.of(upstreamPort).some((r) => r.writableFinished) && existsSync(stored));
        const res = await pausedDownload(`${mirror.url}/v2/library/big/blobs/${digest}`, () => responses.of(mirrorPort).at(-1), upstreamDone);
        expect(res.complete).toBe(true);
        expect(sha(res.body)).toBe(digest);
        // The mirror stopped handing the blob to the paused connection: nothing piles up in its memory
        // (one read of the store at most: a 1 MiB chunk of a cached file, 64 KiB of a fetch; not the
        // 63 MiB left to send) ...
        expect(res.pause.queued).toBeLessThan(2 * MiB);
        // ... and what it handed over is what the client read plus the kernel's socket buffers
        // (loopback: up to 4 MiB sending, and a receive window that grows while the client reads).
        expect(res.pause.handedOver - res.pause.receivedAtPause).toBeLessThan(24 * MiB);
        // ... and nothing is held for it further up either (a read-ahead of the blob in the stream
        // that feeds the response would be here): socket buffers and a read-ahead of a few MiB.
        expect(res.pause.growth).toBeLessThan(16 * MiB);
        expect(upstream.count(/^GET \/v2\/library\/big\/blobs\//)).toBe(1);
      } finally {
        responses.stop();
      }
      // A 64 MiB blob through the mirror twice on a loaded machine (100 s seen at load 26).
    },
    240_000,
  );
});
