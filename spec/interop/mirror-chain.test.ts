/**
 * Short names through a chain of mirrors: a regional mirror (ours) whose upstream is a central
 * mirror of Docker Hub (Debian's docker-registry 2.8 in proxy mode, as `registry:2` runs), itself in
 * front of a docker-registry "hub". `<regional>/busybox` is Docker Hub's `library/busybox` only when
 * the regional mirror knows its upstream serves Docker Hub's names: `proxy.dockerhub: true` (the
 * default `auto` goes by the hostname, which here is not Docker Hub's).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describeInterop } from '../helpers/interop.js';
import { startDistribution, type DistributionProcess } from '../helpers/upstream-registry.js';
import { buildImage } from '../helpers/images.js';
import { pushImage, pullImage, skopeo } from '../helpers/skopeo.js';
import { countingProxy, type CountingProxy } from '../helpers/counting-proxy.js';
import { startMirror, type TestMirror } from '../helpers/mirror.js';

describeInterop('short names through a chain of mirrors (ours → registry:2 as the central mirror → hub)', () => {
  let hub: DistributionProcess;
  let central: DistributionProcess;
  let counter: CountingProxy;
  const mirrors: TestMirror[] = [];
  const busybox = buildImage({ layers: [4000, 100], seed: 'chain-busybox', format: 'docker' });
  const app = buildImage({ layers: [2000], seed: 'chain-team-app' });
  const hostPort = (m: TestMirror): string => m.url.replace('http://', '');
  const regional = async (proxyYaml?: string): Promise<TestMirror> => {
    const m = await startMirror(counter.url, { proxyYaml });
    mirrors.push(m);
    return m;
  };

  beforeAll(async () => {
    hub = await startDistribution();
    await Promise.all([pushImage(hub.hostPort, 'library/busybox:latest', busybox), pushImage(hub.hostPort, 'team/app:1.0', app)]);
    central = await startDistribution({ proxy: { remoteurl: hub.url } });
    counter = await countingProxy(central.url);
  }, 120_000);

  afterAll(async () => {
    for (const m of mirrors) await m.close();
    await counter?.close();
    await central?.destroy();
    await hub?.destroy();
  });

  test('proxy.dockerhub: true: <regional>/busybox is library/busybox, stored once, and served from the cache with the central mirror down', async () => {
    const mirror = await regional('dockerhub: true');
    const short = await pullImage(hostPort(mirror), 'busybox:latest');
    expect(short.manifestDigest).toBe(busybox.manifest.digest);
    for (const layer of busybox.layers) expect(short.blobs).toContain(layer.digest);
    // The central mirror was asked for Docker Hub's name, never for `busybox`.
    expect(counter.hits).toContain('GET /v2/library/busybox/manifests/latest');
    expect(counter.hits.filter((h) => h.startsWith('GET /v2/busybox/') || h.startsWith('HEAD /v2/busybox/'))).toEqual([]);
    expect(existsSync(join(mirror.root, 'docker/registry/v2/repositories/library/busybox'))).toBe(true);
    expect(existsSync(join(mirror.root, 'docker/registry/v2/repositories/busybox'))).toBe(false);
    // Names with a slash are not touched.
    expect((await pullImage(hostPort(mirror), 'team/app:1.0')).manifestDigest).toBe(app.manifest.digest);
    await central.stop();
    try {
      expect((await pullImage(hostPort(mirror), 'library/busybox:latest')).manifestDigest).toBe(busybox.manifest.digest);
      expect((await pullImage(hostPort(mirror), 'busybox:latest')).manifestDigest).toBe(busybox.manifest.digest);
    } finally {
      await central.restart();
    }
  }, 120_000);

  test('the default (auto, by hostname): the regional mirror asks for busybox as it is, and the central one has no such name', async () => {
    const mirror = await regional();
    const r = await skopeo(['inspect', '--tls-verify=false', `docker://${hostPort(mirror)}/busybox:latest`]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/manifest unknown|not found|name unknown/i);
    expect(counter.hits.some((h) => h.includes('/v2/busybox/manifests/latest'))).toBe(true);
    expect((await pullImage(hostPort(mirror), 'library/busybox:latest')).manifestDigest).toBe(busybox.manifest.digest);
  });
});
