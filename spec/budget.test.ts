/**
 * How cached tags are checked with the upstream, counted in upstream requests: the freshness window
 * (extension `freshness`) serves a checked tag without asking again, concurrent checks of one tag
 * share one request, cosign's signature tags are never frozen (by a window or by `immutabletags`),
 * and `proxy.maxupstreamconns` caps the connections open to the upstream.
 */
import { randomBytes } from 'node:crypto';
import { startFakeUpstream, seedImage, type FakeUpstream } from './helpers/fake-upstream.js';
import { startMirror, type TestMirror } from './helpers/mirror.js';
import { closeBoth } from './helpers/mirror-of-fake-upstream.js';
import { until } from './helpers/until.js';

const ACCEPT = 'application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json';

describe('checks of cached tags', () => {
  let upstream: FakeUpstream;
  let mirror: TestMirror;

  const start = async (proxyYaml: string): Promise<void> => {
    upstream = await startFakeUpstream();
    mirror = await startMirror(upstream.url, { proxyYaml });
  };
  afterEach(() => closeBoth({ upstream, mirror }));

  const pull = async (repo: string, ref: string): Promise<{ status: number; digest: string | null }> => {
    const res = await fetch(`${mirror.url}/v2/${repo}/manifests/${ref}`, { headers: { accept: ACCEPT } });
    await res.arrayBuffer();
    return { status: res.status, digest: res.headers.get('docker-content-digest') };
  };
  const manifestRequests = (repo: string): number => upstream.count(new RegExp(`^(GET|HEAD) /v2/${repo}/manifests/`));

  test('within its freshness window a tag is served with no upstream request, sequential or concurrent; a tag outside every pattern is checked each time', async () => {
    await start("freshness:\n    '^latest$': 1h");
    const img = seedImage(upstream, 'library/app', 'latest', [randomBytes(64)]);
    seedImage(upstream, 'library/app', 'v1', [randomBytes(64)]);
    expect((await pull('library/app', 'latest')).digest).toBe(img.manifest);
    expect(manifestRequests('library/app')).toBe(1);
    for (let i = 0; i < 10; i++) expect((await pull('library/app', 'latest')).digest).toBe(img.manifest);
    const together = await Promise.all(Array.from({ length: 20 }, () => pull('library/app', 'latest')));
    expect(together.every((r) => r.status === 200 && r.digest === img.manifest)).toBe(true);
    expect(manifestRequests('library/app')).toBe(1);

    // No pattern matches v1: each pull after the first is one HEAD, as without the window.
    await pull('library/app', 'v1');
    const before = upstream.count(/^HEAD /);
    for (let i = 0; i < 3; i++) await pull('library/app', 'v1');
    expect(upstream.count(/^HEAD /) - before).toBe(3);
  });

  test('a tag moved upstream is served as checked until its window ends, then the next pull finds the new manifest', async () => {
    await start("freshness:\n    '^latest$': 1s");
    const old = seedImage(upstream, 'library/app', 'latest', [randomBytes(64)]);
    expect((await pull('library/app', 'latest')).digest).toBe(old.manifest);
    const moved = seedImage(upstream, 'library/app', 'latest', [randomBytes(64)]);
    // Within the window (the pull right after the first): the copy checked a moment ago.
    const heads = upstream.count(/^HEAD /);
    const soon = await pull('library/app', 'latest');
    if (upstream.count(/^HEAD /) === heads) expect(soon.digest).toBe(old.manifest);
    await until(async () => (await pull('library/app', 'latest')).digest === moved.manifest, 'the moved tag served once its window ended', 10_000);
  });

  test('concurrent checks of one cached tag share one upstream HEAD', async () => {
    await start('');
    seedImage(upstream, 'library/app', 'latest', [randomBytes(64)]);
    await pull('library/app', 'latest');
    // The HEAD is held long enough for every pull to join it.
    upstream.fault(/^HEAD \/v2\/library\/app\/manifests\/latest$/, { kind: 'delay', ms: 1500 }, 1);
    const results = await Promise.all(Array.from({ length: 10 }, () => pull('library/app', 'latest')));
    expect(results.every((r) => r.status === 200)).toBe(true);
    expect(upstream.count(/^HEAD \/v2\/library\/app\/manifests\/latest$/)).toBe(1);
  });

  test('under immutabletags and a window for every tag, a signature appended upstream reaches the client, as a grown referrers tag does; a release tag stays frozen', async () => {
    await start("immutabletags: true\nfreshness:\n    '.*': 1h");
    const img = seedImage(upstream, 'library/app', 'v1', [randomBytes(64)]);
    const sigTag = `sha256-${img.manifest.slice(7)}.sig`;
    const firstSig = seedImage(upstream, 'library/app', sigTag, [randomBytes(32)]);
    expect((await pull('library/app', sigTag)).digest).toBe(firstSig.manifest);
    expect((await pull('library/app', 'v1')).digest).toBe(img.manifest);
    // cosign appends a second signature: a new manifest under the same tag.
    const appended = seedImage(upstream, 'library/app', sigTag, [randomBytes(32)]);
    seedImage(upstream, 'library/app', 'v1', [randomBytes(64)]);
    const before = manifestRequests('library/app');
    expect((await pull('library/app', sigTag)).digest).toBe(appended.manifest);
    expect(manifestRequests('library/app')).toBeGreaterThan(before);
    const afterSig = manifestRequests('library/app');
    expect((await pull('library/app', 'v1')).digest).toBe(img.manifest);
    expect(manifestRequests('library/app')).toBe(afterSig);
    // The OCI referrers tag (`sha256-<hex>`, an index gaining an entry per referrer) is not frozen either.
    const refTag = `sha256-${img.manifest.slice(7)}`;
    seedImage(upstream, 'library/app', refTag, [randomBytes(32)]);
    await pull('library/app', refTag);
    const grown = seedImage(upstream, 'library/app', refTag, [randomBytes(32)]);
    expect((await pull('library/app', refTag)).digest).toBe(grown.manifest);
  });

  test('proxy.maxupstreamconns caps the connections to the upstream; requests beyond it wait and are all served', async () => {
    await start('maxupstreamconns: 2');
    const digests = Array.from({ length: 8 }, () => upstream.addBlob('library/app', randomBytes(4096)));
    upstream.fault(/^GET \/v2\/library\/app\/blobs\//, { kind: 'delay', ms: 200 });
    const statuses = await Promise.all(
      digests.map(async (d) => {
        const res = await fetch(`${mirror.url}/v2/library/app/blobs/${d}`);
        await res.arrayBuffer();
        return res.status;
      }),
    );
    expect(statuses).toEqual(digests.map(() => 200));
    expect(upstream.count(/^GET \/v2\/library\/app\/blobs\//)).toBeGreaterThanOrEqual(8);
    expect(upstream.connections.peak).toBeLessThanOrEqual(2);
  });
});
