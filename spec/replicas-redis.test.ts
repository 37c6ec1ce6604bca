/**
 * Three replica processes on S3 (Ceph's RADOS Gateway) coordinated by Redis (Debian's
 * redis-server) behave as one cache: 30 concurrent cold pulls of a 64 MiB blob spread over them
 * make one upstream GET and 30 correct bodies; killing the fetching replica mid-blob costs at most
 * one more fetch; with Redis down the cache is served and cold blobs fetched without coordination,
 * said in the log and the metrics, and coordination resumes once Redis is back. One schedule: content
 * fetched through different replicas is in the one `scheduler-state.json` in the bucket (the lease
 * holder merges the others' journals) and expires once.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GetObjectCommand, HeadObjectCommand } from '@aws-sdk/client-s3';
import { seedImage, startFakeUpstream, type FakeUpstream } from './helpers/fake-upstream.js';
import { replicaMetric, startReplica, startReplicas, stopReplicas, type Replica } from './helpers/replica.js';
import { cephAvailable, createBucket, s3Client, s3Parameters, s3StorageYaml, type CephEndpoint } from './helpers/ceph.js';
import { sharedCeph } from './helpers/ceph-shared.js';
import { redisAvailable, startRedis, type RedisServer } from './helpers/redis.js';
import { until } from './helpers/until.js';
import { getHashed } from './helpers/hashed-get.js';

const MiB = 1024 * 1024;
const ACCEPT = 'application/vnd.oci.image.manifest.v1+json';
/** The object key of a blob's data in the test buckets (rootdirectory /registry). */
const blobData = (d: string): string => `registry/docker/registry/v2/blobs/sha256/${d.slice(7, 9)}/${d.slice(7)}/data`;

const ready = cephAvailable() && redisAvailable();
const describeIf = ready || process.env.CI ? describe : describe.skip;

describeIf('three replicas on S3 coordinated by Redis', () => {
  let ceph: CephEndpoint;
  let redis: RedisServer;
  let upstream: FakeUpstream;
  let dir: string;
  let replicas: Replica[] = [];
  const blobGets = (repo: string): RegExp => new RegExp(`^GET /v2/${repo}/blobs/`);

  beforeAll(async () => {
    if (!ready) throw new Error('these tests need Ceph (ceph-mon ceph-osd radosgw ceph-common) and redis-server: .ci/prerequisites installs them');
    ceph = await sharedCeph();
    redis = await startRedis();
  }, 180_000);
  afterAll(async () => {
    await redis?.stop();
  });
  beforeEach(async () => {
    upstream = await startFakeUpstream();
    dir = await mkdtemp(join(tmpdir(), 'replicas-redis-'));
  });
  afterEach(async () => {
    await stopReplicas(replicas, expect.getState().currentTestName);
    replicas = [];
    await upstream.close();
    await rm(dir, { recursive: true, force: true });
  });

  /** Three replicas on a new bucket, with a Redis key prefix of their own; resolves with the bucket. */
  const start = async (proxyYaml: string[] = []): Promise<string> => {
    const bucket = await createBucket(ceph, 'replicas');
    const storage = s3StorageYaml(s3Parameters(ceph, bucket));
    const extra = ['redis:', `  addr: ${redis.addr}`, '  dialtimeout: 1s', '  readtimeout: 1s', `  prefix: ${bucket}`];
    replicas = await startReplicas(3, () =>
      startReplica(dir, join(dir, 'unused'), upstream.url, ['lockstale: 5s', ...proxyYaml], { storage, extra, debug: true }),
    );
    return bucket;
  };

  test('30 concurrent cold pulls of a 64 MiB blob spread over them: one upstream GET, 30 correct bodies', async () => {
    await start();
    const digest = upstream.addBlob('library/big', randomBytes(64 * MiB));
    const results = await Promise.all(Array.from({ length: 30 }, (_, i) => getHashed(`${replicas[i % 3]!.url}/v2/library/big/blobs/${digest}`)));
    for (const r of results) expect(r).toEqual({ status: 200, digest, bytes: 64 * MiB, complete: true });
    expect(upstream.count(blobGets('library/big'))).toBe(1);
    expect(replicas.every((r) => r.alive())).toBe(true);
    for (const r of replicas) expect(await replicaMetric(r, 'registry_mirror_redis_up')).toBe(1);
  }, 180_000);

  test("the replica fetching a blob is killed mid-blob: the others' clients get it, with at most one more upstream fetch", async () => {
    await start();
    const digest = upstream.addBlob('library/big', randomBytes(24 * MiB));
    upstream.fault(blobGets('library/big'), { kind: 'slow', bytesPerTick: 512 * 1024, tickMs: 50 }, 1);
    const url = (r: Replica): string => `${r.url}/v2/library/big/blobs/${digest}`;
    const first = getHashed(url(replicas[0]!));
    await until(() => upstream.count(blobGets('library/big')) === 1, 'the first fetch');
    await new Promise((r) => setTimeout(r, 300));
    const others = [1, 2, 1, 2].map((i) => getHashed(url(replicas[i]!)));
    await new Promise((r) => setTimeout(r, 300));
    await replicas[0]!.kill();
    expect((await first).complete).toBe(false);
    for (const res of await Promise.all(others)) expect(res).toEqual({ status: 200, digest, bytes: 24 * MiB, complete: true });
    expect(upstream.count(blobGets('library/big'))).toBeLessThanOrEqual(2);
  }, 120_000);

  test('Redis down: the cache is served, cold blobs are fetched without coordination and it is said so; coordination resumes when Redis is back', async () => {
    await start();
    const cached = upstream.addBlob('library/app', randomBytes(2 * MiB));
    expect((await getHashed(`${replicas[0]!.url}/v2/library/app/blobs/${cached}`)).digest).toBe(cached);
    await redis.kill();
    try {
      await until(
        async () => (await Promise.all(replicas.map((r) => replicaMetric(r, 'registry_mirror_redis_up')))).every((v) => v === 0),
        'every replica to see Redis down',
        10_000,
      );
      for (const r of replicas) expect((await getHashed(`${r.url}/v2/library/app/blobs/${cached}`)).digest).toBe(cached);
      const cold = upstream.addBlob('library/app', randomBytes(4 * MiB));
      const results = await Promise.all(replicas.map((r) => getHashed(`${r.url}/v2/library/app/blobs/${cold}`)));
      for (const res of results) expect(res).toEqual({ status: 200, digest: cold, bytes: 4 * MiB, complete: true });
      // One fetch per replica at most: each still shares its own clients' fetch.
      expect(upstream.count(new RegExp(`^GET /v2/library/app/blobs/${cold}$`))).toBeLessThanOrEqual(3);
      const uncoordinated = await Promise.all(replicas.map((r) => replicaMetric(r, 'registry_mirror_uncoordinated_fetches_total')));
      expect(uncoordinated.reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(1);
      for (const r of replicas)
        expect(r.logs()).toMatch(/Redis 127\.0\.0\.1:\d+ unreachable .*: serving the cache and fetching from the upstream without coordination/);
    } finally {
      await redis.start();
    }
    await until(
      async () => (await Promise.all(replicas.map((r) => replicaMetric(r, 'registry_mirror_redis_up')))).every((v) => v === 1),
      'every replica to reconnect',
      15_000,
    );
    const after = upstream.addBlob('library/app', randomBytes(8 * MiB));
    upstream.fault(new RegExp(`^GET /v2/library/app/blobs/${after}$`), { kind: 'delay', ms: 300 });
    const again = await Promise.all([0, 1, 2, 0, 1, 2].map((i) => getHashed(`${replicas[i]!.url}/v2/library/app/blobs/${after}`)));
    for (const res of again) expect(res.digest).toBe(after);
    expect(upstream.count(new RegExp(`^GET /v2/library/app/blobs/${after}$`))).toBe(1);
    expect(replicas.every((r) => r.alive())).toBe(true);
  }, 120_000);

  test('one schedule: content fetched through each replica is in the one state file in the bucket, and expires once', async () => {
    const bucket = await start(['ttl: 12s']);
    const s3 = s3Client(ceph);
    const state = async (): Promise<Record<string, { EntryType: number }> | undefined> => {
      try {
        const r = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: 'registry/scheduler-state.json' }));
        return JSON.parse(Buffer.from(await r.Body!.transformToByteArray()).toString()) as Record<string, { EntryType: number }>;
      } catch {
        return undefined;
      }
    };
    const images = [0, 1, 2].map((i) => ({
      repo: `library/app${i}`,
      img: seedImage(upstream, `library/app${i}`, 'v1', [randomBytes(200_000 + i), randomBytes(50_000 + i)]),
    }));
    // Image i through replica i only: each replica learns of content the others never saw.
    await Promise.all(
      images.map(async ({ repo, img }, i) => {
        const r = replicas[i]!;
        expect((await fetch(`${r.url}/v2/${repo}/manifests/v1`, { headers: { accept: ACCEPT } })).status).toBe(200);
        for (const d of [img.config, ...img.layers]) expect((await getHashed(`${r.url}/v2/${repo}/blobs/${d}`)).digest).toBe(d);
      }),
    );
    const keys = images.flatMap(({ repo, img }) => [img.manifest, img.config, ...img.layers].map((d) => `${repo}@${d}`));
    await until(
      async () => {
        const s = await state();
        return s !== undefined && keys.every((k) => k in s);
      },
      'every entry in scheduler-state.json',
      11_000,
    );
    await until(async () => JSON.stringify(await state()) === '{}', 'the expiry of every entry, written to the state file', 40_000);
    const logs = replicas.map((r) => r.logs()).join('\n');
    for (const { repo, img } of images) {
      expect(logs.match(new RegExp(`msg="expired" .*type=manifest vars\\.digest=${img.manifest} vars\\.name=${repo}(?=\\s|$)`, 'gm'))).toHaveLength(1);
      for (const d of [img.config, ...img.layers])
        expect(logs.match(new RegExp(`msg="expired" .*type=blob vars\\.digest=${d} vars\\.name=${repo}(?=\\s|$)`, 'gm'))).toHaveLength(1);
      for (const d of [img.config, ...img.layers]) {
        await expect(s3.send(new HeadObjectCommand({ Bucket: bucket, Key: blobData(d) }))).rejects.toThrow();
      }
    }
    expect(logs.match(/scheduler lease taken/g)).toHaveLength(1);
    expect(replicas.every((r) => r.alive())).toBe(true);
  }, 120_000);

  test('proxy.maxsize is one figure for the whole cache: content fetched through another replica counts toward the cap the lease holder enforces', async () => {
    const bucket = await start(['ttl: 1h', 'maxsize: 1200000']);
    const s3 = s3Client(ceph);
    const holder = replicas.findIndex((r) => /scheduler lease taken/.test(r.logs()));
    expect(holder).toBeGreaterThanOrEqual(0);
    const other = replicas[(holder + 1) % 3]!;
    const images = [1, 2, 3].map((i) => seedImage(upstream, `library/cap${i}`, 'v1', [randomBytes(300_000), randomBytes(200_000)]));
    const cached = async (d: string): Promise<boolean> =>
      s3.send(new HeadObjectCommand({ Bucket: bucket, Key: blobData(d) })).then(
        () => true,
        () => false,
      );
    // About 500 kB each, all through a replica without the lease: the third goes over the cap.
    for (const [i, img] of images.entries()) {
      expect((await fetch(`${other.url}/v2/library/cap${i + 1}/manifests/v1`, { headers: { accept: ACCEPT } })).status).toBe(200);
      for (const d of [img.config, ...img.layers]) expect((await getHashed(`${other.url}/v2/library/cap${i + 1}/blobs/${d}`)).digest).toBe(d);
    }
    await until(
      () => /msg="evicted" .*type=manifest vars\.digest=\S+ vars\.name=library\/cap1(?=\s|$)/m.test(replicas[holder]!.logs()),
      'the holder to evict the least recently used image',
      20_000,
    );
    await until(async () => (await Promise.all(images[0]!.layers.map(cached))).every((c) => !c), "the first image's layers deleted", 10_000);
    for (const img of images.slice(1)) for (const d of [img.config, ...img.layers]) expect(await cached(d)).toBe(true);
    replicas.forEach((r, i) => i !== holder && expect(r.logs()).not.toMatch(/evicted/));
    expect(replicas.every((r) => r.alive())).toBe(true);
  }, 120_000);
});
