/**
 * What the cache page shows, gathered from storage, the schedule, the metrics and the upstreams:
 * every cached repository with its tags (digest, kind, size, last pull, expiry), the hit ratio and
 * bytes saved, each upstream's status, and disk use against the cap.
 */
import type { Digest } from '../distribution/digest.js';
import { tryParseManifest, type ParsedManifest } from '../distribution/manifest.js';
import { isIndexType } from '../distribution/mediatypes.js';
import type { BlobStore } from '../storage/blob-store.js';
import type { RepositoryStore } from '../storage/repository-store.js';
import type { UpstreamStatus } from '../proxy/upstream.js';

/** One cached tag. */
export interface TagReport {
  readonly tag: string;
  readonly digest: string;
  readonly kind: 'image' | 'index' | 'other';
  /** Platforms of an index (cached or not). */
  readonly platforms?: number;
  /** Bytes of the config and layers (of every cached platform for an index). */
  readonly size: number;
  readonly lastPulled?: Date;
  readonly expires?: Date;
}

/** One cached repository. */
export interface RepositoryReport {
  readonly name: string;
  readonly tags: readonly TagReport[];
  /** Manifests cached by digest only (pulled by digest, or an index's platforms). */
  readonly untagged: number;
}

/** An upstream as the page shows it. */
export interface UpstreamReport extends UpstreamStatus {
  readonly host: string;
  readonly url: string;
  /** Docker Hub's `RateLimit-Remaining` as last seen (`76;w=21600`). */
  readonly rateLimitRemaining?: string;
}

/** The whole page's data. */
export interface CacheReport {
  readonly generatedAt: Date;
  readonly repositories: readonly RepositoryReport[];
  readonly stats: { readonly requests: number; readonly hits: number; readonly bytesServed: number; readonly bytesFetched: number };
  readonly upstreams: readonly UpstreamReport[];
  readonly disk: { readonly cacheBytes?: number; readonly capBytes?: number; readonly volumeBytes?: number; readonly volumeFree?: number };
}

/** Where the report comes from (wired by the server). */
export interface CacheReportSources {
  listRepositories(): Promise<string[]>;
  repository(name: string): RepositoryStore;
  readonly blobs: BlobStore;
  expiryOf(repo: string, digest: string): Date | undefined;
  lastPulled(repo: string, digest: string): Date | undefined;
  upstreams(): UpstreamReport[];
  stats(): Promise<CacheReport['stats']>;
  /** Blob bytes tracked by the size cap, and the cap, when one is set. */
  cap(): { cacheBytes?: number; capBytes?: number };
  /** The storage medium's size and free space, where the driver knows them (not on S3). */
  diskUsage(): Promise<{ readonly totalBytes: number; readonly freeBytes: number } | undefined>;
}

/** Gathers the report; a manifest that cannot be read counts as size 0, never fails the page. */
export async function gatherCacheReport(src: CacheReportSources): Promise<CacheReport> {
  const repositories: RepositoryReport[] = [];
  for (const name of await src.listRepositories()) {
    const repo = src.repository(name);
    const tags: TagReport[] = [];
    const tagged = new Set<string>();
    for (const tag of await repo.listTags()) {
      const digest = await repo.resolveTag(tag);
      if (!digest || !(await repo.hasRevision(digest))) continue;
      tagged.add(digest.value);
      const m = await readManifest(src.blobs, digest);
      const kind = m?.mediaType === undefined ? 'other' : isIndexType(m.mediaType) ? 'index' : 'image';
      tags.push({
        tag,
        digest: digest.value,
        kind,
        platforms: kind === 'index' ? (Array.isArray(m?.doc.manifests) ? m.doc.manifests.length : 0) : undefined,
        size: await imageSize(src, repo, m, kind, tagged),
        lastPulled: src.lastPulled(name, digest.value) ?? (await repo.linkedAt(digest)),
        expires: src.expiryOf(name, digest.value),
      });
    }
    const revisions = await repo.listRevisions();
    repositories.push({ name, tags, untagged: revisions.filter((d) => !tagged.has(d.value)).length });
  }
  const fs = await src.diskUsage().catch(() => undefined);
  return {
    generatedAt: new Date(),
    repositories,
    stats: await src.stats(),
    upstreams: src.upstreams(),
    disk: { ...src.cap(), volumeBytes: fs?.totalBytes, volumeFree: fs?.freeBytes },
  };
}

async function readManifest(blobs: BlobStore, digest: Digest): Promise<ParsedManifest | undefined> {
  try {
    return tryParseManifest(await blobs.get(digest));
  } catch {
    return undefined;
  }
}

/** Config and layer bytes; for an index, summed over the platforms cached in this repository. */
async function imageSize(src: CacheReportSources, repo: RepositoryStore, m: ParsedManifest | undefined, kind: TagReport['kind'], children: Set<string>): Promise<number> {
  if (!m) return 0;
  const { config, layers, manifests } = m.refs;
  if (kind === 'image') return [config, ...layers].reduce((sum, d) => sum + (d?.size ?? 0), 0);
  if (kind !== 'index') return 0;
  let total = 0;
  for (const { digest } of manifests) {
    if (!(await repo.hasRevision(digest))) continue;
    // An index's platforms are part of its tag, not untagged leftovers.
    children.add(digest.value);
    const inner = await readManifest(src.blobs, digest);
    if (inner?.mediaType && !isIndexType(inner.mediaType)) total += await imageSize(src, repo, inner, 'image', children);
  }
  return total;
}
