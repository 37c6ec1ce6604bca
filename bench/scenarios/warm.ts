/**
 * Scenarios 1, 2, 3 and 7, on long-lived contenders whose cache is warm: blob throughput (4 readers
 * of a cached 256 MiB blob, and nginx sendfile on the very same file as the ceiling), manifest by
 * tag and by digest (wrk, 16 connections, upstream reachable).
 */
import http from 'node:http';
import { join } from 'node:path';
import { rm, writeFile } from 'node:fs/promises';
import { APP_REPO, BIG_REPO, blobDataPath, waitForBlobOnDisk, type BenchContext } from '../context.js';
import { BulkGetter, bulkThroughput } from '../http-client.js';
import { runWrk } from '../wrk.js';
import { contenders, startCeiling, startContender, startNginx, type Contender } from '../servers.js';
import type { ServerProcess } from '../proc.js';
import { onCleanup } from '../cleanup.js';

/** The manifest types a client accepts (skopeo's list, shortened). */
export const ACCEPT = [
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
].join(', ');

/** The warm contenders and nginx. */
export interface WarmRig {
  readonly servers: Record<Contender, ServerProcess & { root: string }>;
  readonly nginx: ServerProcess;
  /** The manifest by digest's ceilings: a bare express handler and a bare `node:http` one sending the same bytes. */
  readonly ceilings: { readonly express: ServerProcess; readonly 'node-http': ServerProcess };
  stop(): Promise<void>;
}

function getStatus(url: string): Promise<number> {
  return getManifest(url).then((r) => r.status);
}

function getManifest(url: string): Promise<{ status: number; body: Buffer; mediaType: string }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { headers: { accept: ACCEPT }, agent: false }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode!, body: Buffer.concat(chunks), mediaType: String(res.headers['content-type']) }));
      })
      .on('error', reject);
  });
}

/** Starts every contender, fills their caches (blob committed, manifest stored) and starts nginx. */
export async function startWarmRig(ctx: BenchContext): Promise<WarmRig> {
  const servers = {} as Record<Contender, ServerProcess & { root: string }>;
  const undo: Array<() => Promise<void>> = [];
  for (const who of contenders(0)) {
    const dir = join(ctx.workDir, `warm-${who}`);
    undo.push(onCleanup(() => rm(dir, { recursive: true, force: true })));
    const s = await startContender(who, ctx.upstream.url, dir);
    undo.push(s.stop);
    servers[who] = s;
    const getter = new BulkGetter(s.hostPort, `/v2/${BIG_REPO}/blobs/${ctx.warmBlob.digest}`);
    const r = await getter.get();
    getter.close();
    if (r.status !== 200 || r.bytes !== ctx.warmBlob.size) throw new Error(`${who}: warming the blob gave ${r.status}, ${r.bytes} bytes`);
    await waitForBlobOnDisk(s.root, ctx.warmBlob);
    for (const ref of ['latest', ctx.app.manifest.digest, 'latest']) {
      const status = await getStatus(`${s.url}/v2/${APP_REPO}/manifests/${ref}`);
      if (status !== 200) throw new Error(`${who}: manifest ${ref} answered ${status}`);
    }
  }
  const nginx = await startNginx(blobDataPath(servers.ours.root, ctx.warmBlob.digest), join(ctx.workDir, 'nginx'));
  undo.push(nginx.stop);
  // The ceilings send the very bytes and headers ours sends for the manifest by digest.
  const m = await getManifest(`${servers.ours.url}/v2/${APP_REPO}/manifests/${ctx.app.manifest.digest}`);
  const payloadFile = join(ctx.workDir, 'ceiling-manifest.json');
  await writeFile(payloadFile, m.body);
  const ceilings = {} as { express: ServerProcess; 'node-http': ServerProcess };
  for (const [who, mode] of [
    ['express', 'express'],
    ['node-http', 'http'],
  ] as const) {
    ceilings[who] = await startCeiling(mode, payloadFile, m.mediaType, ctx.app.manifest.digest);
    undo.push(ceilings[who].stop);
  }
  return {
    servers,
    nginx,
    ceilings,
    stop: async () => {
      for (const u of undo.reverse()) await u();
    },
  };
}

/** Scenario 1 and 7: bytes/s of `blobReaders` concurrent readers, each contender and nginx in turn. */
export async function warmBlobRound(ctx: BenchContext, rig: WarmRig, round: number): Promise<void> {
  const { blobReaders, blobSeconds } = ctx.settings;
  const order = [...contenders(round), 'nginx' as const];
  if (round % 3 === 2) order.unshift(order.pop()!);
  for (const who of order) {
    const server = who === 'nginx' ? rig.nginx : rig.servers[who];
    const path = who === 'nginx' ? '/blob' : `/v2/${BIG_REPO}/blobs/${ctx.warmBlob.digest}`;
    const cpuBefore = await server.cpuSeconds();
    const r = await bulkThroughput(server.hostPort, path, blobReaders, blobSeconds * 1000);
    const cpuPerGiB = ((await server.cpuSeconds()) - cpuBefore) / (r.bytes / 2 ** 30);
    ctx.results.add('warm_blob', who, round, r.bytesPerSec);
    ctx.results.add('warm_blob_cpu', who, round, cpuPerGiB);
    ctx.log(`  warm blob ${who}: ${(r.bytesPerSec / 2 ** 20).toFixed(0)} MiB/s (${r.requests} GETs), server CPU ${cpuPerGiB.toFixed(3)} s/GiB`);
  }
  // The client check: wrk reading the same nginx file. If wrk is not faster, the Node client is not the limit.
  const w = await runWrk(`${rig.nginx.url}/blob`, { connections: blobReaders, threads: 2, seconds: blobSeconds });
  ctx.results.add('warm_blob', 'nginx-wrk', round, w.bytesPerSec);
  ctx.log(`  warm blob nginx (wrk as client): ${(w.bytesPerSec / 2 ** 20).toFixed(0)} MiB/s`);
}

/** Scenarios 2 and 3: manifest GETs per second by tag and by digest, wrk with `manifestClients` connections. */
export async function manifestRound(ctx: BenchContext, rig: WarmRig, round: number): Promise<void> {
  const refs = { manifest_tag: 'latest', manifest_digest: ctx.app.manifest.digest };
  for (const [metric, ref] of Object.entries(refs)) {
    for (const who of contenders(round)) {
      const r = await runWrk(`${rig.servers[who].url}/v2/${APP_REPO}/manifests/${ref}`, {
        connections: ctx.settings.manifestClients,
        threads: 2,
        seconds: ctx.settings.wrkSeconds,
        headers: { Accept: ACCEPT },
      });
      if (r.errors > 0) ctx.results.notes.push(`round ${round + 1} ${metric} ${who}: ${r.errors} of ${r.requests} requests failed`);
      ctx.results.add(metric, who, round, r.errors > 0 ? (r.requestsPerSec * (r.requests - r.errors)) / Math.max(1, r.requests) : r.requestsPerSec);
      ctx.log(`  ${metric} ${who}: ${r.requestsPerSec.toFixed(0)} req/s${r.errors ? `, ${r.errors} errors` : ''}`);
    }
  }
  // The ceilings of the manifest by digest, in the same round: what express and node:http cost alone.
  for (const who of ['express', 'node-http'] as const) {
    const r = await runWrk(`${rig.ceilings[who].url}/v2/${APP_REPO}/manifests/${ctx.app.manifest.digest}`, {
      connections: ctx.settings.manifestClients,
      threads: 2,
      seconds: ctx.settings.wrkSeconds,
      headers: { Accept: ACCEPT },
    });
    ctx.results.add('manifest_digest', who, round, r.requestsPerSec);
    ctx.log(`  manifest_digest bare ${who}: ${r.requestsPerSec.toFixed(0)} req/s`);
  }
}
