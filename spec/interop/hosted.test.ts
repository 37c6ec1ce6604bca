/**
 * Hosted repositories with real peers: skopeo pushes single-arch, docker-format and multi-arch
 * (`--all`) images into a hosted repository of a mirror that also proxies Debian's docker-registry,
 * and pulls them back with identical digests; the data directory we wrote is served by the official
 * registry, and one the official registry was pushed to is served by us.
 */
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeInterop } from '../helpers/interop.js';
import { startDistribution, type DistributionProcess } from '../helpers/upstream-registry.js';
import { buildImage, buildIndex } from '../helpers/images.js';
import { pushImage, pullImage } from '../helpers/skopeo.js';
import { startMirror, type TestMirror } from '../helpers/mirror.js';
import { OCI_MANIFEST, pushBlob, pushManifest, sha256 } from '../helpers/push.js';

/** `htpasswd -Bbn alice wonderland`. */
const ALICE = 'alice:$2y$05$Y3y9Hddxrj..M18YHcQzeeryGEEzs0pZKZ9ym9m.zsL8tBDml88K.';
const CREDS = 'alice:wonderland';
const hostPort = (m: TestMirror): string => m.url.replace('http://', '');

describeInterop('hosted repositories with skopeo and distribution 2.8', () => {
  let upstream: DistributionProcess;
  let dir: string;
  let root: string;
  let ours: TestMirror;
  const proxied = buildImage({ layers: [4096], seed: 'proxied' });
  const single = buildImage({ layers: [1024 * 1024 + 17, 2048], seed: 'hosted-single' });
  const docker = buildImage({ layers: [5000], seed: 'hosted-docker', format: 'docker' });
  const amd = buildImage({ layers: [3000], seed: 'hosted-amd', platform: { os: 'linux', architecture: 'amd64' } });
  const arm = buildImage({ layers: [3000], seed: 'hosted-arm', platform: { os: 'linux', architecture: 'arm64' } });
  const index = buildIndex([amd, arm], 'oci');

  const start = (rootDir: string): Promise<TestMirror> =>
    startMirror(upstream.url, {
      root: rootDir,
      proxyYaml: 'hosted: [internal/]',
      extraYaml: `auth:\n  htpasswd:\n    realm: test\n    path: ${join(dir, 'htpasswd')}`,
    });

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'hosted-interop-'));
    writeFileSync(join(dir, 'htpasswd'), `${ALICE}\n`);
    root = join(dir, 'root');
    upstream = await startDistribution();
    await pushImage(upstream.hostPort, 'library/busybox:latest', proxied);
    ours = await start(root);
  }, 120_000);

  afterAll(async () => {
    await ours?.close({ keepRoot: true });
    await upstream?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  test('single-arch (OCI and docker) and multi-arch pushes pull back with identical digests; proxying still works', async () => {
    await pushImage(hostPort(ours), 'internal/app:1.0', single, { creds: CREDS });
    await pushImage(hostPort(ours), 'internal/docker:1.0', docker, { creds: CREDS });
    await pushImage(hostPort(ours), 'internal/multi:latest', index, { all: true, creds: CREDS });
    const app = await pullImage(hostPort(ours), 'internal/app:1.0', { creds: CREDS });
    expect(app.manifestDigest).toBe(single.manifest.digest);
    for (const l of single.layers) expect(app.blobs).toContain(l.digest);
    expect((await pullImage(hostPort(ours), `internal/app@${single.manifest.digest}`, { creds: CREDS })).manifestDigest).toBe(single.manifest.digest);
    expect((await pullImage(hostPort(ours), 'internal/docker:1.0', { creds: CREDS })).manifestDigest).toBe(docker.manifest.digest);
    const multi = await pullImage(hostPort(ours), 'internal/multi:latest', { all: true, creds: CREDS });
    expect(multi.manifestDigest).toBe(index.manifest.digest);
    for (const img of [amd, arm]) expect(multi.blobs).toContain(img.manifest.digest);
    expect((await pullImage(hostPort(ours), 'library/busybox:latest', { creds: CREDS })).manifestDigest).toBe(proxied.manifest.digest);
    // Nothing was left in _uploads, and the upstream never saw a hosted name.
    expect(readdirSync(join(root, 'docker/registry/v2/repositories/internal/app/_uploads'))).toEqual([]);
    expect(existsSync(join(upstream.rootDir, 'docker/registry/v2/repositories/internal'))).toBe(false);
  }, 120_000);

  test('the official registry serves the hosted repositories we wrote', async () => {
    const official = await startDistribution({ rootDir: root });
    try {
      expect((await pullImage(official.hostPort, 'internal/app:1.0')).manifestDigest).toBe(single.manifest.digest);
      expect((await pullImage(official.hostPort, 'internal/docker:1.0')).manifestDigest).toBe(docker.manifest.digest);
      expect((await pullImage(official.hostPort, 'internal/multi:latest', { all: true })).manifestDigest).toBe(index.manifest.digest);
    } finally {
      await official.destroy();
    }
  }, 120_000);

  test('we serve, and push into, repositories the official registry was pushed to', async () => {
    const theirRoot = join(dir, 'theirs');
    const official = await startDistribution({ rootDir: theirRoot });
    try {
      await pushImage(official.hostPort, 'internal/theirs:1.0', single);
      await pushImage(official.hostPort, 'internal/theirs-multi:latest', index, { all: true });
    } finally {
      await official.destroy();
    }
    const served = await start(theirRoot);
    try {
      expect((await pullImage(hostPort(served), 'internal/theirs:1.0', { creds: CREDS })).manifestDigest).toBe(single.manifest.digest);
      expect((await pullImage(hostPort(served), 'internal/theirs-multi:latest', { all: true, creds: CREDS })).manifestDigest).toBe(index.manifest.digest);
      // A push into their repository reuses their blobs (skopeo checks and skips them) and tags.
      await pushImage(hostPort(served), 'internal/theirs:1.1', single, { creds: CREDS });
      expect((await pullImage(hostPort(served), 'internal/theirs:1.1', { creds: CREDS })).manifestDigest).toBe(single.manifest.digest);
    } finally {
      await served.close({ keepRoot: true });
    }
    const officialAgain = await startDistribution({ rootDir: theirRoot });
    try {
      expect((await pullImage(officialAgain.hostPort, 'internal/theirs:1.1')).manifestDigest).toBe(single.manifest.digest);
    } finally {
      await officialAgain.destroy();
    }
  }, 120_000);

  test('an upload begun by registry:2 is finished by us, and one begun by us is finished by registry:2 (same http.secret)', async () => {
    const shared = join(dir, 'resume');
    const secret = 'a-shared-secret';
    const content = Buffer.alloc(300_000, 7);
    content.write('resumable');
    const [a, b] = [content.subarray(0, 100_000), content.subarray(100_000)];
    const patch = (url: string, body: Buffer, range: string) =>
      fetch(url, { method: 'PATCH', body, headers: { 'Content-Type': 'application/octet-stream', 'Content-Range': range } });
    const pathOf = (location: string): string => (location.startsWith('http') ? new URL(location).pathname + new URL(location).search : location);

    // registry:2 starts it...
    let official = await startDistribution({ rootDir: shared, secret });
    let location: string;
    try {
      const post = await fetch(`${official.url}/v2/internal/resumed/blobs/uploads/`, { method: 'POST' });
      expect(post.status).toBe(202);
      const first = await patch(new URL(post.headers.get('location')!, official.url).href, a, '0-99999');
      expect(first.status).toBe(202);
      location = pathOf(first.headers.get('location')!);
    } finally {
      await official.stop();
    }
    // ... we finish it from its data directory.
    let mirror = await startMirror(upstream.url, {
      root: shared,
      httpYaml: `addr: 127.0.0.1:0\nsecret: ${secret}`,
      proxyYaml: 'hosted: [internal/]\nhostedanonymouspush: true',
    });
    try {
      const status = await fetch(`${mirror.url}${location}`);
      expect(status.status).toBe(204);
      expect(status.headers.get('range')).toBe('0-99999');
      const second = await patch(`${mirror.url}${location}`, b, `100000-${content.length - 1}`);
      expect(second.status).toBe(202);
      const put = await fetch(`${mirror.url}${pathOf(second.headers.get('location')!)}&digest=${sha256(content)}`, { method: 'PUT' });
      expect(put.status).toBe(201);
      // Now we start one...
      const post = await fetch(`${mirror.url}/v2/internal/resumed/blobs/uploads/`, { method: 'POST' });
      const first = await patch(`${mirror.url}${post.headers.get('location')}`, b, `0-${b.length - 1}`);
      expect(first.status).toBe(202);
      location = first.headers.get('location')!;
      expect(location).toMatch(/\?_state=/);
    } finally {
      await mirror.close({ keepRoot: true });
    }
    // ... and registry:2 finishes it, trusting our signed _state.
    official = await startDistribution({ rootDir: shared, secret });
    try {
      const second = await patch(`${official.url}${location}`, a, `${b.length}-${content.length - 1}`);
      expect(second.status).toBe(202);
      const whole = Buffer.concat([b, a]);
      const done = await fetch(`${new URL(second.headers.get('location')!, official.url).href}&digest=${sha256(whole)}`, { method: 'PUT' });
      expect(done.status).toBe(201);
      const got = Buffer.from(await (await fetch(`${official.url}/v2/internal/resumed/blobs/${sha256(content)}`)).arrayBuffer());
      expect(got.equals(content)).toBe(true);
    } finally {
      await official.destroy();
    }
    mirror = await startMirror(upstream.url, { root: shared, proxyYaml: 'hosted: [internal/]' });
    try {
      const got = await fetch(`${mirror.url}/v2/internal/resumed/blobs/${sha256(Buffer.concat([b, a]))}`);
      expect(got.status).toBe(200);
      expect(Buffer.from(await got.arrayBuffer()).equals(Buffer.concat([b, a]))).toBe(true);
    } finally {
      await mirror.close({ keepRoot: true });
    }
  }, 120_000);

  test('a layer with foreign URLs: the same answer as distribution 2.8 under each validation.manifests.urls setting', async () => {
    const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } }));
    const manifest = (url: string): Buffer =>
      Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: OCI_MANIFEST,
          config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(config), size: config.length },
          layers: [{ mediaType: 'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip', digest: sha256(Buffer.from(url)), size: 1234, urls: [url] }],
        }),
      );
    const settings: [string, string[]][] = [
      ['none set: nothing allowed', []],
      ['an allow list', ['validation:', '  manifests:', '    urls:', '      allow:', '        - ^https://([^/]+\\.)*example\\.com/']],
      [
        'allow and deny',
        [
          'validation:',
          '  manifests:',
          '    urls:',
          '      allow:',
          '        - ^https://([^/]+\\.)*example\\.com/',
          '      deny:',
          '        - ^https://private\\.',
        ],
      ],
      ['a deny list only', ['validation:', '  manifests:', '    urls:', '      deny:', '        - ^https://private\\.']],
    ];
    const urls = ['https://layers.example.com/l.tar.gz', 'https://private.example.com/l.tar.gz', 'https://elsewhere.test/l.tar.gz'];
    for (const [what, extra] of settings) {
      const official = await startDistribution({ extra });
      const mirror = await startMirror(upstream.url, { proxyYaml: 'hosted: [internal/]\nhostedanonymouspush: true', extraYaml: extra.join('\n') });
      try {
        for (const url of urls) {
          const answers: { status: number; code?: string }[] = [];
          for (const [target, repo] of [
            [official.url, 'foreign/app'],
            [mirror.url, 'internal/foreign'],
          ] as const) {
            await pushBlob(target, repo, config);
            const res = await pushManifest(target, repo, 'v1', manifest(url), OCI_MANIFEST);
            answers.push({ status: res.status, code: res.body?.errors?.[0]?.code });
          }
          // Refused where the official refuses (it answers 500 UNKNOWN there, its URL error being no
          // registry error; ours is the manifest's 400), accepted where it accepts.
          const refused = { status: 400, code: 'MANIFEST_INVALID' };
          expect({ what, url, ours: answers[1] }).toEqual({ what, url, ours: answers[0]!.status === 201 ? answers[0] : refused });
          expect([201, 500]).toContain(answers[0]!.status);
        }
      } finally {
        await mirror.close();
        await official.destroy();
      }
    }
  }, 120_000);
});
