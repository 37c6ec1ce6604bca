/**
 * An upstream that cannot be reached at all: connection refused (nothing listens on its port) and a
 * host name that does not resolve (`.invalid`, RFC 6761). Cached content keeps being served,
 * uncached content is a registry error, nothing is stored, and the next request after the upstream
 * comes back works.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import request from 'supertest';
import { binary } from './helpers/binary.js';
import { seedImage, startFakeUpstream, type FakeUpstream } from './helpers/fake-upstream.js';
import { startMirror } from './helpers/mirror.js';

const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const ACCEPT = 'application/vnd.oci.image.manifest.v1+json';

/** A TCP forwarder to `target` on a fixed port that can be closed (refusing connections) and reopened. */
async function switchablePort(target: string): Promise<{ url: string; down(): Promise<void>; up(): Promise<void> }> {
  const t = new URL(target);
  const sockets = new Set<net.Socket>();
  let server: net.Server | undefined;
  let port = 0;
  const up = async (): Promise<void> => {
    server = net.createServer((client) => {
      const upstream = net.connect(Number(t.port), t.hostname);
      for (const s of [client, upstream]) {
        sockets.add(s);
        s.on('close', () => sockets.delete(s));
        s.on('error', () => undefined);
      }
      client.pipe(upstream).pipe(client);
    });
    await new Promise<void>((r) => server!.listen(port, '127.0.0.1', r));
    port = (server.address() as net.AddressInfo).port;
  };
  await up();
  return {
    url: `http://127.0.0.1:${port}`,
    up,
    down: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server!.close(() => r()));
    },
  };
}

describe('an unreachable upstream', () => {
  let upstream: FakeUpstream;
  beforeEach(async () => {
    upstream = await startFakeUpstream();
  });
  afterEach(async () => {
    await upstream.close();
  });

  test('connection refused: the cache answers, uncached content is 503 UNAVAILABLE, and once it is back the trial request of the circuit breaker succeeds', async () => {
    const cached = seedImage(upstream, 'library/cached', 'latest', [randomBytes(5000)]);
    const uncached = seedImage(upstream, 'library/uncached', 'latest', [randomBytes(5000)]);
    const port = await switchablePort(upstream.url);
    const mirror = await startMirror(port.url);
    try {
      await request(mirror.url).get('/v2/library/cached/manifests/latest').set('Accept', ACCEPT).expect(200);
      await request(mirror.url).get(`/v2/library/cached/blobs/${cached.layers[0]}`).expect(200);
      await port.down();

      const tag = await request(mirror.url).get('/v2/library/cached/manifests/latest').set('Accept', ACCEPT);
      expect(tag.status).toBe(200);
      expect(tag.headers['docker-content-digest']).toBe(cached.manifest);
      const blob = await request(mirror.url).get(`/v2/library/cached/blobs/${cached.layers[0]}`).buffer(true).parse(binary);
      expect(sha(blob.body as Buffer)).toBe(cached.layers[0]);
      for (const path of ['/v2/library/uncached/manifests/latest', `/v2/library/uncached/blobs/${uncached.layers[0]}`]) {
        const res = await request(mirror.url).get(path).set('Accept', ACCEPT);
        expect(res.status).toBe(503);
        expect(res.body.errors[0].code).toBe('UNAVAILABLE');
      }
      expect(mirror.logs()).toMatch(/ECONNREFUSED/);

      await port.up();
      // Three failures in a row opened the circuit: no request reaches the upstream until the
      // cool-down (5 s) lets one trial through, which succeeds and closes it.
      const hitsBefore = upstream.hits.length;
      const early = await request(mirror.url).get('/v2/library/uncached/manifests/latest').set('Accept', ACCEPT);
      expect(early.status).toBe(503);
      expect(upstream.hits.length).toBe(hitsBefore);
      await new Promise((r) => setTimeout(r, 5200));
      const back = await request(mirror.url).get('/v2/library/uncached/manifests/latest').set('Accept', ACCEPT);
      expect(back.status).toBe(200);
      expect(back.headers['docker-content-digest']).toBe(uncached.manifest);
    } finally {
      await mirror.close();
      await port.down().catch(() => undefined);
    }
  });

  test('a host name that does not resolve: the cache filled earlier is served, uncached content is 503 UNAVAILABLE', async () => {
    const root = await mkdtemp(join(tmpdir(), 'mirror-dns-'));
    const img = seedImage(upstream, 'library/app', 'v1', [randomBytes(5000)]);
    const first = await startMirror(upstream.url, { root });
    await request(first.url).get('/v2/library/app/manifests/v1').set('Accept', ACCEPT).expect(200);
    await request(first.url).get(`/v2/library/app/blobs/${img.layers[0]}`).expect(200);
    await first.close();

    const mirror = await startMirror('http://registry.example.invalid', { root, proxyYaml: 'timeouts:\n  connect: 5s' });
    try {
      const tag = await request(mirror.url).get('/v2/library/app/manifests/v1').set('Accept', ACCEPT);
      expect(tag.status).toBe(200);
      expect(tag.headers['docker-content-digest']).toBe(img.manifest);
      const blob = await request(mirror.url).get(`/v2/library/app/blobs/${img.layers[0]}`).buffer(true).parse(binary);
      expect(sha(blob.body as Buffer)).toBe(img.layers[0]);
      const missing = await request(mirror.url).get('/v2/library/other/manifests/latest').set('Accept', ACCEPT);
      expect(missing.status).toBe(503);
      expect(missing.body.errors[0].code).toBe('UNAVAILABLE');
      expect(mirror.logs()).toMatch(/ENOTFOUND|EAI_AGAIN/);
    } finally {
      await mirror.close();
      await rm(root, { recursive: true, force: true });
    }
  });
});
