/**
 * The S3 scenario (`BENCH_ONLY=s3`), on a Ceph RADOS Gateway started for the run (the test
 * helper's starter): issue 16's targets for our mirror on S3.
 * - cold pull time of the multi-layer image on S3, against the same pull on the filesystem driver,
 *   and the same two pulls through each official contender (`BENCH_S3_OFFICIALS=0`: not), whose
 *   own S3/filesystem ratio is the gateway's cost on this machine (it runs on the same cores);
 * - warm blob GET with redirects on: the mirror's 307 latency (p50/p99 of sequential requests on one
 *   keep-alive connection), the bytes then coming from the gateway;
 * - warm blob GET with redirects off: the mirror's streamed throughput against a direct (presigned)
 *   GET of the same object from the gateway.
 */
import http from 'node:http';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { skopeo } from '../../spec/helpers/skopeo.js';
import { createBucket, s3Parameters, s3StorageYaml, startCeph, type CephEndpoint } from '../../spec/helpers/ceph.js';
import { APP_REPO, BIG_REPO, secondsSince, type BenchContext } from '../context.js';
import { contenders, startContender, type Contender } from '../servers.js';
import { onCleanup } from '../cleanup.js';
import { median } from '../results.js';

const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

/** One GET on the keep-alive agent; resolves with the status, the Location and the body's length. */
function get(url: string, keepAlive = true): Promise<{ status: number; location?: string; bytes: number }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: keepAlive ? agent : false }, (res) => {
      let bytes = 0;
      res.on('data', (c: Buffer) => (bytes += c.length));
      res.on('end', () => resolve({ status: res.statusCode!, location: res.headers.location, bytes }));
      res.on('error', reject);
    });
    req.on('error', reject);
  });
}

let ceph: CephEndpoint | undefined;

/** The run's Ceph RGW, started on first use (the S3 and replicas scenarios share it). */
export async function cephGateway(ctx: BenchContext): Promise<CephEndpoint> {
  if (ceph) return ceph;
  const started = await startCeph();
  onCleanup(() => started.stop());
  ctx.log(`  Ceph RGW at ${started.endpoint}`);
  return (ceph = started);
}

/**
 * A contender on a fresh bucket (or the filesystem when `bucket` is undefined). Path-style keys:
 * distribution v3 needs `forcepathstyle` for the gateway (2.8 goes path-style by itself with a
 * `regionendpoint`, and ignores the key).
 */
async function contender(ctx: BenchContext, who: Contender, label: string, bucket: string | undefined, redirect: boolean) {
  const storage = bucket ? [...s3StorageYaml(s3Parameters(ceph!, bucket, { forcepathstyle: true })), '  redirect:', `    disable: ${!redirect}`] : undefined;
  return startContender(who, ctx.upstream.url, join(ctx.workDir, label), [], storage);
}

/** One round of the three measurements. */
export async function s3Round(ctx: BenchContext, round: number): Promise<void> {
  const c = await cephGateway(ctx);
  for (const who of ctx.settings.s3Officials ? contenders(round) : (['ours'] as const)) {
    const pulled: Partial<Record<'fs' | 's3', number>> = {};
    for (const where of round % 2 === 0 ? (['fs', 's3'] as const) : (['s3', 'fs'] as const)) {
      const bucket = where === 's3' ? await createBucket(c, 'bench') : undefined;
      const server = await contender(ctx, who, `r${round}-s3cold-${who}-${where}`, bucket, true);
      try {
        const dest = join(ctx.workDir, `r${round}-s3cold-${who}-${where}-pulled`);
        await mkdir(dest, { recursive: true });
        const start = process.hrtime.bigint();
        const r = await skopeo(['copy', '--src-tls-verify=false', `docker://${server.hostPort}/${APP_REPO}:latest`, `dir:${dest}`], { timeoutMs: 300_000 });
        if (r.code !== 0) throw new Error(`cold pull through ${who} on ${where} failed: ${r.stderr}`);
        const s = (pulled[where] = secondsSince(start));
        ctx.results.add(`s3_cold_pull_${where}`, who, round, s);
        ctx.log(`  cold pull, ${who} on ${where}: ${s.toFixed(2)} s`);
      } finally {
        await server.stop();
      }
    }
    ctx.results.add('s3_cold_pull_ratio', who, round, pulled.s3! / pulled.fs!);
  }

  const blob = ctx.warmBlob;
  const bucket = await createBucket(c, 'bench-warm');
  const redirecting = await contender(ctx, 'ours', `r${round}-s3warm-redirect`, bucket, true);
  try {
    const url = `${redirecting.url}/v2/${BIG_REPO}/blobs/${blob.digest}`;
    // The first GET caches the blob (streamed from the upstream); the next ones are redirected.
    if ((await get(url)).bytes !== blob.size) throw new Error('the cold GET did not return the whole blob');
    const times: number[] = [];
    let location = '';
    for (let i = 0; i < 2000; i++) {
      const start = process.hrtime.bigint();
      const res = await get(url);
      times.push(secondsSince(start) * 1000);
      if (res.status !== 307) throw new Error(`expected a 307, got ${res.status}`);
      location = res.location!;
    }
    times.sort((a, b) => a - b);
    const p99 = times[Math.floor(times.length * 0.99)]!;
    ctx.results.add('s3_redirect_p50_ms', 'ours', round, median(times));
    ctx.results.add('s3_redirect_p99_ms', 'ours', round, p99);
    ctx.log(`  307 on S3: p50 ${median(times).toFixed(2)} ms, p99 ${p99.toFixed(2)} ms`);

    const direct = await throughput(location, blob.size);
    const streaming = await contender(ctx, 'ours', `r${round}-s3warm-stream`, bucket, false);
    try {
      const streamed = await throughput(`${streaming.url}/v2/${BIG_REPO}/blobs/${blob.digest}`, blob.size);
      ctx.results.add('s3_streamed_mibs', 'ours', round, streamed);
      ctx.results.add('s3_direct_mibs', 'ours', round, direct);
      ctx.log(`  warm blob without redirects: ${streamed.toFixed(0)} MiB/s streamed by ours, ${direct.toFixed(0)} MiB/s directly from the gateway`);
    } finally {
      await streaming.stop();
    }
  } finally {
    await redirecting.stop();
  }
}

/** MiB/s of the best of three whole-blob GETs on fresh connections. */
async function throughput(url: string, size: number): Promise<number> {
  let best = 0;
  for (let i = 0; i < 3; i++) {
    const start = process.hrtime.bigint();
    const res = await get(url, false);
    if (res.status !== 200 || res.bytes !== size) throw new Error(`GET ${url}: ${res.status}, ${res.bytes} bytes`);
    best = Math.max(best, size / 2 ** 20 / secondsSince(start));
  }
  return best;
}
