/**
 * `registry warm`: images (all platforms of an index, or one) are fetched into the cache through
 * the mirror's own routes, so that a mirror on the same storage serves them with the upstream down.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import request from 'supertest';
import { warmCommand } from '../lib/warm/command.js';
import { seedImage, startFakeUpstream, type FakeUpstream } from './helpers/fake-upstream.js';
import { startMirror } from './helpers/mirror.js';

const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
const ACCEPT = `${OCI_INDEX}, application/vnd.oci.image.manifest.v1+json`;

/** Captured output of one run. */
function streams(tty = false): { out: PassThrough; err: PassThrough & { isTTY?: boolean }; text(): { out: string; err: string } } {
  const out = new PassThrough();
  const err = Object.assign(new PassThrough(), { isTTY: tty, columns: 120 });
  let o = '';
  let e = '';
  out.on('data', (c: Buffer) => (o += c.toString()));
  err.on('data', (c: Buffer) => (e += c.toString()));
  return { out, err, text: () => ({ out: o, err: e }) };
}

describe('registry warm', () => {
  let upstream: FakeUpstream;
  let dir: string;
  let root: string;
  let config: string;
  beforeEach(async () => {
    upstream = await startFakeUpstream();
    dir = await mkdtemp(join(tmpdir(), 'warm-'));
    root = join(dir, 'root');
    config = join(dir, 'config.yml');
    await writeFile(config, `version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: ${root}\n  delete:\n    enabled: true\nproxy:\n  remoteurl: ${upstream.url}\n  ttl: 1h\n`);
  });
  afterEach(async () => {
    await upstream.close();
    await rm(dir, { recursive: true, force: true });
  });

  /** An index over two platforms, each image with its own layer. */
  const seedIndex = (repo: string, tag: string) => {
    const amd64 = seedImage(upstream, repo, 'amd64-only', [randomBytes(50_000)]);
    const arm64 = seedImage(upstream, repo, 'arm64-only', [randomBytes(40_000)]);
    const manifest = (digest: string, architecture: string, body: Buffer) => ({
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      digest,
      size: body.length,
      platform: { os: 'linux', architecture },
    });
    const index = { schemaVersion: 2, mediaType: OCI_INDEX, manifests: [manifest(amd64.manifest, 'amd64', amd64.manifestBody), manifest(arm64.manifest, 'arm64', arm64.manifestBody)] };
    upstream.addManifest(repo, index, tag, OCI_INDEX);
    return { amd64, arm64 };
  };

  test('a warmed image is served by a mirror on the same storage with the upstream down; a second warm fetches nothing', async () => {
    const img = seedImage(upstream, 'library/app', 'v1', [randomBytes(300_000), randomBytes(20_000)]);
    const s = streams();
    expect(await warmCommand([config, 'library/app:v1'], {}, s)).toBe(0);
    expect(s.text().out).toMatch(/^warmed 1 image \(1 platform\): 3 blobs fetched \(31\d\.\d KiB\), 0 already cached, in \d+\.\ds\n$/);
    expect(s.text().err).toContain(`warm library/app:v1: application/vnd.oci.image.manifest.v1+json ${img.manifest}`);
    expect(s.text().err).toMatch(new RegExp(`blob ${img.layers[0]!.slice(0, 19)} 293\\.0 KiB fetched`));

    const again = streams();
    const blobGets = upstream.count(/^GET \/v2\/library\/app\/blobs\//);
    expect(await warmCommand([config, 'docker.io/library/app:v1'], {}, again)).toBe(0);
    expect(again.text().out).toMatch(/0 blobs fetched \(0 B\), 3 already cached/);
    expect(upstream.count(/^GET \/v2\/library\/app\/blobs\//)).toBe(blobGets);

    upstream.setDown(true);
    const mirror = await startMirror(upstream.url, { root });
    try {
      const m = await request(mirror.url).get('/v2/library/app/manifests/v1').set('Accept', ACCEPT);
      expect(m.status).toBe(200);
      expect(m.headers['docker-content-digest']).toBe(img.manifest);
      for (const d of [img.config, ...img.layers]) await request(mirror.url).get(`/v2/library/app/blobs/${d}`).expect(200);
    } finally {
      await mirror.close();
    }
  });

  test('an index: every platform by default, only the chosen one with --platform', async () => {
    const { amd64, arm64 } = seedIndex('team/multi', 'latest');
    const one = streams();
    expect(await warmCommand([config, '--platform', 'linux/arm64', 'team/multi'], {}, one)).toBe(0);
    expect(one.text().out).toMatch(/^warmed 1 image \(1 platform\): 2 blobs fetched/);
    expect(upstream.count(new RegExp(`^GET /v2/team/multi/blobs/${arm64.layers[0]}$`))).toBe(1);
    expect(upstream.count(new RegExp(`^GET /v2/team/multi/blobs/${amd64.layers[0]}$`))).toBe(0);

    const all = streams();
    expect(await warmCommand([config, 'team/multi:latest'], {}, all)).toBe(0);
    // Both configs hold the same bytes: one blob.
    expect(all.text().out).toMatch(/^warmed 1 image \(2 platforms\): 1 blobs fetched \(.*\), 2 already cached/);
    expect(upstream.count(new RegExp(`^GET /v2/team/multi/blobs/${amd64.layers[0]}$`))).toBe(1);
  });

  test('references from a file; a bad or unknown one fails (exit 1) while the others are warmed', async () => {
    seedImage(upstream, 'library/good', 'v1', [randomBytes(1000)]);
    const list = join(dir, 'images.txt');
    await writeFile(list, '# images for the morning\nlibrary/good:v1\n\nNot/Valid!!  # a typo\nghcr.io/org/app:v1\nlibrary/missing:v1\n');
    const s = streams();
    expect(await warmCommand([config, '--file', list], {}, s)).toBe(1);
    expect(s.text().out).toMatch(/^warmed 1 image \(1 platform\): 2 blobs fetched/);
    expect(s.text().err).toContain('warm Not/Valid!!: failed: not an image reference');
    expect(s.text().err).toContain('warm ghcr.io/org/app:v1: failed: this mirror has no upstream for ghcr.io');
    expect(s.text().err).toMatch(/warm library\/missing:v1: failed: manifest v1: 404 MANIFEST_UNKNOWN/);
    expect(s.text().err).toContain('3 of 4 references failed: Not/Valid!!, ghcr.io/org/app:v1, library/missing:v1');
  });

  test('on a terminal, progress bars are drawn in place', async () => {
    seedImage(upstream, 'library/app', 'v1', [randomBytes(200_000)]);
    const s = streams(true);
    expect(await warmCommand([config, 'library/app:v1'], {}, s)).toBe(0);
    expect(s.text().err).toContain('\x1b[2K');
    expect(s.text().err).toMatch(/blob sha256:\w{12} 195\.3 KiB fetched/);
  });

  test('usage errors name the problem', async () => {
    await expect(warmCommand([], {}, streams())).rejects.toThrow(/a configuration file is required/);
    await expect(warmCommand([config], {}, streams())).rejects.toThrow(/no image to warm/);
    await expect(warmCommand([config, '--platform', 'arm64', 'x'], {}, streams())).rejects.toThrow(/expected os\/architecture/);
    await expect(warmCommand([config, '--bogus', 'x'], {}, streams())).rejects.toThrow(/unknown flag --bogus/);
  });
});
