/**
 * The extension `proxy.maxsize`: the cache's blob data is kept under a size cap by evicting the
 * least recently pulled content first. Evicting a manifest removes its tags and revision and the
 * layers only it needed in that repository; blob data goes only when no repository links it any
 * more, the same rule as TTL expiry. The official cache has no size bound at all.
 */
import type { Logger } from 'winston';
import type { Digest } from '../distribution/digest.js';
import { DigestTable, grown } from '../distribution/digest-table.js';
import type { ContentType } from '../stores.js';
import { deleteIfUnreferenced, purgeManifest, referencedBy, type PurgeContext } from '../storage/purge.js';
import { StoppingError } from '../errors.js';

/** What the size cap needs. */
interface SizeCapOptions extends PurgeContext {
  /** The cap in bytes (`proxy.maxsize`, decided by lib/cache-policy.ts); infinite: only measure. */
  readonly maxBytes: number;
  readonly logger: Logger;
  /** Repositories outside the cache (extension `proxy.hosted`): never measured, never evicted. */
  readonly exclude?: (repo: string) => boolean;
  /** After each eviction, with what it freed (metrics). */
  readonly onEvicted?: (type: ContentType, bytesFreed: number, repo: string, digest: Digest) => void;
  /** After each change of the cache's size (metrics). */
  readonly onSize?: (bytes: number) => void;
  readonly now?: () => number;
  /**
   * Replicas on one storage: true on the one process that evicts for all (the scheduler-lease
   * holder, which learns the others' content from their schedule journals: `learnt`). Always by default.
   */
  readonly evicts?: () => boolean;
}

interface Use {
  readonly repo: string;
  readonly digest: Digest;
  readonly type: ContentType;
  at: number;
}

/**
 * Keeps the cache under `maxBytes`. Its costs follow the traffic: a pull or a hit is O(1), an
 * eviction reads what it removes (and the repository's other manifests once per pass, not once per
 * eviction); the measure of what is on storage is taken once, in the background, from the walk of
 * the cache at start-up (`found`). Without a cap only the bytes and the manifests' last pulls are
 * kept (the least-recently-used order is needed only to evict).
 */
export class SizeCap {
  /** Every blob whose data is in the cache (a few hundred thousand at scale), numbered. */
  private readonly sized = new DigestTable();
  /** Their sizes, by slot. */
  private sizeAt = new Float64Array(1024);
  private total = 0;
  /** With a cap: the last pull of each cached `repo@digest`; Map order is kept least recent first. */
  private readonly uses = new Map<string, Use>();
  /** With a cap: content found on storage and not pulled since the start, evicted before any `uses`. */
  private readonly unused = new Map<string, Use>();
  /** Without a cap: the last pull of each cached manifest (ms), for the cache page. */
  private readonly pulls = new Map<string, number>();
  private newestManifest?: string;
  private running: Promise<void> = Promise.resolve();
  private queued = false;
  private measured = false;
  private readonly now: () => number;
  /** During one eviction pass: the blobs each repository's remaining manifests reference. */
  private needed?: Map<string, Map<string, number>>;

  constructor(private readonly options: SizeCapOptions) {
    this.now = options.now ?? Date.now;
  }

  /** True when a cap is kept (`maxBytes` finite); false when the cache is only measured. */
  get enforced(): boolean {
    return Number.isFinite(this.options.maxBytes);
  }

  private get enforcing(): boolean {
    return this.enforced;
  }

  /** Content found on storage by the start-up walk: it counts as least recently used. */
  async found(repo: string, digest: Digest, type: ContentType): Promise<void> {
    if (this.options.exclude?.(repo)) return;
    if (!this.isSized(digest)) {
      const info = await this.options.blobs.stat(digest);
      if (!info || !this.count(digest, info.size)) return;
    }
    const key = `${repo}@${digest.value}`;
    if (this.enforcing && !this.uses.has(key)) this.unused.set(key, { repo, digest, type, at: 0 });
  }

  /** The walk is done: reports the measure and enforces the cap. */
  async measuredAll(): Promise<void> {
    this.measured = true;
    this.options.onSize?.(this.total);
    if (this.enforcing) this.options.logger.info('size cap: cache measured', { 'cached.bytes': this.total, 'maxsize.bytes': this.options.maxBytes });
    else this.options.logger.info('cache measured', { 'cached.bytes': this.total });
    await this.enforce();
  }

  /** The bytes of blob data cached (complete once the start-up walk is done). */
  get bytes(): number {
    return this.total;
  }

  /** When the manifest `repo@digest` was last served, if known since the start. */
  lastPulled(repo: string, digest: string): Date | undefined {
    const key = `${repo}@${digest}`;
    const at = this.enforcing ? this.uses.get(key)?.at : this.pulls.get(key);
    return at ? new Date(at) : undefined;
  }

  /** Content was stored (or linked) for `repo`: it is the most recently pulled, and the cap is checked. */
  stored(type: ContentType, repo: string, digest: Digest, size: number): void {
    if (this.options.exclude?.(repo)) return;
    if (this.count(digest, size)) this.options.onSize?.(this.total);
    if (type === 'manifest') this.needed?.delete(repo);
    this.use(type, repo, digest);
    void this.enforce();
  }

  /**
   * Another replica stored `repo@digest` (`renewed`: pulled or hit it again), learnt from its
   * schedule journal by the process that evicts: counted like `stored`, at the cost of one stat for
   * content new to this process, so that the cap holds for the whole cache.
   */
  async learnt(type: ContentType, repo: string, digest: Digest, renewed: boolean): Promise<void> {
    if (this.options.exclude?.(repo)) return;
    if (!this.isSized(digest)) {
      const info = await this.options.blobs.stat(digest);
      if (!info) return;
      if (this.count(digest, info.size)) this.options.onSize?.(this.total);
    } else if (renewed) return this.hit(type, repo, digest);
    if (type === 'manifest') this.needed?.delete(repo);
    this.use(type, repo, digest);
    void this.enforce();
  }

  /** A cache hit: the content becomes the most recently pulled. */
  hit(type: ContentType, repo: string, digest: Digest): void {
    this.use(type, repo, digest);
  }

  /** Blob data was deleted by someone else (TTL expiry). */
  forget(digest: Digest): void {
    const slot = this.sized.find(0, digest.value);
    if (slot < 0) return;
    this.total -= this.sizeAt[slot]!;
    this.sized.remove(slot);
    this.options.onSize?.(this.total);
  }

  private isSized(digest: Digest): boolean {
    return this.sized.find(0, digest.value) >= 0;
  }

  /** Counts `size` bytes of data for `digest`; false when they were counted already. */
  private count(digest: Digest, size: number): boolean {
    const { slot, added } = this.sized.add(0, digest.value);
    if (!added) return false;
    if (slot >= this.sizeAt.length) this.sizeAt = grown(this.sizeAt, this.sizeAt.length * 2);
    this.sizeAt[slot] = size;
    this.total += size;
    return true;
  }

  /** `repo@digest` expired: its last pull is forgotten, and its data if it was freed. */
  expired(repo: string, digest: Digest, freed: number): void {
    const key = `${repo}@${digest.value}`;
    this.uses.delete(key);
    this.unused.delete(key);
    this.pulls.delete(key);
    if (freed > 0) this.forget(digest);
  }

  /** Evicts until the cache fits; one pass at a time, a request during a pass queues one more. */
  enforce(): Promise<void> {
    if (!this.enforcing || !this.measured || this.options.evicts?.() === false) return this.running;
    if (this.queued) return this.running;
    this.queued = true;
    this.running = this.running.then(async () => {
      this.queued = false;
      try {
        await this.evictUntilUnderCap();
      } catch (err) {
        if (err instanceof StoppingError) return void this.options.logger.info('size cap eviction stopped', { 'err.message': err.message });
        this.options.logger.error('size cap eviction failed', { 'err.message': (err as Error).message });
      }
    });
    return this.running;
  }

  private use(type: ContentType, repo: string, digest: Digest): void {
    const key = `${repo}@${digest.value}`;
    if (!this.enforcing) {
      if (type === 'manifest') this.pulls.set(key, this.now());
      return;
    }
    const existing = this.uses.get(key);
    this.uses.delete(key);
    this.unused.delete(key);
    this.uses.set(key, { repo, digest, type, at: Math.max(this.now(), existing?.at ?? 0) });
    if (type === 'manifest') this.newestManifest = key;
  }

  private async evictUntilUnderCap(): Promise<void> {
    // The most recently pulled image (its manifest and everything used after it) is never evicted:
    // it may still be downloading, and it is what the cap promises to keep.
    this.needed = new Map();
    try {
      // The registry's stop (`signal`) ends the pass; the next start measures and evicts again.
      while (this.total > this.options.maxBytes && this.options.evicts?.() !== false && !this.options.signal?.aborted) {
        const from = this.unused.size > 0 ? this.unused : this.uses;
        const oldest = from.entries().next();
        if (oldest.done || oldest.value[0] === this.newestManifest) {
          this.warnOversized();
          return;
        }
        const [key, use] = oldest.value;
        from.delete(key);
        const freed = use.type === 'manifest' ? await this.evictManifest(use) : await this.evictBlob(use.repo, use.digest);
        this.options.onEvicted?.(use.type, freed, use.repo, use.digest);
        // `freed` 0: the data is still linked elsewhere.
        this.options.logger.info('evicted', {
          type: use.type,
          'vars.name': use.repo,
          'vars.digest': use.digest.value,
          freed,
          'cached.bytes': this.total,
          'maxsize.bytes': this.options.maxBytes,
        });
      }
    } finally {
      this.needed = undefined;
    }
  }

  private warnedOversized = false;

  private warnOversized(): void {
    if (this.warnedOversized) return;
    this.warnedOversized = true;
    this.options.logger.warn('the most recently pulled image alone is over proxy.maxsize: it is kept', {
      'cached.bytes': this.total,
      'maxsize.bytes': this.options.maxBytes,
    });
  }

  /** How many of `repo`'s manifests reference each blob, read once per eviction pass. */
  private async neededIn(repo: string): Promise<Map<string, number>> {
    let counts = this.needed?.get(repo);
    if (counts) return counts;
    counts = new Map();
    for (const other of await this.options.repository(repo).listRevisions()) {
      for (const d of await referencedBy(this.options.blobs, other)) counts.set(d.value, (counts.get(d.value) ?? 0) + 1);
    }
    this.needed?.set(repo, counts);
    return counts;
  }

  /** The manifest, its tags, and the blobs of this repository no other cached manifest of it needs. */
  private async evictManifest(use: Use): Promise<number> {
    const referenced = await referencedBy(this.options.blobs, use.digest);
    const counts = await this.neededIn(use.repo);
    let freed = this.account(use.digest, await purgeManifest(this.options, use.repo, use.digest));
    this.pulls.delete(`${use.repo}@${use.digest.value}`);
    for (const d of referenced) {
      const left = (counts.get(d.value) ?? 1) - 1;
      if (left > 0) counts.set(d.value, left);
      else counts.delete(d.value);
    }
    const repo = this.options.repository(use.repo);
    for (const d of referenced) {
      if (counts.has(d.value)) continue;
      if (await repo.hasLayer(d)) {
        this.uses.delete(`${use.repo}@${d.value}`);
        this.unused.delete(`${use.repo}@${d.value}`);
        freed += await this.evictBlob(use.repo, d);
      }
    }
    return freed;
  }

  private async evictBlob(repo: string, digest: Digest): Promise<number> {
    await this.options.repository(repo).unlinkLayer(digest);
    return this.account(digest, await deleteIfUnreferenced(this.options, digest));
  }

  private account(digest: Digest, freed: number): number {
    if (freed > 0) this.forget(digest);
    return freed;
  }
}
