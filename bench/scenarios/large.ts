/**
 * The large-image scenario (issue 31): an image of a few multi-GiB incompressible layers
 * (`BENCH_LARGE_MIB` in all, 4 GiB by default, 512 MiB with `BENCH_QUICK=1`), pulled cold with
 * skopeo through each contender, once with the upstream on the loopback and once behind the link
 * emulator's first WAN profile. Reported side by side: the time, the contender's peak RSS (a fresh
 * process per pull, so the peak is the pull's), and the link limit (the image's bytes over the
 * bandwidth plus the 3 round trips no pull can avoid: the connection, the manifest, the blobs).
 *
 * The layers are generated once per run (AES-256-CTR over zeros, streamed into an upload while
 * hashed, never held in memory nor written to a local file) and live only in the upstream's
 * storage, which the bench deletes at the end. Their bytes are random, not tar archives: skopeo
 * copying to `dir:` checks digests and never unpacks a layer.
 */
import { createCipheriv, createHash } from 'node:crypto';
import http from 'node:http';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { freshContender, secondsSince, type BenchContext } from '../context.js';
import { startLinkEmulator } from '../link-emulator.js';
import { contenders } from '../servers.js';
import { median } from '../results.js';
import { registerReport, type Target } from '../report.js';
import { pull } from './cold.js';

/** The repository of the large image. */
export const LARGE_REPO = 'bench/large';
const MiB = 2 ** 20;
/** Round trips a cold pull of one image cannot avoid: the connection, the manifest, the blobs (in parallel). */
const ROUND_TRIPS = 3;
/** Worst peak RSS allowed during a large pull, MiB. */
const RSS_LIMIT_MIB = 128;

/** The pushed image: its total bytes (manifest, config, layers). */
export interface LargeImage {
  readonly ref: string;
  readonly bytes: number;
  readonly layers: number[];
}

/** Layer sizes for `total` bytes: half, three eighths, one eighth (a few multi-GiB layers at 4 GiB). */
export function largeLayerSizes(total: number): number[] {
  const a = Math.floor(total / 2);
  const b = Math.floor((total * 3) / 8);
  return [a, b, total - a - b];
}

function call(
  url: string,
  method: string,
  headers: Record<string, string | number>,
  body?: Buffer,
): Promise<{ status: number; location?: string; text: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode!, location: res.headers.location, text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** Streams `size` bytes of AES-CTR(`seed`) into a new upload (one PATCH), hashing them on the way; returns the digest. */
async function streamBlob(registry: string, repo: string, seed: string, size: number): Promise<string> {
  const start = await call(`${registry}/v2/${repo}/blobs/uploads/`, 'POST', { 'content-length': 0 });
  if (start.status !== 202 || !start.location) throw new Error(`upload start: ${start.status} ${start.text}`);
  const cipher = createCipheriv('aes-256-ctr', createHash('sha256').update(seed).digest(), Buffer.alloc(16));
  const hash = createHash('sha256');
  const zeros = Buffer.alloc(16 * MiB);
  const patched = await new Promise<{ status: number; location?: string; text: string }>((resolve, reject) => {
    const req = http.request(
      new URL(start.location!, registry),
      { method: 'PATCH', headers: { 'content-type': 'application/octet-stream', 'content-length': size } },
      (res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode!, location: res.headers.location, text }));
      },
    );
    req.on('error', reject);
    let left = size;
    const write = (): void => {
      while (left > 0) {
        const chunk = cipher.update(zeros.subarray(0, Math.min(zeros.length, left)));
        left -= chunk.length;
        hash.update(chunk);
        if (!req.write(chunk)) return void req.once('drain', write);
      }
      req.end();
    };
    write();
  });
  if (patched.status !== 202 || !patched.location) throw new Error(`upload of ${seed}: ${patched.status} ${patched.text}`);
  const digest = `sha256:${hash.digest('hex')}`;
  const done = new URL(patched.location, registry);
  done.searchParams.set('digest', digest);
  const put = await call(done.toString(), 'PUT', { 'content-length': 0 });
  if (put.status !== 201) throw new Error(`upload of ${seed} (${digest}): ${put.status} ${put.text}`);
  return digest;
}

/** Pushes `bench/large:latest` (OCI, layers of `largeLayerSizes(total)`) to the upstream. */
export async function seedLarge(registry: string, total: number): Promise<LargeImage> {
  const layerSizes = largeLayerSizes(total);
  const layers = [];
  for (const [i, size] of layerSizes.entries()) {
    layers.push({ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: await streamBlob(registry, LARGE_REPO, `large/${i}`, size), size });
  }
  const configBody = Buffer.from(
    JSON.stringify({ architecture: 'amd64', os: 'linux', config: {}, rootfs: { type: 'layers', diff_ids: layers.map((l) => l.digest) } }),
  );
  const configDigest = `sha256:${createHash('sha256').update(configBody).digest('hex')}`;
  const post = await call(`${registry}/v2/${LARGE_REPO}/blobs/uploads/`, 'POST', { 'content-length': 0 });
  const configUrl = new URL(post.location!, registry);
  configUrl.searchParams.set('digest', configDigest);
  const put = await call(configUrl.toString(), 'PUT', { 'content-length': configBody.length, 'content-type': 'application/octet-stream' }, configBody);
  if (put.status !== 201) throw new Error(`config upload: ${put.status} ${put.text}`);
  const mediaType = 'application/vnd.oci.image.manifest.v1+json';
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType,
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: configDigest, size: configBody.length },
      layers,
    }),
  );
  const m = await call(`${registry}/v2/${LARGE_REPO}/manifests/latest`, 'PUT', { 'content-type': mediaType, 'content-length': manifest.length }, manifest);
  if (m.status !== 201) throw new Error(`manifest: ${m.status} ${m.text}`);
  return { ref: `${LARGE_REPO}:latest`, bytes: manifest.length + configBody.length + total, layers: layerSizes };
}

/** One round: for each contender, a cold pull on the loopback and one over the first WAN profile. */
export async function largeRound(ctx: BenchContext, image: LargeImage, round: number): Promise<void> {
  const p = ctx.settings.wanProfiles[0]!;
  const limit = image.bytes / (p.mbPerSec * 1e6) + (ROUND_TRIPS * p.rttMs) / 1000;
  const gib = (image.bytes / 2 ** 30).toFixed(2);
  for (const who of contenders(round)) {
    const server = await freshContender(ctx, who, `r${round}-large`);
    try {
      const start = process.hrtime.bigint();
      await pull(server.hostPort, join(server.root, '..', 'pulled'), image.ref, [], 900_000);
      const seconds = secondsSince(start);
      const rss = await server.peakRss();
      ctx.results.add('large_loop_s', who, round, seconds);
      ctx.results.add('large_loop_rss', who, round, rss);
      ctx.log(`  large image (${gib} GiB) cold, loopback, ${who}: ${seconds.toFixed(2)} s, peak RSS ${(rss / MiB).toFixed(0)} MiB`);
    } finally {
      await server.done();
    }
  }
  for (const who of contenders(round)) {
    const link = await startLinkEmulator(ctx.upstream.hostPort, { rttMs: p.rttMs, bytesPerSec: p.mbPerSec * 1e6 });
    try {
      const server = await freshContender(ctx, who, `r${round}-large-wan`, link.url);
      try {
        const start = process.hrtime.bigint();
        // distribution 2.8 fetches every blob twice from the upstream: give it room beyond the limit.
        const failed = await pull(server.hostPort, join(server.root, '..', 'pulled'), image.ref, [], Math.ceil(Math.max(300, 4 * limit) * 1000)).then(
          () => undefined,
          (err: Error) => err,
        );
        const seconds = secondsSince(start);
        if (failed) {
          ctx.results.notes.push(`round ${round + 1} large image over the WAN, ${who}: the pull failed after ${seconds.toFixed(0)} s: ${failed.message}`);
          ctx.log(`  large image cold, WAN, ${who}: failed after ${seconds.toFixed(0)} s`);
          continue;
        }
        const rss = await server.peakRss();
        const down = link.stats().bytesDown / image.bytes;
        ctx.results.add('large_wan_s', who, round, seconds);
        ctx.results.add('large_wan_x_limit', who, round, seconds / limit);
        ctx.results.add('large_wan_rss', who, round, rss);
        ctx.log(
          `  large image cold, WAN ${p.rttMs} ms / ${p.mbPerSec} MB/s, ${who}: ${seconds.toFixed(2)} s, ${(seconds / limit).toFixed(3)}x the limit of ${limit.toFixed(2)} s, peak RSS ${(rss / MiB).toFixed(0)} MiB, ${down.toFixed(3)}x the image over the link`,
        );
      } finally {
        await rm(join(server.root, '..', 'pulled'), { recursive: true, force: true });
        await server.done();
      }
    } finally {
      await link.close();
    }
  }
  ctx.results.add('large_wan_limit_s', 'ours', round, limit);
}

/** The rows and targets: loopback time <= the official's, WAN time <= 1.1x the link limit, peak RSS <= 128 MiB. */
export function registerLargeReport(image: LargeImage, p: { rttMs: number; mbPerSec: number }): void {
  const gib = (image.bytes / 2 ** 30).toFixed(2);
  const wan = `WAN ${p.rttMs} ms / ${p.mbPerSec} MB/s`;
  const worstRss: Target['value'] = (r) => Math.max(...r.values('large_loop_rss', 'ours'), ...r.values('large_wan_rss', 'ours')) / MiB;
  registerReport({
    metrics: [
      { id: 'large_loop_s', label: `L. large image (${gib} GiB, ${image.layers.length} layers) cold, loopback`, unit: 's', scale: 1, digits: 2 },
      { id: 'large_loop_rss', label: '   (peak RSS, loopback)', unit: 'MiB', scale: 1 / MiB, digits: 0 },
      { id: 'large_wan_s', label: `   large image cold, ${wan}`, unit: 's', scale: 1, digits: 2 },
      { id: 'large_wan_limit_s', label: '   (the link limit)', unit: 's', scale: 1, digits: 2 },
      { id: 'large_wan_x_limit', label: '   (cold pull / link limit)', unit: 'x', scale: 1, digits: 3 },
      { id: 'large_wan_rss', label: `   (peak RSS, ${wan})`, unit: 'MiB', scale: 1 / MiB, digits: 0 },
    ],
    targets: [
      { label: 'large image cold, loopback, ours/official', value: (r) => median(r.ratios('large_loop_s', 'ours', 'official')), op: '<=', limit: 1 },
      { label: `large image cold, ${wan} / link limit`, value: (r) => median(r.values('large_wan_x_limit', 'ours')), op: '<=', limit: 1.1 },
      { label: 'large image peak RSS (MiB, worst)', value: worstRss, op: '<=', limit: RSS_LIMIT_MIB },
    ],
  });
}
