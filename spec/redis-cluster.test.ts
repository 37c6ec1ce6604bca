/**
 * `redis:` with several `addrs` and no `mastername`: a Redis Cluster, as distribution 3's go-redis
 * universal client reads that section (three Debian redis-servers in cluster mode). The leases
 * work on it as on one server (one holder at a time, fencing numbers, a release that wakes a
 * waiter on another connection), every key of the cache in one slot; and two replica processes on
 * one storage root coordinate through it: one upstream fetch for concurrent cold pulls. With
 * replicas in the cluster, the primary of the cache's slot killed: every client is served, and once
 * the cluster has promoted its replica the mirrors coordinate through it again. Over TLS, with the
 * nodes announcing a host name their certificate names (and no address), every node is reached and
 * verified. With every node gone, a fetch lock is taken at once without coordination and the
 * expiry lease refused, both granted again once the nodes are back.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Cluster } from 'ioredis';
import { redisConfig } from '../lib/config/redis.js';
import { RedisConnection } from '../lib/coordination/redis-connection.js';
import { RedisLocks } from '../lib/coordination/redis-locks.js';
import { startFakeUpstream, type FakeUpstream } from './helpers/fake-upstream.js';
import { clusterAvailable, startRedisCluster, type RedisCluster } from './helpers/redis-cluster.js';
import { concurrentColdPulls, replicaMetric, startReplica, startReplicas, stopReplicas, type Replica } from './helpers/replica.js';
import { issueCertificate, makeCa } from './helpers/test-pki.js';
import { until } from './helpers/until.js';

const MiB = 1024 * 1024;
const KEY = 'blobs/sha256/abc';

const describeIf = clusterAvailable() || process.env.CI ? describe : describe.skip;

describeIf('a Redis Cluster (several redis.addrs, no mastername)', () => {
  let cluster: RedisCluster;

  beforeAll(async () => {
    cluster = await startRedisCluster();
  }, 120_000);
  afterAll(() => cluster?.stop());

  test('leases: one holder at a time, growing fences, every key of the cache in one slot, a release wakes a waiter', async () => {
    const prefix = `t${Math.random().toString(16).slice(2, 8)}`;
    const config = redisConfig({ addrs: [...cluster.addrs], prefix, readtimeout: '1s', dialtimeout: '1s' })!;
    expect(config.cluster?.nodes).toHaveLength(3);
    const a = new RedisConnection(config);
    const b = new RedisConnection(config);
    const raw = new Cluster(cluster.addrs.map((addr) => ({ host: '127.0.0.1', port: Number(addr.split(':')[1]) })));
    try {
      expect(await a.ready(10_000)).toBe(true);
      expect(await b.ready(10_000)).toBe(true);
      const one = new RedisLocks(a, 5000);
      const two = new RedisLocks(b, 5000);
      const first = await one.tryLease(KEY);
      expect(first).toBeDefined();
      expect(first!.fence).toBeGreaterThan(0);
      expect(await two.tryLease(KEY)).toBeUndefined();
      expect(await two.isHeld(KEY)).toBe(true);
      // The lease, the fence and the release channel share the hash tag: one slot, one node.
      const lockKey = a.key(`lock:${KEY}`);
      expect(lockKey).toBe(`{${prefix}}:lock:${KEY}`);
      expect(await raw.exists(lockKey)).toBe(1);
      const home = await cluster.nodeOf(lockKey);
      expect(await cluster.nodeOf(a.key('fence'))).toBe(home);
      expect(await cluster.nodeOf(a.key('released'))).toBe(home);

      // A waiter on the other connection wakes at the release (published from the script on the
      // key's node, delivered cluster-wide), long before the lease would have expired.
      let landed = false;
      const waited = two.waitWhileHeld(KEY, async () => (landed ? 'landed' : undefined), 20_000);
      await new Promise((r) => setTimeout(r, 300));
      landed = true;
      const released = Date.now();
      await first!.release();
      expect(await waited).toBe('landed');
      // Woken by the release, not by the next poll (20 s after the wait began).
      expect(Date.now() - released).toBeLessThan(10_000);
      const second = await two.tryLease(KEY);
      expect(second!.fence).toBeGreaterThan(first!.fence);
      await second!.release();
    } finally {
      await Promise.all([a.close(), b.close()]);
      raw.disconnect();
    }
  }, 60_000);

  describe('replicas', () => {
    let upstream: FakeUpstream;
    let dir: string;
    let replicas: Replica[] = [];

    beforeEach(async () => {
      upstream = await startFakeUpstream();
      dir = await mkdtemp(join(tmpdir(), 'replicas-cluster-'));
    });
    afterEach(async () => {
      await stopReplicas(replicas, expect.getState().currentTestName);
      replicas = [];
      await upstream.close();
      await rm(dir, { recursive: true, force: true });
    }, 60_000);

    test('two replicas on one storage coordinate through the cluster: one upstream fetch for concurrent cold pulls', async () => {
      const extra = ['redis:', `  addrs: [${cluster.addrs.join(', ')}]`, '  dialtimeout: 2s', '  readtimeout: 2s'];
      const root = join(dir, 'root');
      replicas = await startReplicas(2, () => startReplica(dir, root, upstream.url, ['overtake:', '  minrate: 0'], { extra, debug: true }));
      await until(
        async () => (await Promise.all(replicas.map((r) => replicaMetric(r, 'registry_mirror_redis_up')))).every((v) => v === 1),
        'both replicas to reach the cluster',
        30_000,
      );
      for (const r of replicas) expect(r.logs()).toContain(`Redis Cluster (${cluster.addrs.join(', ')}) connected`);
      expect(await concurrentColdPulls(upstream, replicas, 4 * MiB, 500)).toBe(1);
      expect(await Promise.all(replicas.map((r) => replicaMetric(r, 'registry_mirror_uncoordinated_fetches_total')))).toEqual([0, 0]);
      expect(replicas.every((r) => r.alive())).toBe(true);
    }, 180_000);
  });
});

describeIf('a Redis Cluster down', () => {
  let cluster: RedisCluster;

  beforeAll(async () => {
    cluster = await startRedisCluster();
  }, 120_000);
  afterAll(() => cluster?.stop());

  test('every node gone: a fetch lock is taken at once without coordination, the expiry lease refused; both work again once it is back', async () => {
    const config = redisConfig({ addrs: [...cluster.addrs], prefix: 'down', readtimeout: '500ms', dialtimeout: '500ms', maxretrybackoff: '200ms' })!;
    const connection = new RedisConnection(config);
    try {
      expect(await connection.ready(10_000)).toBe(true);
      const uncoordinated: string[] = [];
      const locks = new RedisLocks(connection, 2000, { uncoordinated: (key) => uncoordinated.push(key) }, (key) => key === 'scheduler-lease');
      const before = await locks.tryLease(KEY);
      expect(before!.fence).toBeGreaterThan(0);
      await before!.release();

      await Promise.all(cluster.nodes.map((n) => n.kill()));
      // Noticed with no command of ours (a cluster client learns of dead nodes from commands: the
      // connection probes it).
      await until(() => !connection.available, 'the connection to notice', 10_000);
      const started = Date.now();
      expect(await locks.tryLease(KEY)).toEqual({ release: expect.any(Function), fence: 0 });
      // At once, not after waiting for the cluster to come back (it does not, until started below).
      expect(Date.now() - started).toBeLessThan(5000);
      expect(uncoordinated).toEqual([KEY]);
      expect(await locks.tryLease('scheduler-lease')).toBeUndefined();

      // The nodes come back with their cluster configuration (their data is gone).
      await Promise.all(cluster.nodes.map((n) => n.start()));
      let lease: Awaited<ReturnType<typeof locks.tryLease>>;
      await until(async () => (lease = await locks.tryLease('scheduler-lease')) !== undefined, 'the expiry lease to be granted again', 60_000);
      expect(lease!.fence).toBeGreaterThan(0);
      await lease!.release();
    } finally {
      await connection.close();
    }
  }, 120_000);
});

describeIf('a Redis Cluster with replicas, failing over', () => {
  let cluster: RedisCluster;
  let upstream: FakeUpstream;
  let dir: string;
  let replicas: Replica[] = [];

  beforeEach(async () => {
    cluster = await startRedisCluster(3, 1);
    upstream = await startFakeUpstream();
    dir = await mkdtemp(join(tmpdir(), 'replicas-cluster-failover-'));
  }, 120_000);
  afterEach(async () => {
    await stopReplicas(replicas, expect.getState().currentTestName);
    replicas = [];
    await cluster?.stop();
    await upstream.close();
    await rm(dir, { recursive: true, force: true });
  }, 60_000);

  test("the primary of the cache's slot dies: every client served, and once its replica is promoted the replicas coordinate through it", async () => {
    const extra = ['redis:', `  addrs: [${cluster.addrs.join(', ')}]`, '  dialtimeout: 1s', '  readtimeout: 1s', '  maxretrybackoff: 200ms'];
    replicas = await startReplicas(2, () => startReplica(dir, join(dir, 'root'), upstream.url, ['overtake:', '  minrate: 0'], { extra, debug: true }));
    await until(
      async () => (await Promise.all(replicas.map((r) => replicaMetric(r, 'registry_mirror_redis_up')))).every((v) => v === 1),
      'both replicas to reach the cluster',
      30_000,
    );
    expect(await concurrentColdPulls(upstream, replicas, MiB, 300)).toBe(1);

    const home = await cluster.nodeOf('{registry-mirror}:fence');
    const survivor = cluster.nodes.find((n) => n !== home)!;
    await home.kill();
    // While the cluster fails over, pulls are served (fetched without coordination at worst).
    expect(await concurrentColdPulls(upstream, replicas, MiB, 300)).toBeLessThanOrEqual(2);
    await until(
      async () => {
        const now = await cluster.nodeOf('{registry-mirror}:fence', survivor).catch(() => undefined);
        return now !== undefined && now !== home;
      },
      "the cluster to promote the slot's replica",
      60_000,
    );
    // Then the replicas coordinate through the new primary: a round makes one fetch again.
    await until(async () => (await concurrentColdPulls(upstream, replicas, MiB, 300)) === 1, 'a round of cold pulls to make one upstream fetch', 60_000);
    expect(replicas.every((r) => r.alive())).toBe(true);
  }, 240_000);
});

describeIf('a Redis Cluster over TLS, its nodes announced by host name', () => {
  let dir: string;
  let cluster: RedisCluster;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'redis-cluster-tls-'));
    makeCa(dir, 'ca');
    // The name only, no address: a client that connects by an address it looked up fails to verify it.
    issueCertificate(dir, 'server', '/CN=localhost', 'subjectAltName=DNS:localhost');
    cluster = await startRedisCluster(3, 0, {
      certificate: join(dir, 'server.pem'),
      key: join(dir, 'server.key'),
      ca: join(dir, 'ca.pem'),
      hostname: 'localhost',
    });
  }, 120_000);
  afterAll(async () => {
    await cluster?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('the leases work through every node, each verified against rootcas by the name it announces', async () => {
    expect(cluster.addrs.every((a) => a.startsWith('localhost:'))).toBe(true);
    const config = redisConfig({ addrs: [...cluster.addrs], tls: { rootcas: [join(dir, 'ca.pem')] }, readtimeout: '1s', dialtimeout: '1s', prefix: 'tls' })!;
    const connection = new RedisConnection(config);
    try {
      expect(await connection.ready(10_000)).toBe(true);
      const locks = new RedisLocks(connection, 5000);
      // Keys in each node's slots: every node is reached over TLS (the fence's slot for the leases).
      const lease = await locks.tryLease(KEY);
      expect(lease?.fence).toBeGreaterThan(0);
      await lease!.release();
      const tags = ['a', 'b', 'c', 'd', 'e', 'f'];
      expect(new Set(await Promise.all(tags.map((t) => cluster.nodeOf(`{${t}}:probe`)))).size).toBe(3);
      for (const tag of tags) expect(await connection.client.set(`{${tag}}:probe`, tag)).toBe('OK');
    } finally {
      await connection.close();
    }
  }, 60_000);
});
