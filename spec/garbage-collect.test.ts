/**
 * `registry garbage-collect`: mark and sweep over a fixture data directory deletes exactly the
 * unreferenced blobs, nothing with --dry-run, and untagged manifests with --delete-untagged.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FilesystemDriver } from '../lib/storage/filesystem.js';
import { BlobStore } from '../lib/storage/blob-store.js';
import { RepositoryStore } from '../lib/storage/repository-store.js';
import { collect } from '../lib/storage/garbage-collect.js';
import { parseDigest, sha256Of, type Digest } from '../lib/distribution/digest.js';

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

describe('garbage-collect', () => {
  let root: string;
  let driver: FilesystemDriver;
  let blobs: BlobStore;
  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'gc-'));
    driver = new FilesystemDriver(root);
    blobs = new BlobStore(driver);
  });
  afterEach(() => rm(root, { recursive: true, force: true }));

  async function blob(content: string, repo?: RepositoryStore): Promise<Digest> {
    const d = parseDigest(sha256Of(content))!;
    await blobs.put(d, Buffer.from(content));
    if (repo) await repo.linkLayer(d);
    return d;
  }

  async function image(repo: RepositoryStore, tag: string | undefined, layers: Digest[], config: Digest): Promise<Digest> {
    const body = JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: config.value, size: 1 },
      layers: layers.map((l) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: l.value, size: 1 })),
    });
    const d = await blob(body);
    await repo.linkRevision(d);
    if (tag) await repo.tag(tag, d);
    return d;
  }

  async function fixture() {
    const app = new RepositoryStore(driver, 'library/app');
    const shared = await blob('shared layer', app);
    const config = await blob('config', app);
    const tagged = await image(app, 'latest', [shared], config);
    const oldLayer = await blob('old layer', app);
    const untagged = await image(app, undefined, [oldLayer], config);
    const orphan = await blob('orphan', app);
    return { app, shared, config, tagged, oldLayer, untagged, orphan };
  }

  const quiet = { out: () => undefined };

  test('deletes exactly the blobs no manifest references', async () => {
    const f = await fixture();
    const lines: string[] = [];
    const summary = await collect(driver, { dryRun: false, removeUntagged: false, out: (l) => lines.push(l) });
    expect(summary.blobsDeleted).toBe(1);
    expect(await blobs.stat(f.orphan)).toBeUndefined();
    for (const kept of [f.shared, f.config, f.tagged, f.oldLayer, f.untagged]) expect(await blobs.stat(kept)).toBeDefined();
    expect(await f.app.hasLayer(f.orphan)).toBe(false);
    expect(lines.some((l) => /blobs marked, 1 blobs and 0 manifests eligible for deletion/.test(l))).toBe(true);
  });

  test('--dry-run deletes nothing', async () => {
    const f = await fixture();
    const before = (await blobs.list()).length;
    const lines: string[] = [];
    await collect(driver, { dryRun: true, removeUntagged: true, out: (l) => lines.push(l) });
    expect((await blobs.list()).length).toBe(before);
    expect(await f.app.hasRevision(f.untagged)).toBe(true);
    expect(lines).toContain(`blob eligible for deletion: ${f.orphan.value}`);
  });

  test('--delete-untagged removes untagged manifests and what only they referenced', async () => {
    const f = await fixture();
    const summary = await collect(driver, { dryRun: false, removeUntagged: true, ...quiet });
    expect(summary.manifestsDeleted).toBe(1);
    expect(await f.app.hasRevision(f.untagged)).toBe(false);
    expect(await blobs.stat(f.untagged)).toBeUndefined();
    expect(await blobs.stat(f.oldLayer)).toBeUndefined();
    expect(await blobs.stat(f.config)).toBeDefined();
    expect(await blobs.stat(f.shared)).toBeDefined();
    expect((await f.app.resolveTag('latest'))?.value).toBe(f.tagged.value);
  });

  test('--delete-untagged keeps the children of a tagged index', async () => {
    const repo = new RepositoryStore(driver, 'library/multi');
    const layer = await blob('l', repo);
    const config = await blob('c', repo);
    const child = await image(repo, undefined, [layer], config);
    const index = await blob(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.index.v1+json',
        manifests: [{ mediaType: OCI_MANIFEST, digest: child.value, size: 1 }],
      }),
    );
    await repo.linkRevision(index);
    await repo.tag('latest', index);
    await collect(driver, { dryRun: false, removeUntagged: true, ...quiet });
    expect(await repo.hasRevision(child)).toBe(true);
    expect(await blobs.stat(layer)).toBeDefined();
  });
});
