/**
 * Removing cached content without breaking what stays: a repository's links go, and blob data only
 * once no repository links it any more (the official scheduler deletes shared data from under other
 * images, distribution #4191). Used by TTL expiry and by the size cap.
 */
import { parseDigest, type Digest } from '../distribution/digest.js';
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

/** The blobs a stored manifest references (config, layers, and an index's manifests). */
export async function referencedBy(blobs: BlobStore, manifest: Digest): Promise<Digest[]> {
  let parsed: { config?: { digest?: string }; layers?: Array<{ digest?: string }>; manifests?: Array<{ digest?: string }> };
  try {
    parsed = JSON.parse((await blobs.get(manifest)).toString('utf8')) as typeof parsed;
  } catch {
    return [];
  }
  const raw = [parsed.config?.digest, ...(parsed.layers ?? []).map((l) => l.digest), ...(parsed.manifests ?? []).map((m) => m.digest)];
  return raw.flatMap((d) => {
    const p = typeof d === 'string' ? parseDigest(d) : undefined;
    return p ? [p] : [];
  });
}
