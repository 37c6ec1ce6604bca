/**
 * The extension `proxy.maxsize`: the cache's blob data is kept under a size cap by evicting the
 * least recently pulled content first. Evicting a manifest removes its tags and revision and the
 * layers only it needed in that repository; blob data goes only when no repository links it any
 * more, the same rule as TTL expiry. The official cache has no size bound at all.
 */
import type { Logger } from 'winston';
import type { Digest } from '../distribution/digest.js';
import type { ContentType } from '../stores.js';
import { listRepositories } from '../storage/catalog.js';
import { deleteIfUnreferenced, purgeManifest, referencedBy, type PurgeContext } from './purge.js';

/** What the size cap needs. */
export interface SizeCapOptions extends PurgeContext {
  /** The cap in bytes (`proxy.maxsize`, decided by lib/cache-policy.ts); infinite: only measure. */
  readonly maxBytes: number;
  readonly logger: Logger;
  /** Repositories outside the cache (extension `proxy.hosted`): never measured, never evicted. */
  readonly exclude?: (repo: string) => boolean;
  /** After each eviction, with what it freed (metrics). */
  readonly onEvicted?: (type: ContentType, bytesFreed: number) => void;
  /** After each change of the cache's size (metrics). */
  readonly onSize?: (bytes: number) => void;
  readonly now?: () => number;
}

interface Use {
  readonly repo: string;
  readonly digest: Digest;
  readonly type: ContentType;
  at: number;
}

/** Keeps the cache under `maxBytes`. */
export class SizeCap {
  /** Size of every blob whose data is in the cache, by digest. */
  private readonly sizes = new Map<string, number>();
  private total = 0;
  /** Last pull of each cached `repo@digest`; Map order is kept least recent first. */
  private readonly uses = new Map<string, Use>();
  private running: Promise<void> = Promise.resolve();
  private queued = false;
  private readonly now: () => number;

  constructor(private readonly o: SizeCapOptions) {
    this.now = o.now ?? Date.now;
  }

  /** Measures what is on disk (content found there counts as least recently used) and enforces the cap. */
  async start(): Promise<void> {
    for (const name of await listRepositories(this.o.driver, {})) {
      if (this.o.exclude?.(name)) continue;
      const repo = this.o.repository(name);
      for (const d of await repo.listRevisions()) await this.record(name, d, 'manifest', 0);
      for (const d of await repo.listLayers()) await this.record(name, d, 'blob', 0);
    }
    this.o.logger.info(Number.isFinite(this.o.maxBytes) ? `size cap ${this.o.maxBytes} bytes: ${this.total} bytes cached` : `the cache holds ${this.total} bytes of blob data`);
    await this.enforce();
    this.o.onSize?.(this.total);
  }

  /** True when a cap is kept (`maxBytes` finite); false when the cache is only measured. */
  get enforced(): boolean {
    return Number.isFinite(this.o.maxBytes);
  }

  /** The bytes of blob data cached. */
  get bytes(): number {
    return this.total;
  }

  /** Content was stored (or linked) for `repo`: it is the most recently pulled, and the cap is checked. */
  stored(type: ContentType, repo: string, digest: Digest, size: number): void {
    if (this.o.exclude?.(repo)) return;
    if (!this.sizes.has(digest.value)) {
      this.sizes.set(digest.value, size);
      this.total += size;
      this.o.onSize?.(this.total);
    }
    this.use(type, repo, digest);
    void this.enforce();
  }

  /** A cache hit: the content becomes the most recently pulled. */
  hit(type: ContentType, repo: string, digest: Digest): void {
    this.use(type, repo, digest);
  }

  /** Blob data was deleted by someone else (TTL expiry). */
  forget(digest: Digest): void {
    const size = this.sizes.get(digest.value);
    if (size === undefined) return;
    this.sizes.delete(digest.value);
    this.total -= size;
    this.o.onSize?.(this.total);
  }

  /** Evicts until the cache fits; one pass at a time, a request during a pass queues one more. */
  enforce(): Promise<void> {
    if (this.queued) return this.running;
    this.queued = true;
    this.running = this.running.then(async () => {
      this.queued = false;
      try {
        await this.evictUntilUnderCap();
      } catch (err) {
        this.o.logger.error(`size cap eviction failed: ${(err as Error).message}`);
      }
    });
    return this.running;
  }

  private use(type: ContentType, repo: string, digest: Digest): void {
    const key = `${repo}@${digest.value}`;
    const existing = this.uses.get(key);
    this.uses.delete(key);
    this.uses.set(key, { repo, digest, type, at: Math.max(this.now(), existing?.at ?? 0) });
  }

  private async record(repo: string, digest: Digest, type: ContentType, at: number): Promise<void> {
    if (!this.sizes.has(digest.value)) {
      const info = await this.o.blobs.stat(digest);
      if (!info) return;
      this.sizes.set(digest.value, info.size);
      this.total += info.size;
    }
    this.uses.set(`${repo}@${digest.value}`, { repo, digest, type, at });
  }

  private async evictUntilUnderCap(): Promise<void> {
    // The most recently pulled image (its manifest and everything used after it) is never evicted:
    // it may still be downloading, and it is what the cap promises to keep.
    const newest = this.newestManifestKey();
    while (this.total > this.o.maxBytes) {
      const oldest = this.uses.entries().next();
      if (oldest.done || oldest.value[0] === newest) {
        this.warnOversized();
        return;
      }
      const [key, use] = oldest.value;
      this.uses.delete(key);
      const freed = use.type === 'manifest' ? await this.evictManifest(use) : await this.evictBlob(use.repo, use.digest);
      this.o.onEvicted?.(use.type, freed);
      this.o.logger.info(`evicted ${use.type} ${use.repo}@${use.digest.value} (size cap ${this.o.maxBytes} bytes): ${freed > 0 ? `freed ${freed} bytes` : 'data still linked elsewhere'}, ${this.total} bytes cached`);
    }
  }

  private newestManifestKey(): string | undefined {
    let newest: string | undefined;
    for (const [key, use] of this.uses) if (use.type === 'manifest') newest = key;
    return newest;
  }

  private warnedOversized = false;

  private warnOversized(): void {
    if (this.warnedOversized) return;
    this.warnedOversized = true;
    this.o.logger.warn(`the most recently pulled image alone keeps the cache at ${this.total} bytes, over proxy.maxsize (${this.o.maxBytes} bytes): it is kept`);
  }

  /** The manifest, its tags, and the blobs of this repository no other cached manifest of it needs. */
  private async evictManifest(use: Use): Promise<number> {
    const referenced = await referencedBy(this.o.blobs, use.digest);
    let freed = this.account(use.digest, await purgeManifest(this.o, use.repo, use.digest));
    const repo = this.o.repository(use.repo);
    const stillNeeded = new Set<string>();
    for (const other of await repo.listRevisions()) for (const d of await referencedBy(this.o.blobs, other)) stillNeeded.add(d.value);
    for (const d of referenced) {
      if (stillNeeded.has(d.value)) continue;
      if (await repo.hasLayer(d)) {
        this.uses.delete(`${use.repo}@${d.value}`);
        freed += await this.evictBlob(use.repo, d);
      }
    }
    return freed;
  }

  private async evictBlob(repo: string, digest: Digest): Promise<number> {
    await this.o.repository(repo).unlinkLayer(digest);
    return this.account(digest, await deleteIfUnreferenced(this.o, digest));
  }

  private account(digest: Digest, freed: number): number {
    if (freed > 0) this.forget(digest);
    return freed;
  }
}

/**
 * Starts the accounting of `cap`. Enforcing a cap, the cache is measured before serving, so a cache
 * over a lowered cap is brought under it first; measuring only (for `registry_mirror_cache_bytes`
 * and the cache page), in the background: a large cache must not delay the start.
 */
export async function startSizeCap(cap: SizeCap, logger: Logger): Promise<void> {
  const measured = cap.start();
  if (cap.enforced) await measured;
  else measured.catch((err: Error) => logger.error(`measuring the cache failed: ${err.message}`));
}
