/**
 * Real clients through three replicas on S3 (Ceph's RADOS Gateway) coordinated by Redis (Debian's
 * redis-server), as a Kubernetes Deployment behind a Service runs them: skopeo pulls through each
 * replica, and the Docker engine (dockerd 20.10, `registry-mirrors`) pulls through a round-robin
 * balancer in front of the three, so its layer downloads land on different replicas. The upstream
 * is Debian's docker-registry behind a counting proxy: every blob and manifest is fetched from it
 * once, whatever replica a client reached. Blobs already stored are answered with a 307 to the
 * bucket (redirects on, the default), which both clients follow.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeInterop } from '../helpers/interop.js';
import { startDistribution, type DistributionProcess } from '../helpers/upstream-registry.js';
import { buildImage, buildIndex } from '../helpers/images.js';
import { pullImage, pushImage } from '../helpers/skopeo.js';
import { countingProxy, type CountingProxy } from '../helpers/counting-proxy.js';
import { startReplica, startReplicas, type Replica } from '../helpers/replica.js';
import { cephAvailable, createBucket, s3Parameters, s3StorageYaml } from '../helpers/ceph.js';
import { sharedCeph } from '../helpers/ceph-shared.js';
import { redisAvailable, startRedis, type RedisServer } from '../helpers/redis.js';
import { dockerAvailable, startDockerd, type Dockerd } from '../helpers/dockerd.js';

/** A TCP balancer handing each new connection to the next replica in turn. */
async function roundRobin(targets: () => Replica[]): Promise<{ hostPort: string; close(): Promise<void> }> {
  let next = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const list = targets();
    const target = new URL(list[next++ % list.length]!.url);
    const upstream = net.connect(Number(target.port), target.hostname);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.once('close', () => sockets.delete(s));
      s.on('error', () => undefined);
    }
    client.pipe(upstream).pipe(client);
    client.once('close', () => upstream.destroy());
    upstream.once('close', () => client.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    hostPort: `127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    close: () =>
      new Promise((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

const hostPort = (r: Replica): string => r.url.replace('http://', '');

describeInterop(
  'skopeo and the Docker engine through three replicas on S3 coordinated by Redis',
  () => {
    let dir: string;
    let upstream: DistributionProcess;
    let counter: CountingProxy;
    let redis: RedisServer;
    let replicas: Replica[] = [];
    let balancer: { hostPort: string; close(): Promise<void> };
    let dockerd: Dockerd;
    const app = buildImage({ layers: [3 * 1024 * 1024 + 11, 700_000, 4096], seed: 'replicas-redis-app' });
    const amd = buildImage({ layers: [2 * 1024 * 1024, 300_000, 90_000], seed: 'replicas-redis-engine', format: 'docker' });
    const arm = buildImage({ layers: [2 * 1024 * 1024], seed: 'replicas-redis-engine-arm', platform: { os: 'linux', architecture: 'arm64' } });
    const engineImage = buildIndex([buildImage({ layers: [1_500_000, 200_000, 50_000], seed: 'replicas-redis-index' }), arm]);

    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), 'replicas-redis-interop-'));
      const ceph = await sharedCeph();
      [upstream, redis] = await Promise.all([startDistribution(), startRedis()]);
      await Promise.all([
        pushImage(upstream.hostPort, 'team/app:1.0', app),
        pushImage(upstream.hostPort, 'library/engine:1.0', amd),
        pushImage(upstream.hostPort, 'library/multi:latest', engineImage, { all: true }),
      ]);
      counter = await countingProxy(upstream.url);
      const bucket = await createBucket(ceph, 'replicas-interop');
      const storage = s3StorageYaml(s3Parameters(ceph, bucket));
      const extra = ['redis:', `  addrs: [${redis.addr}]`, `  prefix: ${bucket}`];
      replicas = await startReplicas(3, () => startReplica(dir, join(dir, 'unused'), counter.url, [], { storage, extra }));
      balancer = await roundRobin(() => replicas);
      dockerd = await startDockerd({ registryMirrors: [`http://${balancer.hostPort}`], insecureRegistries: [balancer.hostPort] });
    }, 240_000);

    afterAll(async () => {
      await dockerd?.stop();
      await balancer?.close();
      await Promise.all(replicas.map((r) => r.stop()));
      await counter?.close();
      await upstream?.destroy();
      await redis?.stop();
      if (dir) await rm(dir, { recursive: true, force: true });
    });

    /** Upstream GETs of each blob and manifest of `image` under `repo`. */
    const upstreamGets = (repo: string, digests: string[]): number[] =>
      digests.map((d) => counter.hits.filter((h) => h === `GET /v2/${repo}/blobs/${d}` || h === `GET /v2/${repo}/manifests/${d}`).length);

    test('skopeo pulls one image concurrently through each of the three replicas: the upstream serves each blob once', async () => {
      const pulls = await Promise.all(replicas.map((r) => pullImage(hostPort(r), 'team/app:1.0')));
      for (const p of pulls) {
        expect(p.manifestDigest).toBe(app.manifest.digest);
        expect(p.blobs).toEqual(expect.arrayContaining([app.config.digest, ...app.layers.map((l) => l.digest)]));
      }
      expect(upstreamGets('team/app', [app.config.digest, ...app.layers.map((l) => l.digest)])).toEqual([1, 1, 1, 1]);
      // And again, warm, from another replica than before.
      expect((await pullImage(hostPort(replicas[2]!), `team/app@${app.manifest.digest}`)).manifestDigest).toBe(app.manifest.digest);
      expect(
        upstreamGets(
          'team/app',
          app.layers.map((l) => l.digest),
        ),
      ).toEqual([1, 1, 1]);
    }, 180_000);

    test("the Docker engine pulls a single-arch image and an index through a balancer over the replicas, with the upstream's digests", async () => {
      for (const [ref, image, platformImage] of [
        ['engine:1.0', amd, amd],
        ['multi', engineImage, engineImage.images[0]!],
      ] as const) {
        const out = await dockerd.ok(['pull', ref]);
        expect(/^Digest: (sha256:[0-9a-f]{64})$/m.exec(out)?.[1]).toBe(image.manifest.digest);
        expect(await dockerd.ok(['image', 'inspect', '--format', '{{.Id}}', ref])).toBe(`${platformImage.config.digest}\n`);
        const repo = `library/${ref.split(':')[0]}`;
        expect(upstreamGets(repo, [platformImage.config.digest, ...platformImage.layers.map((l) => l.digest)]).every((n) => n === 1)).toBe(true);
      }
      // Pulled again after removing them locally: every replica may answer, the upstream is not asked for a blob again.
      await dockerd.ok(['image', 'prune', '--all', '--force']);
      const before = counter.hits.filter((h) => h.includes('/blobs/')).length;
      await dockerd.ok(['pull', 'engine:1.0']);
      await dockerd.ok(['pull', 'multi']);
      expect(counter.hits.filter((h) => h.includes('/blobs/')).length).toBe(before);
      expect(replicas.every((r) => r.alive())).toBe(true);
    }, 240_000);
  },
  { what: 'Ceph (ceph-mon ceph-osd radosgw ceph-common), redis-server and dockerd', available: () => cephAvailable() && redisAvailable() && dockerAvailable() },
);
