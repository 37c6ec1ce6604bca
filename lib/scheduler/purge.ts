/**
 * Removing cached content without breaking what stays: a repository's links go, and blob data only
 * once no repository links it any more (the official scheduler deletes shared data from under other
 * images, distribution #4191). Used by TTL expiry and by the size cap.
 */
import type { Digest } from '../distribution/digest.js';
import { references, tryParseManifest } from '../distribution/manifest.js';
import type { StorageDriver } from '../storage/driver.js';
import type { BlobStore } from '../storage/blob-store.js';
import type { RepositoryStore } from '../storage/repository-store.js';
import { listRepositories } from '../storage/catalog.js';

/** What purging works on. */
export interface PurgeContext {
  readonly driver: StorageDriver;
  readonly blobs: BlobStore;
  readonly repository: (name: string) => RepositoryStore;
}

/** Removes a manifest revision and the tags pointing at it from `repo`; returns the bytes freed. */
export async function purgeManifest(c: PurgeContext, repo: string, digest: Digest): Promise<number> {
  const store = c.repository(repo);
  for (const tag of await store.tagsFor(digest)) await store.untag(tag);
  await store.unlinkRevision(digest);
  return deleteIfUnreferenced(c, digest);
}

/** Removes a layer link from `repo`; returns the bytes freed. */
export async function purgeBlob(c: PurgeContext, repo: string, digest: Digest): Promise<number> {
  await c.repository(repo).unlinkLayer(digest);
  return deleteIfUnreferenced(c, digest);
}

/** Deletes the blob data when no repository links it as a layer or a manifest; returns the bytes freed. */
export async function deleteIfUnreferenced(c: PurgeContext, digest: Digest): Promise<number> {
  for (const name of await listRepositories(c.driver, {})) {
    const repo = c.repository(name);
    if ((await repo.hasLayer(digest)) || (await repo.hasRevision(digest))) return 0;
  }
  const info = await c.blobs.stat(digest);
  if (!info) return 0;
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
