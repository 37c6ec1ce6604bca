/**
 * A full disk (the kernel's real ENOSPC, on a small tmpfs) while caching: the client's download
 * still completes with verified bytes, the cache write is abandoned and reported, nothing partial
 * stays, and the upstream is read no faster than the slowest client.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { join } from 'node:path';
import request from 'supertest';
import { seedImage, startFakeUpstream, type FakeUpstream } from './helpers/fake-upstream.js';
import { startMirror, type TestMirror } from './helpers/mirror.js';
import { temporaryFiles } from './helpers/temp-files.js';
import { heldBuffers } from './helpers/held-buffers.js';
import { serverResponses } from './helpers/server-responses.js';
import { until } from './helpers/until.js';
import { describeSmallDisk, mountSmallDisk, type SmallDisk } from './helpers/small-disk.js';

const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const blobPath = (root: string, digest: string): string => join(root, 'docker/registry/v2/blobs/sha256', digest.slice(7, 9), digest.slice(7), 'data');
const MiB = 1024 * 1024;

/** GETs `url`; with `hold`, reads nothing after the first 4 MiB until `hold()` resolves. */
function download(url: string, hold?: () => Promise<void>): Promise<{ status: number; body: Buffer; complete: boolean }> {
  return new Promise((resolve) => {
    const req = http.get(url, { agent: false }, (res) => {
      const chunks: Buffer[] = [];
      let paused = false;
      let received = 0;
      res.on('data', (c: Buffer) => {
        chunks.push(c);
        received += c.length;
        if (hold && !paused && received >= 4 * MiB) {
          paused = true;
          res.pause();
          hold().then(
            () => res.resume(),
            (err: unknown) => res.destroy(err as Error),
          );
        }
      });
      res.on('end', () => resolve({ status: res.statusCode!, body: Buffer.concat(chunks), complete: res.complete }));
      res.on('error', () => resolve({ status: res.statusCode!, body: Buffer.concat(chunks), complete: false }));
    });
    req.on('error', () => resolve({ status: 0, body: Buffer.alloc(0), complete: false }));
  });
}

describeSmallDisk('a full disk while caching', () => {
  let disk: SmallDisk;
  let upstream: FakeUpstream;
  let mirror: TestMirror;

  beforeEach(async () => {
    disk = mountSmallDisk(4 * MiB)!;
    upstream = await startFakeUpstream();
    mirror = await startMirror(upstream.url, { root: disk.path });
  });
  afterEach(async () => {
    await mirror.close();
    await upstream.close();
    disk.unmount();
  });

  const failures = async (): Promise<string> => mirror.registry.metrics.registry.getSingleMetricAsString('registry_mirror_cache_write_failures_total');

  test('a blob larger than the free space is served whole and verified; nothing partial stays; it is reported', async () => {
    const content = randomBytes(12 * MiB);
    const digest = upstream.addBlob('library/big', content);
    const res = await download(`${mirror.url}/v2/library/big/blobs/${digest}`);
    expect(res.status).toBe(200);
    expect(res.complete).toBe(true);
    expect(sha(res.body)).toBe(digest);
    expect(existsSync(blobPath(disk.path, digest))).toBe(false);
    expect(await temporaryFiles(disk.path)).toEqual([]);
    expect(mirror.logs()).toMatch(/level=error msg="cache write abandoned[^"]*" .*ENOSPC.* type=blob vars\.digest=sha256:[0-9a-f]{64} vars\.name=library\/big/);
    expect(await failures()).toMatch(/type="blob"} 1/);

    // The abandoned temporary file gave its space back: a blob that fits is cached as usual.
    const small = randomBytes(MiB);
    const smallDigest = upstream.addBlob('library/big', small);
    const fits = await download(`${mirror.url}/v2/library/big/blobs/${smallDigest}`);
    expect(sha(fits.body)).toBe(smallDigest);
    expect(existsSync(blobPath(disk.path, smallDigest))).toBe(true);
  });

  test('concurrent clients of a blob the disk cannot hold all get it whole', async () => {
    const content = randomBytes(10 * MiB);
    const digest = upstream.addBlob('library/big', content);
    const results = await Promise.all(Array.from({ length: 5 }, () => download(`${mirror.url}/v2/library/big/blobs/${digest}`)));
    for (const r of results) {
      expect(r.complete).toBe(true);
      expect(sha(r.body)).toBe(digest);
    }
    expect(upstream.count(/^GET \/v2\/library\/big\/blobs\//)).toBeLessThanOrEqual(5);
    expect(existsSync(blobPath(disk.path, digest))).toBe(false);
  });

  test('past the disk, a paused client holds the upstream back instead of being buffered in memory', async () => {
    const content = randomBytes(48 * MiB);
    const digest = upstream.addBlob('library/big', content);
    const responses = serverResponses();
    const mirrorPort = Number(new URL(mirror.url).port);
    let pause: { queued: number; growth: number } | undefined;
    try {
      const res = await download(`${mirror.url}/v2/library/big/blobs/${digest}`, async () => {
        const base = await heldBuffers();
        const began = Date.now();
        let [last, since] = [-1, Date.now()];
        // Until the mirror has stopped writing to the paused connection (its byte count unchanged for
        // 500 ms, at least 1.5 s): waiting for the condition, as a loaded machine may take long.
        await until(
          () => {
            const written = responses.of(mirrorPort).at(-1)?.socket?.bytesWritten ?? -1;
            if (written !== last) [last, since] = [written, Date.now()];
            return Date.now() - began >= 1500 && Date.now() - since >= 500;
          },
          'the mirror to stop writing to the paused client',
          90_000,
        );
        // Read after collections, not garbage of the moment.
        pause = { queued: responses.of(mirrorPort).at(-1)!.writableLength, growth: (await heldBuffers()) - base };
      });
      expect(res.complete).toBe(true);
      expect(sha(res.body)).toBe(digest);
    } finally {
      responses.stop();
    }
    // The mechanism: the mirror stopped handing the blob to the paused connection, so nothing piles
    // up in the response's and its socket's buffers (a chunk of the upstream's at most, not the
    // 44 MiB that do not fit on the disk) ...
    expect(pause!.queued).toBeLessThan(2 * MiB);
    // ... and nothing is held for it further up either: the growth of Buffer memory held while the
    // client reads nothing is the mirror's window and socket buffers, not the rest of the blob.
    expect(pause!.growth).toBeLessThan(20 * MiB);
  });

  test('wrong bytes past the disk still end in an aborted transfer', async () => {
    const digest = upstream.addBlob('library/big', randomBytes(10 * MiB));
    upstream.fault(/^GET \/v2\/library\/big\/blobs\//, { kind: 'wrong-bytes' }, 1);
    const res = await download(`${mirror.url}/v2/library/big/blobs/${digest}`);
    expect(res.complete).toBe(false);
    expect(existsSync(blobPath(disk.path, digest))).toBe(false);
  });

  test('with no space at all, manifests and blobs are served uncached, and cached once space is back', async () => {
    const img = seedImage(upstream, 'library/app', 'latest', [randomBytes(200_000)]);
    const filler = join(disk.path, 'filler');
    await writeFile(filler, Buffer.alloc(4 * MiB)).catch(() => undefined);
    const accept = 'application/vnd.oci.image.manifest.v1+json';
    const manifest = await request(mirror.url).get('/v2/library/app/manifests/latest').set('Accept', accept);
    expect(manifest.status).toBe(200);
    expect(manifest.headers['docker-content-digest']).toBe(img.manifest);
    const layer = await download(`${mirror.url}/v2/library/app/blobs/${img.layers[0]}`);
    expect(layer.complete).toBe(true);
    expect(sha(layer.body)).toBe(img.layers[0]);
    expect(await failures()).toMatch(/type="manifest"} [1-9]/);

    await rm(filler);
    await request(mirror.url).get('/v2/library/app/manifests/latest').set('Accept', accept).expect(200);
    await download(`${mirror.url}/v2/library/app/blobs/${img.layers[0]}`);
    expect(existsSync(blobPath(disk.path, img.manifest))).toBe(true);
    expect(existsSync(blobPath(disk.path, img.layers[0]!))).toBe(true);
  });
});
