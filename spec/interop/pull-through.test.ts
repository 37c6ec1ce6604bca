/**
 * The interop tier: Debian's docker-registry (distribution 2.8) as the upstream, seeded with images
 * the test builds, our mirror started through its real command line, and skopeo as the client.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeInterop } from '../helpers/interop.js';
import { startDistribution, type DistributionProcess } from '../helpers/upstream-registry.js';
import { buildImage, buildIndex } from '../helpers/images.js';
import { pushImage, pullImage } from '../helpers/skopeo.js';
import { freePort } from '../helpers/ports.js';
import { startRegistry } from '../helpers/replica.js';
import { countingProxy, type CountingProxy } from '../helpers/counting-proxy.js';

/** Our registry as a user runs it: `bin/registry serve <config.yml>`. */
async function startOurs(remoteurl: string, root: string): Promise<{ hostPort: string; stop(): Promise<void>; logs(): string }> {
  const port = await freePort();
  const dir = await mkdtemp(join(tmpdir(), 'ours-'));
  const config = join(dir, 'config.yml');
  await writeFile(
    config,
    [
      'version: 0.1',
      'log:',
      '  level: info',
      'storage:',
      '  filesystem:',
      `    rootdirectory: ${root}`,
      '  delete:',
      '    enabled: true',
      'http:',
      `  addr: 127.0.0.1:${port}`,
      'proxy:',
      `  remoteurl: ${remoteurl}`,
      '',
    ].join('\n'),
  );
  const child = await startRegistry(config, `http://127.0.0.1:${port}`);
  return {
    hostPort: `127.0.0.1:${port}`,
    logs: child.logs,
    stop: async () => {
      await child.stop();
      const code = await child.exited;
      await rm(dir, { recursive: true, force: true });
      if (code !== 0) throw new Error(`registry exited with ${code}\n${child.logs()}`);
    },
  };
}

describeInterop('pull-through against distribution 2.8 with skopeo', () => {
  let upstream: DistributionProcess;
  let counter: CountingProxy;
  let root: string;
  let ours: Awaited<ReturnType<typeof startOurs>>;
  const single = buildImage({ layers: [1024 * 1024, 2048], seed: 'single' });
  const docker = buildImage({ layers: [4096], seed: 'docker', format: 'docker' });
  const amd = buildImage({ layers: [3000], seed: 'amd', platform: { os: 'linux', architecture: 'amd64' } });
  const arm = buildImage({ layers: [3000], seed: 'arm', platform: { os: 'linux', architecture: 'arm64' } });
  const index = buildIndex([amd, arm], 'oci');

  beforeAll(async () => {
    upstream = await startDistribution();
    await pushImage(upstream.hostPort, 'library/busybox:latest', single);
    await pushImage(upstream.hostPort, 'org/app:1.0', docker);
    await pushImage(upstream.hostPort, 'library/multi:latest', index, { all: true });
    counter = await countingProxy(upstream.url);
    root = await mkdtemp(join(tmpdir(), 'mirror-root-'));
    ours = await startOurs(counter.url, root);
  }, 120_000);

  afterAll(async () => {
    await ours?.stop().catch(() => undefined);
    await counter?.close();
    await upstream?.destroy();
    if (root) await rm(root, { recursive: true, force: true });
  });

  test('a single-arch image pulls with the upstream digests, one upstream GET per blob', async () => {
    const pulled = await pullImage(ours.hostPort, 'library/busybox:latest');
    expect(pulled.manifestDigest).toBe(single.manifest.digest);
    for (const l of single.layers) expect(pulled.blobs).toContain(l.digest);
    for (const d of [single.config.digest, ...single.layers.map((l) => l.digest)]) {
      expect(counter.hits.filter((h) => h === `GET /v2/library/busybox/blobs/${d}`)).toHaveLength(1);
    }
  });

  test('a second pull asks the upstream for no content', async () => {
    await pullImage(ours.hostPort, 'library/busybox:latest');
    const before = counter.hits.length;
    const pulled = await pullImage(ours.hostPort, 'library/busybox:latest');
    expect(pulled.manifestDigest).toBe(single.manifest.digest);
    const after = counter.hits.slice(before);
    expect(after.filter((h) => h.startsWith('GET ') && h !== 'GET /v2/')).toEqual([]);
  });

  test('a multi-arch index pulls with --all, and a docker-format non-library image pulls', async () => {
    const multi = await pullImage(ours.hostPort, 'library/multi:latest', { all: true });
    expect(multi.manifestDigest).toBe(index.manifest.digest);
    const app = await pullImage(ours.hostPort, 'org/app:1.0');
    expect(app.manifestDigest).toBe(docker.manifest.digest);
  });

  test('the official registry as a proxy writes a data directory that we serve', async () => {
    const officialRoot = await mkdtemp(join(tmpdir(), 'official-root-'));
    const official = await startDistribution({ proxy: { remoteurl: upstream.url }, rootDir: officialRoot });
    try {
      await pullImage(official.hostPort, 'org/app:1.0');
      // distribution 2.8 stores proxied blobs in the background: wait until they are on disk.
      const wanted = [docker.config.digest, ...docker.layers.map((l) => l.digest)].map((d) =>
        join(officialRoot, 'docker/registry/v2/blobs/sha256', d.slice(7, 9), d.slice(7), 'data'),
      );
      for (let i = 0; i < 200 && !wanted.every((f) => existsSync(f)); i++) await new Promise((r) => setTimeout(r, 100));
      expect(wanted.every((f) => existsSync(f))).toBe(true);
    } finally {
      await official.destroy();
    }
    await upstream.stop();
    const theirsServedByUs = await startOurs(`http://127.0.0.1:${await freePort()}`, officialRoot);
    try {
      const byTag = await pullImage(theirsServedByUs.hostPort, 'org/app:1.0');
      expect(byTag.manifestDigest).toBe(docker.manifest.digest);
    } finally {
      await theirsServedByUs.stop();
      await rm(officialRoot, { recursive: true, force: true });
      await upstream.restart();
    }
  }, 120_000);

  test('with the upstream stopped, pulls by tag and by digest come from the cache', async () => {
    await pullImage(ours.hostPort, 'library/busybox:latest');
    await pullImage(ours.hostPort, 'library/multi:latest', { all: true });
    await upstream.stop();
    try {
      const byTag = await pullImage(ours.hostPort, 'library/busybox:latest');
      expect(byTag.manifestDigest).toBe(single.manifest.digest);
      const byDigest = await pullImage(ours.hostPort, `library/busybox@${single.manifest.digest}`);
      expect(byDigest.manifestDigest).toBe(single.manifest.digest);
      const multi = await pullImage(ours.hostPort, 'library/multi:latest', { all: true });
      expect(multi.manifestDigest).toBe(index.manifest.digest);
    } finally {
      await upstream.restart();
    }
  }, 120_000);

  test('our data directory is served by registry:2 itself', async () => {
    await pullImage(ours.hostPort, 'library/busybox:latest');
    await pullImage(ours.hostPort, 'library/multi:latest', { all: true });
    await ours.stop();
    const official = await startDistribution({ rootDir: root });
    try {
      const pulled = await pullImage(official.hostPort, 'library/busybox:latest');
      expect(pulled.manifestDigest).toBe(single.manifest.digest);
      const multi = await pullImage(official.hostPort, 'library/multi:latest', { all: true });
      expect(multi.manifestDigest).toBe(index.manifest.digest);
    } finally {
      await official.destroy();
      ours = await startOurs(counter.url, root);
    }
  });
});
