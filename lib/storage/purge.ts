/**
 * Removing cached content without breaking what stays: a repository's links go, and blob data only
 * once no repository links it any more (the official scheduler deletes shared data from under other
 * images, distribution #4191). Used by TTL expiry and by the size cap.
 */
import type { Digest } from '../distribution/digest.js';
import { references, tryParseManifest } from '../distribution/manifest.js';
import type { StorageDriver } from './driver.js';
import type { BlobStore } from './blob-store.js';
import type { RepositoryStore } from './repository-store.js';
import { listRepositories } from './catalog.js';
import type { LinkIndex } from './link-index.js';
import { throwIfStopping } from '../errors.js';

/** What purging works on. */
export interface PurgeContext {
  readonly driver: StorageDriver;
  readonly blobs: BlobStore;
  readonly repository: (name: string) => RepositoryStore;
  /** Who links what; without it (or until it is built) every repository is asked. */
  readonly links?: LinkIndex;
  /**
   * Repositories whose links the index may not know: those written by other processes without a
   * journal (hosted pushes on another replica). Asked before any blob data is deleted.
   */
  readonly unindexed?: () => Promise<string[]>;
  /** Brings the index up to date with what other replicas reported, before a deletion. */
  readonly refresh?: () => Promise<void>;
  /**
   * The registry's stop: a purge under way ends at its next step with `StoppingError` (its entry
   * stays scheduled, and the next start purges again; every step can be done twice).
   */
  readonly signal?: AbortSignal;
}

/** Removes a manifest revision and the tags pointing at it from `repo`; returns the bytes freed. */
export async function purgeManifest(c: PurgeContext, repo: string, digest: Digest): Promise<number> {
  const store = c.repository(repo);
  throwIfStopping(c.signal, `purging ${repo}@${digest.value}`);
  for (const tag of await store.tagsFor(digest)) {
    throwIfStopping(c.signal, `purging ${repo}@${digest.value}`);
    await store.untag(tag);
  }
  await store.unlinkRevision(digest);
  return deleteIfUnreferenced(c, digest);
}

/** Removes a layer link from `repo`; returns the bytes freed. */
export async function purgeBlob(c: PurgeContext, repo: string, digest: Digest): Promise<number> {
  throwIfStopping(c.signal, `purging ${repo}@${digest.value}`);
  await c.repository(repo).unlinkLayer(digest);
  return deleteIfUnreferenced(c, digest);
}

/**
 * Deletes the blob data when no repository links it as a layer or a manifest; returns the bytes
 * freed. With a link index, only the repositories it names are asked (O(their number), not
 * O(repositories)), once it is built; each is checked on storage, so an index that is behind can
 * only keep data. Without one, every repository is asked.
 */
export async function deleteIfUnreferenced(c: PurgeContext, digest: Digest): Promise<number> {
  // Not yet known is not known to be unlinked: wait for the start-up walk.
  await c.links?.whenBuilt(c.signal);
  await c.refresh?.();
  const known = c.links?.linkers(digest.value);
  const asked = new Set<string>();
  for (const name of known ?? (await listRepositories(c.driver, { signal: c.signal }))) {
    throwIfStopping(c.signal, `deleting ${digest.value}`);
    asked.add(name);
    const repo = c.repository(name);
    if ((await repo.hasLayer(digest)) || (await repo.hasRevision(digest))) return 0;
    // A link removed behind the index's back (another process): forget it.
    if (known) c.links!.unlinked(name, digest.value);
  }
  if (known && c.unindexed) {
    for (const name of await c.unindexed()) {
      if (asked.has(name)) continue;
      const repo = c.repository(name);
      if ((await repo.hasLayer(digest)) || (await repo.hasRevision(digest))) return 0;
    }
  }
  const info = await c.blobs.stat(digest);
  if (!info) return 0;
  throwIfStopping(c.signal, `deleting ${digest.value}`);
  await c.blobs.delete(digest);
  return info.size;
}

/**
 * Everything a stored manifest references (config, layers, an index's manifests, artifact blobs,
 * the subject, schema 1's layers): the same references garbage collection marks.
 */
export async function referencedBy(blobs: BlobStore, manifest: Digest): Promise<Digest[]> {
  let payload: Buffer;
  try {
    payload = await blobs.get(manifest);
  } catch {
    return [];
  }
  const parsed = tryParseManifest(payload);
  return parsed ? references(parsed).map((d) => d.digest) : [];
}
