/**
 * `registry warm` as an operator runs it (the real CLI, `bin/registry`) against Debian's
 * docker-registry as the upstream: after the warm-up the upstream is stopped, and skopeo still
 * pulls the whole multi-platform image, and one platform of it into a `dir:`, through a mirror on
 * the same storage, with the upstream's digests.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { describeInterop } from '../helpers/interop.js';
import { buildImage, buildIndex } from '../helpers/images.js';
import { startMirror } from '../helpers/mirror.js';
import { pullImage, pushImage, skopeo } from '../helpers/skopeo.js';
import { startDistribution, type DistributionProcess } from '../helpers/upstream-registry.js';

const run = promisify(execFile);

describeInterop('registry warm against real peers', () => {
  let dir: string;
  let upstream: DistributionProcess;
  const app = buildIndex([
    buildImage({ layers: [200_000, 3000], seed: 'warm-amd64' }),
    buildImage({ layers: [180_000], seed: 'warm-arm64', platform: { os: 'linux', architecture: 'arm64' } }),
  ]);

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'interop-warm-'));
    upstream = await startDistribution();
    await pushImage(upstream.hostPort, 'team/app:1.0', app, { all: true });
  }, 120_000);
  afterAll(async () => {
    await upstream?.destroy();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('the CLI warms every platform; with the upstream stopped skopeo pulls them from the cache', async () => {
    const root = join(dir, 'root');
    const config = join(dir, 'config.yml');
    await writeFile(
      config,
      `version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: ${root}\n  delete:\n    enabled: true\nproxy:\n  remoteurl: ${upstream.url}\n`,
    );
    const { stdout, stderr } = await run(process.execPath, [resolve('bin/registry'), 'warm', config, 'team/app:1.0']);
    expect(stdout).toMatch(/^warmed 1 image \(2 platforms\): 5 blobs fetched \(.+\), 0 already cached, in [\d.]+s\n$/);
    expect(stderr).toContain(`warm team/app:1.0: manifest ${app.manifest.digest} application/vnd.oci.image.index.v1+json\n`);
    expect(stderr).toContain(`warm team/app:1.0: manifest ${app.images[1]!.manifest.digest} linux/arm64\n`);
    for (const image of app.images) {
      for (const layer of image.layers) expect(stderr).toContain(`warm team/app:1.0: blob ${layer.digest} `);
    }

    await upstream.stop();
    const mirror = await startMirror(upstream.url, { root });
    try {
      const pulled = await pullImage(new URL(mirror.url).host, 'team/app:1.0', { all: true });
      expect(pulled.manifestDigest).toBe(app.manifest.digest);
      for (const image of app.images) {
        for (const d of [image.manifest, image.config, ...image.layers]) expect(pulled.blobs).toContain(d.digest);
      }
      // One platform by digest into a directory, as `skopeo copy docker://... dir:...` writes it.
      const arm64 = app.images[1]!;
      const out = join(dir, 'arm64');
      const r = await skopeo([
        'copy',
        '--preserve-digests',
        '--src-tls-verify=false',
        `docker://${new URL(mirror.url).host}/team/app@${arm64.manifest.digest}`,
        `dir:${out}`,
      ]);
      if (r.code !== 0) throw new Error(`skopeo copy to dir: failed: ${r.stderr}`);
      const manifest = await readFile(join(out, 'manifest.json'));
      expect(`sha256:${createHash('sha256').update(manifest).digest('hex')}`).toBe(arm64.manifest.digest);
      const files = await readdir(out);
      for (const d of [arm64.config, ...arm64.layers]) expect(files).toContain(d.digest.slice('sha256:'.length));
    } finally {
      await mirror.close();
    }
  }, 120_000);
});
