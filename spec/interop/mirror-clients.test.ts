/**
 * The mirror as clients configure it, with two real upstreams (Debian's docker-registry standing in
 * for Docker Hub and for ghcr.io): skopeo with the mirror in `registries.conf` (docker.io names
 * like `docker.io/busybox`, and ghcr.io through a path prefix), and containerd with `hosts.toml`
 * mirrors, which selects the upstream with `?ns=<registry>`. docker.io and ghcr.io themselves are
 * unreachable here, so a pull that succeeds came through the mirror.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeInterop } from '../helpers/interop.js';
import { startDistribution } from '../helpers/upstream-registry.js';
import { buildImage, type BuiltImage } from '../helpers/images.js';
import { pushImage, pullImage } from '../helpers/skopeo.js';
import { countingProxy } from '../helpers/counting-proxy.js';
import { startMirror } from '../helpers/mirror.js';
import { containerdAvailable, startContainerd, type Containerd } from '../helpers/containerd.js';

/** Two docker-registry upstreams (Hub and ghcr.io stand-ins) seeded with images, counted, behind one mirror. */
async function twoUpstreams(hubImages: Record<string, BuiltImage>, ghcrImages: Record<string, BuiltImage>) {
  const [hub, ghcr] = await Promise.all([startDistribution(), startDistribution()]);
  await Promise.all([
    ...Object.entries(hubImages).map(([ref, img]) => pushImage(hub.hostPort, ref, img)),
    ...Object.entries(ghcrImages).map(([ref, img]) => pushImage(ghcr.hostPort, ref, img)),
  ]);
  const [hubCounter, ghcrCounter] = await Promise.all([countingProxy(hub.url), countingProxy(ghcr.url)]);
  const mirror = await startMirror(hubCounter.url, { proxyYaml: ['upstreams:', '  ghcr.io:', `    remoteurl: ${ghcrCounter.url}`].join('\n') });
  return {
    mirror,
    hubHits: hubCounter.hits,
    ghcrHits: ghcrCounter.hits,
    close: async () => {
      await mirror.close();
      await Promise.all([hubCounter.close(), ghcrCounter.close()]);
      await Promise.all([hub.destroy(), ghcr.destroy()]);
    },
  };
}

describeInterop('clients configured with the mirror: skopeo registries.conf and containerd hosts.toml', () => {
  let setup: Awaited<ReturnType<typeof twoUpstreams>>;
  let confDir: string;
  const alpine = buildImage({ layers: [5000], seed: 'alpine' });
  const busybox = buildImage({ layers: [3000, 200], seed: 'busybox', format: 'docker' });
  const app = buildImage({ layers: [4000], seed: 'ghcr-app' });

  beforeAll(async () => {
    setup = await twoUpstreams({ 'library/alpine:latest': alpine, 'library/busybox:latest': busybox }, { 'org/app:v1': app });
    confDir = await mkdtemp(join(tmpdir(), 'registries-conf-'));
  }, 120_000);

  afterAll(async () => {
    await setup?.close();
    if (confDir) await rm(confDir, { recursive: true, force: true });
  });

  const mirrorHost = (): string => setup.mirror.url.replace('http://', '');

  test('skopeo with the mirror as a registries.conf mirror of docker.io and ghcr.io', async () => {
    const conf = join(confDir, 'registries.conf');
    await writeFile(
      conf,
      [
        '[[registry]]',
        'prefix = "docker.io"',
        'location = "docker.io"',
        '[[registry.mirror]]',
        `location = "${mirrorHost()}"`,
        'insecure = true',
        '',
        '[[registry]]',
        'prefix = "ghcr.io"',
        'location = "ghcr.io"',
        '[[registry.mirror]]',
        // containers/image sends no ?ns=: the path prefix selects the upstream.
        `location = "${mirrorHost()}/ghcr.io"`,
        'insecure = true',
        '',
      ].join('\n'),
    );
    const pull = (ref: string) => pullImage('', ref, { registriesConf: conf, source: `docker://${ref}` });
    expect((await pull('docker.io/library/alpine:latest')).manifestDigest).toBe(alpine.manifest.digest);
    expect((await pull('docker.io/busybox:latest')).manifestDigest).toBe(busybox.manifest.digest);
    expect((await pull('ghcr.io/org/app:v1')).manifestDigest).toBe(app.manifest.digest);
    // Fetched under the upstream's own names, by the tag asked for (verified by its digest).
    expect(setup.hubHits).toContain('GET /v2/library/busybox/manifests/latest');
    expect(setup.ghcrHits).toContain('GET /v2/org/app/manifests/v1');
    expect(setup.hubHits.filter((h) => h.includes('org/app'))).toEqual([]);
    expect(setup.ghcrHits.filter((h) => h.includes('library/'))).toEqual([]);
  });
});

describeInterop(
  'containerd pulls through the mirror, selecting upstreams with ?ns=',
  () => {
    let setup: Awaited<ReturnType<typeof twoUpstreams>>;
    let containerd: Containerd;
    const busybox = buildImage({ layers: [3000], seed: 'ctd-busybox' });
    const app = buildImage({ layers: [4000, 100], seed: 'ctd-app', format: 'docker' });

    beforeAll(async () => {
      setup = await twoUpstreams({ 'library/busybox:latest': busybox }, { 'org/app:v1': app });
      containerd = await startContainerd();
    }, 120_000);

    afterAll(async () => {
      await containerd?.stop();
      await setup?.close();
    });

    test('ghcr.io/org/app reaches the ghcr.io upstream and docker.io/library/busybox the Hub one', async () => {
      const mirrors = { 'docker.io': setup.mirror.url, 'ghcr.io': setup.mirror.url };
      const pulledApp = await containerd.pull('ghcr.io/org/app:v1', mirrors);
      expect(pulledApp.output).toContain(app.manifest.digest);
      expect(pulledApp.code).toBe(0);
      const pulledBusybox = await containerd.pull('docker.io/library/busybox:latest', mirrors);
      expect(pulledBusybox.code).toBe(0);
      for (const layer of app.layers) expect(setup.ghcrHits).toContain(`GET /v2/org/app/blobs/${layer.digest}`);
      for (const layer of busybox.layers) expect(setup.hubHits).toContain(`GET /v2/library/busybox/blobs/${layer.digest}`);
      expect(setup.hubHits.filter((h) => h.includes('org/app'))).toEqual([]);
      expect(setup.ghcrHits.filter((h) => h.includes('library/'))).toEqual([]);
    });
  },
  { what: 'containerd (run as root)', available: containerdAvailable },
);
