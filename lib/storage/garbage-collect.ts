/**
 * `registry garbage-collect`: mark and sweep over distribution's layout, as distribution's
 * `registry/storage/garbagecollect.go`. Mark: every manifest revision of every repository (with
 * `--delete-untagged`, only those a tag reaches, directly or through an index) and the blobs it
 * references. Sweep: every blob not marked. Safe on a data directory the official registry wrote;
 * it must not run while a registry writes to the same directory, as with distribution.
 */
import type { Config } from '../config/types.js';
import type { Digest } from '../distribution/digest.js';
import { references, tryParseManifest, type ParsedManifest } from '../distribution/manifest.js';
import { createDriver } from './factory.js';
import { BlobStore } from './blob-store.js';
import { RepositoryStore } from './repository-store.js';
import { listRepositories } from './catalog.js';
import type { StorageDriver } from './driver.js';

/** Options of a collection. */
export interface GcOptions {
  /** Report what would be deleted without deleting anything. */
  readonly dryRun: boolean;
  /** Also delete manifests no tag reaches (`--delete-untagged`). */
  readonly removeUntagged: boolean;
  /** Receives each output line. */
  readonly out: (line: string) => void;
}

/** What a collection found and did. */
export interface GcSummary {
  readonly blobsMarked: number;
  readonly blobsDeleted: number;
  readonly manifestsDeleted: number;
  readonly bytesFreed: number;
}

/** Runs a collection on the storage `config` names. */
export async function garbageCollect(config: Config, opts: GcOptions): Promise<GcSummary> {
  return collect(await createDriver(config.storage), opts);
}

/** Runs a collection on `driver`. */
export async function collect(driver: StorageDriver, opts: GcOptions): Promise<GcSummary> {
  const blobs = new BlobStore(driver);
  const marked = new Set<string>();
  const doomed: Array<{ repo: RepositoryStore; name: string; digest: Digest }> = [];

  for (const name of await listRepositories(driver, {})) {
    opts.out(name);
    const repo = new RepositoryStore(driver, name);
    const revisions = await repo.listRevisions();
    const kept = opts.removeUntagged ? await reachableFromTags(repo, blobs, revisions) : new Set(revisions.map((d) => d.value));
    for (const digest of revisions) {
      if (!kept.has(digest.value)) {
        opts.out(`manifest eligible for deletion: ${name}@${digest.value}`);
        doomed.push({ repo, name, digest });
        continue;
      }
      const payload = await readManifest(blobs, digest);
      if (!payload) continue;
      opts.out(`${name}: marking manifest ${digest.value}`);
      marked.add(digest.value);
      for (const { digest: ref } of references(payload)) {
        opts.out(`${name}: marking blob ${ref.value}`);
        marked.add(ref.value);
      }
    }
  }

  let blobsDeleted = 0;
  let bytesFreed = 0;
  const deleted = new Set<string>();
  for (const digest of await blobs.list()) {
    if (marked.has(digest.value)) continue;
    opts.out(`blob eligible for deletion: ${digest.value}`);
    if (opts.dryRun) continue;
    const info = await blobs.stat(digest);
    await blobs.delete(digest);
    deleted.add(digest.value);
    blobsDeleted++;
    bytesFreed += info?.size ?? 0;
  }
  if (!opts.dryRun) {
    for (const { repo, digest } of doomed) {
      for (const tag of await repo.tagsFor(digest)) await repo.untag(tag);
      await repo.unlinkRevision(digest);
    }
    // Links to data that is gone would only make the registry stat missing files.
    if (deleted.size > 0) {
      for (const name of await listRepositories(driver, {})) {
        const repo = new RepositoryStore(driver, name);
        for (const d of await repo.listLayers()) if (deleted.has(d.value)) await repo.unlinkLayer(d);
      }
    }
  }
  const eligible = opts.dryRun ? (await blobs.list()).filter((d) => !marked.has(d.value)).length : blobsDeleted;
  opts.out(`\n${marked.size} blobs marked, ${eligible} blobs and ${doomed.length} manifests eligible for deletion`);
  if (!opts.dryRun) opts.out(`deleted ${blobsDeleted} blobs and ${doomed.length} manifests, freed ${bytesFreed} bytes`);
  return { blobsMarked: marked.size, blobsDeleted, manifestsDeleted: opts.dryRun ? 0 : doomed.length, bytesFreed };
}

/** The revisions a tag reaches, directly or through the indexes it points at. */
async function reachableFromTags(repo: RepositoryStore, blobs: BlobStore, revisions: Digest[]): Promise<Set<string>> {
  const present = new Set(revisions.map((d) => d.value));
  const kept = new Set<string>();
  const queue: Digest[] = [];
  for (const tag of await repo.listTags()) {
    const d = await repo.resolveTag(tag);
    if (d) queue.push(d);
  }
  while (queue.length > 0) {
    const d = queue.pop()!;
    if (kept.has(d.value) || !present.has(d.value)) continue;
    kept.add(d.value);
    const payload = await readManifest(blobs, d);
    if (payload) queue.push(...payload.refs.manifests.map((c) => c.digest));
  }
  return kept;
}

async function readManifest(blobs: BlobStore, digest: Digest): Promise<ParsedManifest | undefined> {
  try {
    return tryParseManifest(await blobs.get(digest));
  } catch {
    return undefined;
  }
}
