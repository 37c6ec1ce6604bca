/**
 * `redis:` with a Sentinel `mastername` (distribution 3's go-redis failover options): two replica
 * processes on one storage root coordinate through the primary the Sentinels name (Debian's
 * redis-server and redis-sentinel: a primary, its replica, three Sentinels). The primary is killed
 * while a replica holds a blob's lease and fetches it and the other waits on that lease: both
 * clients get the blob with at most one more upstream fetch, a cached blob is served throughout,
 * and once the Sentinels have promoted the replica both mirrors coordinate through it (one
 * upstream fetch for concurrent cold pulls again). Every wait is on the Sentinels' or the
 * mirrors' own state, with generous deadlines.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startFakeUpstream, type FakeUpstream } from './helpers/fake-upstream.js';
import { concurrentColdPulls, replicaMetric, startReplica, startReplicas, stopReplicas, type Replica } from './helpers/replica.js';
import { sentinelAvailable, startSentinelGroup, type SentinelGroup } from './helpers/redis-sentinel.js';
import { until } from './helpers/until.js';
import { getHashed } from './helpers/hashed-get.js';
import { Redis } from 'ioredis';

const MiB = 1024 * 1024;

const describeIf = sentinelAvailable() || process.env.CI ? describe : describe.skip;

describeIf('replicas coordinated through Redis Sentinel', () => {
  let group: SentinelGroup | undefined;
  let upstream: FakeUpstream;
  let dir: string;
  let replicas: Replica[] = [];

  beforeEach(async () => {
    if (!sentinelAvailable()) throw new Error('this test needs redis-server and redis-sentinel: .ci/prerequisites installs them');
    upstream = await startFakeUpstream();
    dir = await mkdtemp(join(tmpdir(), 'replicas-sentinel-'));
    group = await startSentinelGroup();
  }, 120_000);
  afterEach(async () => {
    await stopReplicas(replicas, expect.getState().currentTestName);
    replicas = [];
    await group?.stop();
    group = undefined;
    await upstream.close();
    await rm(dir, { recursive: true, force: true });
  }, 60_000);

  test('the primary fails over while a replica holds a lease and fetches: every client served, at most one more upstream fetch, coordination resumes on the new primary', async () => {
    const g = group!;
    const extra = [
      'redis:',
      `  addrs: [${g.addrs.join(', ')}]`,
      `  mastername: ${g.mastername}`,
      '  dialtimeout: 1s',
      '  readtimeout: 1s',
      '  maxretrybackoff: 200ms',
    ];
    const root = join(dir, 'root');
    replicas = await startReplicas(2, () => startReplica(dir, root, upstream.url, ['lockstale: 5s', 'overtake:', '  minrate: 0'], { extra, debug: true }));
    await until(
      async () => (await Promise.all(replicas.map((r) => replicaMetric(r, 'registry_mirror_redis_up')))).every((v) => v === 1),
      'both replicas to reach the primary',
      30_000,
    );
    expect(await g.masterAddr()).toBe(g.primary.addr);
    for (const r of replicas) expect(r.logs()).toContain(`Redis primary ${g.mastername} (Sentinels ${g.addrs.join(', ')}) connected`);

    const cached = upstream.addBlob('library/app', randomBytes(MiB));
    expect((await getHashed(`${replicas[0]!.url}/v2/library/app/blobs/${cached}`)).digest).toBe(cached);

    // A blob slow enough to be in flight across the failover (some 12 MiB at 1.3 MB/s).
    const big = upstream.addBlob('library/big', randomBytes(12 * MiB));
    const bigGets = new RegExp(`^GET /v2/library/big/blobs/${big}$`);
    upstream.fault(bigGets, { kind: 'slow', bytesPerTick: 64 * 1024, tickMs: 50 }, 1);
    const url = (r: Replica): string => `${r.url}/v2/library/big/blobs/${big}`;
    const holder = getHashed(url(replicas[0]!));
    await until(() => upstream.count(bigGets) === 1, 'the first replica to fetch the blob');
    const lease = new Redis({ host: '127.0.0.1', port: g.primary.port });
    try {
      await until(async () => (await lease.keys(`registry-mirror:lock:*${big.slice(7)}*`)).length === 1, 'the first replica to hold the lease in the primary');
    } finally {
      lease.disconnect();
    }
    // The second replica's client waits on that lease (whichever way it lands, the checks below hold).
    const waiter = getHashed(url(replicas[1]!));
    await new Promise((r) => setTimeout(r, 300));

    await g.primary.kill();
    // While the Sentinels fail over, nothing waits for them: the cache is served by both replicas,
    // and a cold blob is fetched (without coordination, at most once per replica).
    const during = upstream.addBlob('library/app', randomBytes(MiB));
    for (const r of replicas) {
      expect(await getHashed(`${r.url}/v2/library/app/blobs/${cached}`)).toEqual({ status: 200, digest: cached, bytes: MiB, complete: true });
      expect(await getHashed(`${r.url}/v2/library/app/blobs/${during}`)).toEqual({ status: 200, digest: during, bytes: MiB, complete: true });
    }
    expect(upstream.count(new RegExp(`^GET /v2/library/app/blobs/${during}$`))).toBeLessThanOrEqual(2);
    await g.waitForPrimary(g.replica.addr, 90_000);

    for (const res of await Promise.all([holder, waiter])) expect(res).toEqual({ status: 200, digest: big, bytes: 12 * MiB, complete: true });
    expect(upstream.count(bigGets)).toBeLessThanOrEqual(2);

    // Both follow the Sentinels to the new primary and coordinate through it again.
    await until(
      async () => (await Promise.all(replicas.map((r) => replicaMetric(r, 'registry_mirror_redis_up')))).every((v) => v === 1),
      'both replicas to reach the new primary',
      60_000,
    );
    expect(await concurrentColdPulls(upstream, replicas, 4 * MiB, 500)).toBe(1);
    expect(replicas.every((r) => r.alive())).toBe(true);
  }, 240_000);
});
