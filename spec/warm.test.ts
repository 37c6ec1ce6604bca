/**
 * `registry warm`: images (all platforms of an index, or one) are fetched into the cache through
 * the proxy stores a pull uses, with no listener, so that a mirror started later on the same
 * storage serves them with the upstream down, and their expiry is scheduled as a pull's is.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { jest } from '@jest/globals';
import request from 'supertest';
import { main } from '../lib/cli.js';
import { warmCommand } from '../lib/warm/command.js';
import { formatBar } from '../lib/warm/progress.js';
import { registryYaml } from './helpers/registry-yaml.js';
import { seedImage, startFakeUpstream, type FakeUpstream } from './helpers/fake-upstream.js';
import { startMirror } from './helpers/mirror.js';

const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const ACCEPT = `${OCI_INDEX}, ${OCI_MANIFEST}`;

/** Captured output of one run; `tty` makes stderr a terminal. */
function streams(tty = false): { out: PassThrough; err: PassThrough & { isTTY?: boolean; columns?: number }; text(): { out: string; err: string } } {
  const out = new PassThrough();
  const err = Object.assign(new PassThrough(), { isTTY: tty, columns: 120 });
  let o = '';
  let e = '';
  out.on('data', (c: Buffer) => (o += c.toString()));
  err.on('data', (c: Buffer) => (e += c.toString()));
  return { out, err, text: () => ({ out: o, err: e }) };
}

/** The keys of `scheduler-state.json`. */
async function scheduled(root: string): Promise<string[]> {
  return Object.keys(JSON.parse(await readFile(join(root, 'scheduler-state.json'), 'utf8')) as object);
}

describe('registry warm', () => {
  let upstream: FakeUpstream;
  let dir: string;
  let root: string;
  let config: string;
  const blobGets = (repo: string): number => upstream.count(new RegExp(`^GET /v2/${repo}/blobs/`));

  beforeEach(async () => {
    upstream = await startFakeUpstream();
    dir = await mkdtemp(join(tmpdir(), 'warm-'));
    root = join(dir, 'root');
    config = join(dir, 'config.yml');
    await writeFile(config, registryYaml({ root, level: 'info', http: ['addr: 127.0.0.1:0'], proxy: [`remoteurl: ${upstream.url}`, 'ttl: 1h'] }));
  });
  afterEach(async () => {
    await upstream.close();
    await rm(dir, { recursive: true, force: true });
  });

  /** An index over two platforms, each image with a layer of its own. */
  const seedIndex = (repo: string, tag: string) => {
    const amd64 = seedImage(upstream, repo, 'amd64-only', [randomBytes(50_000)]);
    const arm64 = seedImage(upstream, repo, 'arm64-only', [randomBytes(40_000)]);
    const entry = (digest: string, architecture: string, body: Buffer) => ({
      mediaType: OCI_MANIFEST,
      digest,
      size: body.length,
      platform: { os: 'linux', architecture },
    });
    const index = {
      schemaVersion: 2,
      mediaType: OCI_INDEX,
      manifests: [entry(amd64.manifest, 'amd64', amd64.manifestBody), entry(arm64.manifest, 'arm64', arm64.manifestBody)],
    };
    const digest = upstream.addManifest(repo, index, tag, OCI_INDEX);
    return { digest, amd64, arm64 };
  };

  test('a single-platform image: warmed with no listener, expiry scheduled, served with the upstream down; a second warm fetches no blob', async () => {
    const img = seedImage(upstream, 'library/app', 'v1', [randomBytes(300_000), randomBytes(20_000)]);
    const s = streams();
    expect(await warmCommand([config, 'library/app:v1'], {}, s)).toBe(0);
    const { out, err } = s.text();
    expect(out).toMatch(/^warmed 1 image \(1 platform\): 3 blobs fetched \(31\d\.\d KiB\), 0 already cached, in \d+\.\ds\n$/);
    expect(err).toContain(`warm library/app:v1: manifest ${img.manifest} ${OCI_MANIFEST}\n`);
    expect(err).toContain(`warm library/app:v1: blob ${img.layers[0]} 293.0 KiB fetched\n`);
    expect(err).toContain(`warm library/app:v1: blob ${img.layers[1]} 19.5 KiB fetched\n`);
    expect(err).toContain(`warm library/app:v1: blob ${img.config} `);
    expect(err).not.toContain('\x1b[');
    expect(blobGets('library/app')).toBe(3);
    // Flushed on close, as a pull's would be at shutdown.
    expect((await scheduled(root)).sort()).toEqual([img.manifest, img.config, ...img.layers].map((d) => `library/app@${d}`).sort());

    const again = streams();
    expect(await warmCommand([config, 'docker.io/library/app:v1'], {}, again)).toBe(0);
    expect(again.text().out).toMatch(/^warmed 1 image \(1 platform\): 0 blobs fetched \(0 B\), 3 already cached, in /);
    expect(again.text().err).toContain(`warm docker.io/library/app:v1: blob ${img.layers[0]} 293.0 KiB cached\n`);
    expect(blobGets('library/app')).toBe(3);

    upstream.setDown(true);
    const mirror = await startMirror(upstream.url, { root });
    try {
      const m = await request(mirror.url).get('/v2/library/app/manifests/v1').set('Accept', ACCEPT);
      expect(m.status).toBe(200);
      expect(m.headers['docker-content-digest']).toBe(img.manifest);
      for (const d of [img.config, ...img.layers]) {
        const blob = await request(mirror.url)
          .get(`/v2/library/app/blobs/${d}`)
          .buffer(true)
          .parse((res, cb) => {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.on('end', () => cb(null, Buffer.concat(chunks)));
          });
        expect(blob.status).toBe(200);
        expect(blob.headers['docker-content-digest']).toBe(d);
      }
    } finally {
      await mirror.close();
    }
    expect(blobGets('library/app')).toBe(3);
  });

  test('an index: only the chosen platform with --platform, every platform by default; a mirror serves them all with the upstream down', async () => {
    const { digest, amd64, arm64 } = seedIndex('team/multi', 'latest');
    const one = streams();
    expect(await warmCommand([config, '--platform', 'linux/arm64', 'team/multi'], {}, one)).toBe(0);
    expect(one.text().out).toMatch(/^warmed 1 image \(1 platform\): 2 blobs fetched/);
    expect(one.text().err).toContain(`warm team/multi: manifest ${digest} ${OCI_INDEX}\n`);
    expect(one.text().err).toContain(`warm team/multi: manifest ${arm64.manifest} linux/arm64\n`);
    expect(upstream.count(new RegExp(`^GET /v2/team/multi/blobs/${arm64.layers[0]}$`))).toBe(1);
    expect(upstream.count(new RegExp(`^GET /v2/team/multi/blobs/${amd64.layers[0]}$`))).toBe(0);
    expect(upstream.count(new RegExp(`^GET /v2/team/multi/manifests/${amd64.manifest}$`))).toBe(0);

    const all = streams();
    expect(await warmCommand([config, '--concurrency=1', 'team/multi:latest'], {}, all)).toBe(0);
    // Both images' configs are the same bytes: one blob, already cached, as is arm64's layer.
    expect(all.text().out).toMatch(/^warmed 1 image \(2 platforms\): 1 blob fetched \(48\.8 KiB\), 2 already cached, in /);
    expect(upstream.count(new RegExp(`^GET /v2/team/multi/blobs/${amd64.layers[0]}$`))).toBe(1);

    const wrong = streams();
    expect(await warmCommand([config, '--platform', 'linux/s390x', 'team/multi'], {}, wrong)).toBe(1);
    expect(wrong.text().err).toContain('warm team/multi: failed: the index has no manifest for linux/s390x (it has linux/amd64, linux/arm64)');

    await upstream.close();
    const mirror = await startMirror(upstream.url, { root });
    try {
      const index = await request(mirror.url).get('/v2/team/multi/manifests/latest').set('Accept', ACCEPT);
      expect(index.status).toBe(200);
      expect(index.headers['docker-content-digest']).toBe(digest);
      for (const img of [amd64, arm64]) {
        await request(mirror.url).get(`/v2/team/multi/manifests/${img.manifest}`).set('Accept', ACCEPT).expect(200);
        for (const d of [img.config, ...img.layers]) await request(mirror.url).get(`/v2/team/multi/blobs/${d}`).expect(200);
      }
    } finally {
      await mirror.close();
    }
  });

  test('references from --file and the command line; bad ones fail (exit 1) and are named while the good ones are warmed', async () => {
    const good = seedImage(upstream, 'library/good', 'v1', [randomBytes(1000)]);
    const pinned = seedImage(upstream, 'org/pinned', 'v2', [randomBytes(2000)]);
    const list = join(dir, 'images.txt');
    await writeFile(
      list,
      `# images for the morning\nlibrary/good:v1\n\n   \nNot/Valid!!  # a typo\nghcr.io/org/app:v1\nlibrary/missing:v1\norg/pinned:v2@${pinned.manifest}\n`,
    );
    const s = streams();
    expect(await warmCommand([config, 'org/nothing@sha256:abc', '--file', list], {}, s)).toBe(1);
    const { out, err } = s.text();
    // seedImage's config is the same bytes in every repository: cached for the first, linked for the second.
    expect(out).toMatch(/^warmed 2 images \(2 platforms\): 3 blobs fetched \(3\.0 KiB\), 1 already cached, in /);
    expect(err).toContain('warm org/nothing@sha256:abc: failed: not a valid image reference');
    expect(err).toContain('warm Not/Valid!!: failed: not a valid image reference');
    expect(err).toContain('warm ghcr.io/org/app:v1: failed: this mirror has no upstream for ghcr.io (see proxy.upstreams)');
    expect(err).toMatch(/warm library\/missing:v1: failed: .*404/);
    expect(err).toContain(`warm library/good:v1: manifest ${good.manifest}`);
    expect(err).toContain(`warm org/pinned:v2@${pinned.manifest}: manifest ${pinned.manifest}`);
    expect(err).toContain('4 of 6 references failed: org/nothing@sha256:abc, Not/Valid!!, ghcr.io/org/app:v1, library/missing:v1\n');
    // By digest: no tag is asked for or linked.
    expect(upstream.count(/^(HEAD|GET) \/v2\/org\/pinned\/manifests\/v2$/)).toBe(0);
  });

  test('a registry of proxy.upstreams by its host; an unknown registry fails', async () => {
    const ghcr = await startFakeUpstream();
    try {
      const img = seedImage(ghcr, 'org/app', 'v1', [randomBytes(3000)]);
      await writeFile(
        config,
        registryYaml({
          root,
          http: ['addr: 127.0.0.1:0'],
          proxy: [`remoteurl: ${upstream.url}`, 'ttl: 1h', 'upstreams:', '  ghcr.io:', `    remoteurl: ${ghcr.url}`],
        }),
      );
      const s = streams();
      expect(await warmCommand([config, 'ghcr.io/org/app:v1', 'quay.io/org/app'], {}, s)).toBe(1);
      expect(s.text().out).toMatch(/^warmed 1 image \(1 platform\): 2 blobs fetched/);
      expect(s.text().err).toContain('warm quay.io/org/app: failed: this mirror has no upstream for quay.io');
      expect(ghcr.count(/^GET \/v2\/org\/app\/blobs\//)).toBe(2);
      expect(upstream.hits).toHaveLength(0);
      expect(await scheduled(root)).toContain(`ghcr.io/org/app@${img.manifest}`);

      await ghcr.close();
      const mirror = await startMirror(upstream.url, { root, proxyYaml: ['upstreams:', '  ghcr.io:', `    remoteurl: ${ghcr.url}`].join('\n') });
      try {
        const m = await request(mirror.url).get('/v2/ghcr.io/org/app/manifests/v1').set('Accept', ACCEPT);
        expect(m.status).toBe(200);
        expect(m.headers['docker-content-digest']).toBe(img.manifest);
        for (const d of [img.config, ...img.layers]) await request(mirror.url).get(`/v2/ghcr.io/org/app/blobs/${d}`).expect(200);
      } finally {
        await mirror.close();
      }
    } finally {
      await ghcr.close();
    }
  });

  test('a reference under a hosted prefix is refused, never proxied into the hosted repository', async () => {
    seedImage(upstream, 'internal/app', 'v1', [randomBytes(1000)]);
    const good = seedImage(upstream, 'org/app', 'v1', [randomBytes(1000)]);
    await writeFile(config, registryYaml({ root, http: ['addr: 127.0.0.1:0'], proxy: [`remoteurl: ${upstream.url}`, 'ttl: 1h', 'hosted: [internal/]'] }));
    const s = streams();
    expect(await warmCommand([config, 'internal/app:v1', 'docker.io/internal/app:v1', 'org/app:v1'], {}, s)).toBe(1);
    const { out, err } = s.text();
    for (const ref of ['internal/app:v1', 'docker.io/internal/app:v1']) {
      expect(err).toContain(`warm ${ref}: failed: internal/app is a hosted repository (proxy.hosted): it is pushed to, not fetched from an upstream`);
    }
    expect(out).toMatch(/^warmed 1 image/);
    expect(upstream.count(/\/v2\/internal\//)).toBe(0);
    expect(await scheduled(root)).toContain(`org/app@${good.manifest}`);
    expect((await scheduled(root)).filter((k) => k.startsWith('internal/'))).toEqual([]);
  });

  test('while a mirror runs on the same storage: both schedules end up in scheduler-state.json', async () => {
    const pulled = seedImage(upstream, 'org/pulled', 'v1', [randomBytes(500)]);
    const warmed = seedImage(upstream, 'org/warmed', 'v1', [randomBytes(600)]);
    const mirror = await startMirror(upstream.url, { root, proxyYaml: 'ttl: 1h' });
    try {
      await request(mirror.url).get('/v2/org/pulled/manifests/v1').set('Accept', ACCEPT).expect(200);
      for (const d of [pulled.config, ...pulled.layers]) await request(mirror.url).get(`/v2/org/pulled/blobs/${d}`).expect(200);
      // The mirror holds the scheduler lease: warm leaves its entries in a journal, which the mirror
      // takes into the file at its next sync (every 5 s).
      expect(await warmCommand([config, 'org/warmed:v1'], {}, streams())).toBe(0);
      const wanted = [`org/warmed@${warmed.manifest}`, `org/warmed@${warmed.layers[0]}`];
      for (const deadline = Date.now() + 15_000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 100))) {
        const keys = await scheduled(root).catch(() => [] as string[]);
        if (wanted.every((k) => keys.includes(k))) break;
      }
      expect(await scheduled(root)).toEqual(expect.arrayContaining(wanted));
    } finally {
      await mirror.close({ keepRoot: true });
    }
    const keys = await scheduled(root);
    for (const d of [pulled.manifest, pulled.config, ...pulled.layers]) expect(keys).toContain(`org/pulled@${d}`);
    for (const d of [warmed.manifest, warmed.config, ...warmed.layers]) expect(keys).toContain(`org/warmed@${d}`);
  });

  test('on a terminal, a progress bar per blob being fetched, redrawn in place', async () => {
    const img = seedImage(upstream, 'library/app', 'v1', [randomBytes(200_000)]);
    upstream.fault(new RegExp(`^GET /v2/library/app/blobs/${img.layers[0]}$`), { kind: 'slow', bytesPerTick: 20_000, tickMs: 30 });
    const s = streams(true);
    expect(await warmCommand([config, 'library/app:v1'], {}, s)).toBe(0);
    const { err } = s.text();
    const short = img.layers[0]!.slice(0, 19);
    expect(err).toContain(`${short} [>`);
    expect(err).toMatch(new RegExp(`${short} \\[=+>? *\\] +[1-9]\\d?%  \\d+\\.\\d KiB / 195\\.3 KiB`));
    // Up over the bars, clear to the end of the screen, redraw.
    expect(err).toMatch(/\x1b\[\d+A\r\x1b\[J/);
    expect(err).toContain(`warm library/app:v1: blob ${img.layers[0]} 195.3 KiB fetched\n`);
    // The bars are gone at the end: the last thing written clears them.
    expect(err.endsWith('\x1b[J')).toBe(true);
    expect(s.text().out).toMatch(/^warmed 1 image/);
  });

  test('the bar', () => {
    expect(formatBar('sha256:0123456789ab', 0, 100)).toBe(`sha256:0123456789ab [>${' '.repeat(29)}]   0%  0 B / 100 B`);
    expect(formatBar('sha256:0123456789ab', 1536, 3072)).toBe(`sha256:0123456789ab [${'='.repeat(15)}>${' '.repeat(14)}]  50%  1.5 KiB / 3.0 KiB`);
    expect(formatBar('sha256:0123456789ab', 100, 100)).toBe(`sha256:0123456789ab [${'='.repeat(30)}] 100%  100 B / 100 B`);
  });

  test('through the command line; usage errors name the problem', async () => {
    seedImage(upstream, 'library/app', 'v1', [randomBytes(100)]);
    const written: string[] = [];
    const capture = (chunk: string | Uint8Array): boolean => (written.push(String(chunk)), true);
    const out = jest.spyOn(process.stdout, 'write').mockImplementation(capture);
    const err = jest.spyOn(process.stderr, 'write').mockImplementation(capture);
    try {
      expect(await main(['warm', config, 'library/app:v1'])).toBe(0);
      expect(written.join('')).toMatch(/warmed 1 image \(1 platform\): 2 blobs fetched/);
      expect(await main(['--help'])).toBe(0);
      expect(written.join('')).toMatch(/\n {2}warm +pre-fetch images into the cache\n/);
      expect(await main(['warm', '--help'])).toBe(0);
      expect(written.join('')).toContain('--platform <os/arch[/variant]>');
      expect(await main(['warm', config, '--concurrency', '0', 'x'])).toBe(1);
      expect(written.join('')).toContain('registry: --concurrency: a number from 1 to 64');
    } finally {
      out.mockRestore();
      err.mockRestore();
    }
    await expect(warmCommand([], {}, streams())).rejects.toThrow(/a configuration file is required/);
    await expect(warmCommand([config], {}, streams())).rejects.toThrow(/no image to warm/);
    await expect(warmCommand([config, '--platform', 'arm64', 'x'], {}, streams())).rejects.toThrow(/expected os\/architecture/);
    await expect(warmCommand([config, '--file'], {}, streams())).rejects.toThrow(/--file needs a value/);
    await expect(warmCommand([config, '--bogus', 'x'], {}, streams())).rejects.toThrow(/unknown flag --bogus/);
  });
});
