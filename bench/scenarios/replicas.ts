/**
 * The replicas scenario (`BENCH_ONLY=replicas`): issue 16's targets for three replica processes
 * of our mirror on S3 (a Ceph RADOS Gateway started for the run) coordinated by Redis (a
 * redis-server started for the run), their upstream behind the link emulator, which counts the
 * requests that reach it.
 * - 30 concurrent cold GETs of a 64 MiB blob spread over the three: upstream GETs of it (target 1),
 *   bodies that hash right (30), wall time;
 * - the replica fetching a 64 MiB blob (over a 16 MiB/s link) killed one second in, four clients of
 *   the two others waiting: upstream GETs of it (target: at most 2), their bodies, wall time.
 * Ours only: the official registry has no coordination to compare with.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { createBucket, s3Parameters, s3StorageYaml } from '../../spec/helpers/ceph.js';
import { startRedis, type RedisServer } from '../../spec/helpers/redis.js';
import { startReplica, type Replica } from '../../spec/helpers/replica.js';
import { getHashed } from '../../spec/helpers/hashed-get.js';
import { BIG_REPO, secondsSince, type BenchContext } from '../context.js';
import { onCleanup } from '../cleanup.js';
import { startLinkEmulator } from '../link-emulator.js';
import { registerReport } from '../report.js';
import type { Results } from '../results.js';
import { randomBlob, uploadBlob } from '../seed.js';
import { cephGateway } from './s3.js';

const MiB = 2 ** 20;
const BLOB_BYTES = 64 * MiB;

let redis: RedisServer | undefined;

/** Registers the scenario's rows and targets. */
export function registerReplicasReport(): void {
  const oursMax = (metric: string) => (r: Results) => Math.max(...r.values(metric, 'ours'));
  registerReport({
    metrics: [
      { id: 'replicas_cold_gets', label: 'R. 3 replicas on S3 + Redis, 30 cold GETs of 64 MiB: upstream GETs', unit: 'count', scale: 1, digits: 0 },
      { id: 'replicas_cold_ok', label: '   (bodies that hash right, of 30)', unit: 'count', scale: 1, digits: 0 },
      { id: 'replicas_cold_s', label: '   (30 cold GETs, wall time)', unit: 's', scale: 1, digits: 2 },
      { id: 'replicas_kill_gets', label: '   fetching replica killed mid-blob: upstream GETs', unit: 'count', scale: 1, digits: 0 },
      { id: 'replicas_kill_ok', label: '   (waiting clients served whole, of 4)', unit: 'count', scale: 1, digits: 0 },
      { id: 'replicas_kill_s', label: '   (kill to the last body, wall time)', unit: 's', scale: 1, digits: 2 },
    ],
    targets: [
      { label: 'replicas: 30 cold GETs, upstream GETs (worst)', value: oursMax('replicas_cold_gets'), op: '<=', limit: 1 },
      { label: 'replicas: kill mid-blob, upstream GETs (worst)', value: oursMax('replicas_kill_gets'), op: '<=', limit: 2 },
    ],
  });
}

/** One round: three fresh replicas on a fresh bucket, both measurements. */
export async function replicasRound(ctx: BenchContext, round: number): Promise<void> {
  const ceph = await cephGateway(ctx);
  if (!redis) {
    const started = await startRedis();
    onCleanup(() => started.stop());
    redis = started;
    ctx.log(`  redis-server at ${started.addr}`);
  }
  const link = await startLinkEmulator(new URL(ctx.upstream.url).host, { rttMs: 0, bytesPerSec: Number.POSITIVE_INFINITY });
  const bucket = await createBucket(ceph, 'bench-replicas');
  const dir = join(ctx.workDir, `r${round}-replicas`);
  await mkdir(dir, { recursive: true });
  const storage = s3StorageYaml(s3Parameters(ceph, bucket));
  const extra = ['redis:', `  addr: ${redis.addr}`, `  prefix: ${bucket}`];
  let replicas: Replica[] = [];
  try {
    replicas = await Promise.all([0, 1, 2].map(() => startReplica(dir, join(dir, 'unused'), link.url, [], { storage, extra })));
    const gets = (digest: string): number => link.stats().requests.filter((r) => r === `GET /v2/${BIG_REPO}/blobs/${digest}`).length;

    const cold = await uploadBlob(ctx.upstream.url, BIG_REPO, randomBlob(`replicas-cold-${round}`, BLOB_BYTES));
    let start = process.hrtime.bigint();
    const results = await Promise.all(Array.from({ length: 30 }, (_, i) => getHashed(`${replicas[i % 3]!.url}/v2/${BIG_REPO}/blobs/${cold.digest}`)));
    const coldS = secondsSince(start);
    const ok = results.filter((r) => r.status === 200 && r.complete && r.digest === cold.digest).length;
    ctx.results.add('replicas_cold_gets', 'ours', round, gets(cold.digest));
    ctx.results.add('replicas_cold_ok', 'ours', round, ok);
    ctx.results.add('replicas_cold_s', 'ours', round, coldS);
    ctx.log(`  3 replicas on S3 + Redis: 30 cold GETs of 64 MiB in ${coldS.toFixed(2)} s, ${gets(cold.digest)} upstream GET(s), ${ok}/30 correct`);

    const killed = await uploadBlob(ctx.upstream.url, BIG_REPO, randomBlob(`replicas-kill-${round}`, BLOB_BYTES));
    link.profile = { rttMs: 0, bytesPerSec: 16 * MiB };
    const url = (r: Replica): string => `${r.url}/v2/${BIG_REPO}/blobs/${killed.digest}`;
    const first = getHashed(url(replicas[0]!));
    const deadline = Date.now() + 30_000;
    while (gets(killed.digest) === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    const waiting = [1, 2, 1, 2].map((i) => getHashed(url(replicas[i]!)));
    await new Promise((r) => setTimeout(r, 1000));
    start = process.hrtime.bigint();
    await replicas[0]!.kill();
    await first;
    link.profile = { rttMs: 0, bytesPerSec: Number.POSITIVE_INFINITY };
    const served = (await Promise.all(waiting)).filter((r) => r.status === 200 && r.complete && r.digest === killed.digest).length;
    const killS = secondsSince(start);
    ctx.results.add('replicas_kill_gets', 'ours', round, gets(killed.digest));
    ctx.results.add('replicas_kill_ok', 'ours', round, served);
    ctx.results.add('replicas_kill_s', 'ours', round, killS);
    ctx.log(
      `  fetching replica killed mid-blob: ${gets(killed.digest)} upstream GET(s), ${served}/4 waiting clients served whole, ${killS.toFixed(2)} s from the kill`,
    );
  } finally {
    await Promise.all(replicas.map((r) => r.stop()));
    await link.close();
  }
}
