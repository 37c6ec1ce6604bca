/**
 * podman (Debian's 4.3) pulling through the mirror as users set it up: the mirror as a
 * `registries.conf` mirror of docker.io (qualified names, a short name resolved through
 * `unqualified-search-registries`, an index), pulls of `<mirror>/library/...` directly, and pulls
 * with the upstream stopped. The mirror's upstream is Debian's docker-registry holding Docker Hub
 * style `library/...` names; docker.io itself is unreachable here, so a pull that succeeds came
 * through the mirror.
 */
import { describeInterop } from '../helpers/interop.js';
import { startDistribution, type DistributionProcess } from '../helpers/upstream-registry.js';
import { buildImage, buildIndex } from '../helpers/images.js';
import { pushImage } from '../helpers/skopeo.js';
import { countingProxy, type CountingProxy } from '../helpers/counting-proxy.js';
import { startMirror, type TestMirror } from '../helpers/mirror.js';
import { makePodman, podmanAvailable, type Podman } from '../helpers/podman.js';

describeInterop(
  'podman pulling through the mirror (registries.conf mirror, and directly)',
  () => {
    let upstream: DistributionProcess;
    let counter: CountingProxy;
    let mirror: TestMirror;
    let podman: Podman;
    const busybox = buildImage({ layers: [6000, 200], seed: 'podman-busybox', format: 'docker' });
    const app = buildImage({ layers: [3000], seed: 'podman-team-app' });
    const amd = buildImage({ layers: [2500], seed: 'podman-nginx-amd64' });
    const arm = buildImage({ layers: [2500], seed: 'podman-nginx-arm64', platform: { os: 'linux', architecture: 'arm64' } });
    const nginx = buildIndex([amd, arm]);
    const hostPort = (): string => mirror.url.replace('http://', '');
    const digestOf = async (ref: string): Promise<string> => (await podman.ok(['image', 'inspect', '--format', '{{.Digest}}', ref])).trim();
    const idOf = async (ref: string): Promise<string> => `sha256:${(await podman.ok(['image', 'inspect', '--format', '{{.Id}}', ref])).trim()}`;

    beforeAll(async () => {
      upstream = await startDistribution();
      await Promise.all([
        pushImage(upstream.hostPort, 'library/busybox:1.36', busybox),
        pushImage(upstream.hostPort, 'team/app:1.0', app),
        pushImage(upstream.hostPort, 'library/nginx:latest', nginx, { all: true }),
      ]);
      counter = await countingProxy(upstream.url);
      mirror = await startMirror(counter.url);
      podman = await makePodman();
      await podman.setRegistriesConf(
        [
          'unqualified-search-registries = ["docker.io"]',
          'short-name-mode = "enforcing"',
          '',
          '[[registry]]',
          'prefix = "docker.io"',
          'location = "docker.io"',
          '[[registry.mirror]]',
          `location = "${hostPort()}"`,
          'insecure = true',
          '',
        ].join('\n'),
      );
    }, 120_000);

    afterAll(async () => {
      await podman?.remove();
      await mirror?.close();
      await counter?.close();
      await upstream?.destroy();
    }, 120_000);

    afterEach(async () => {
      await podman.ok(['rmi', '--all', '--force']);
    }, 120_000);

    test("a registries.conf mirror of docker.io: qualified names, a short name and an index, with the upstream's digests", async () => {
      await podman.ok(['pull', 'docker.io/library/busybox:1.36']);
      expect(await digestOf('docker.io/library/busybox:1.36')).toBe(busybox.manifest.digest);
      expect(await idOf('docker.io/library/busybox:1.36')).toBe(busybox.config.digest);
      await podman.ok(['pull', 'docker.io/team/app:1.0']);
      expect(await digestOf('docker.io/team/app:1.0')).toBe(app.manifest.digest);
      await podman.ok(['rmi', '--all', '--force']);
      // `busybox:1.36` resolves to docker.io/library/busybox:1.36 through the search list.
      await podman.ok(['pull', 'busybox:1.36']);
      expect(await digestOf('docker.io/library/busybox:1.36')).toBe(busybox.manifest.digest);
      await podman.ok(['pull', 'docker.io/library/nginx']);
      expect(await digestOf('docker.io/library/nginx')).toBe(nginx.manifest.digest);
      expect(await idOf('docker.io/library/nginx')).toBe(amd.config.digest);
      for (const name of ['library/busybox', 'team/app', 'library/nginx'])
        expect(counter.hits.some((h) => h.startsWith(`GET /v2/${name}/manifests/`))).toBe(true);
      expect(counter.hits).toContain(`GET /v2/library/nginx/blobs/${amd.layers[0]!.digest}`);
      expect(counter.hits.some((h) => h.includes(arm.layers[0]!.digest))).toBe(false);
    }, 120_000);

    test('pulls of <mirror>/library/busybox directly', async () => {
      const ref = `${hostPort()}/library/busybox:1.36`;
      await podman.ok(['pull', '--tls-verify=false', ref]);
      expect(await digestOf(ref)).toBe(busybox.manifest.digest);
      const byDigest = `${hostPort()}/team/app@${app.manifest.digest}`;
      await podman.ok(['pull', '--tls-verify=false', byDigest]);
      expect(await idOf(byDigest)).toBe(app.config.digest);
    }, 120_000);

    test('with the upstream stopped, what the mirror cached still pulls, through registries.conf and directly', async () => {
      await podman.ok(['pull', 'docker.io/library/busybox:1.36']);
      await podman.ok(['rmi', '--all', '--force']);
      await upstream.stop();
      try {
        await podman.ok(['pull', 'docker.io/library/busybox:1.36']);
        expect(await digestOf('docker.io/library/busybox:1.36')).toBe(busybox.manifest.digest);
        await podman.ok(['pull', '--tls-verify=false', `${hostPort()}/library/busybox:1.36`]);
        const never = await podman.podman(['pull', '--tls-verify=false', `${hostPort()}/library/never-cached:1`]);
        expect(never.code).not.toBe(0);
      } finally {
        await upstream.restart();
      }
    }, 120_000);
  },
  { what: 'podman (run as root)', available: podmanAvailable },
);
