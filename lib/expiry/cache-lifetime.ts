/**
 * The cache's lifetime policy: every blob and manifest fetched from the upstream gets an expiry in
 * the TTL scheduler; a cache hit extends it; on expiry the repository's links are removed, and the
 * blob data only once no repository links it any more (the official scheduler deletes shared data
 * from under other images, distribution #4191).
 */
import type { Logger } from 'winston';
import { parseDigest, type Digest } from '../distribution/digest.js';
import type { ContentType } from '../stores.js';
import { purgeBlob, purgeManifest, type PurgeContext } from '../storage/purge.js';
import type { LinkIndex } from '../storage/link-index.js';
import type { StorageDriver } from '../storage/driver.js';
import type { BlobStore } from '../storage/blob-store.js';
import type { RepositoryStore } from '../storage/repository-store.js';
import { listRepositories } from '../storage/catalog.js';
import { TtlScheduler, parseKey, type Entry, type ExpirySchedule } from './scheduler.js';
import type { StateStore } from './state-store.js';
import type { SharedLocks } from '../storage/shared-lock.js';
import { throwIfStopping } from '../errors.js';

/** The parts of the registry the lifetime policy works on. */
interface CacheLifetimeOptions {
  readonly driver: StorageDriver;
  readonly blobs: BlobStore;
  readonly repository: (name: string) => RepositoryStore;
  readonly logger: Logger;
  /** `scheduler-state.json`: its local path, or its name in messages when `store` keeps it elsewhere. */
  readonly statePath: string;
  /** Where the state is kept when it is not a local file (S3: an object of the driver). */
  readonly store?: StateStore;
  /** False when nothing can expire (no TTL, or deletes disabled): no schedule is kept at all. */
  readonly expires: boolean;
  /** The lifetime of content stored under a repository name (lib/cache-policy.ts decides it). `0`: never expires. */
  readonly ttlFor: (repo: string) => number;
  /** Extension `proxy.touchonhit`: a cache hit extends an expiry. */
  readonly touchOnHit: boolean;
  /** Locks of the storage, shared with other processes on it (replicas): one schedule for all. */
  readonly locks?: SharedLocks;
  /**
   * Repositories never expired (extension `proxy.hosted`): `ttlFor` gives them 0, so nothing is
   * scheduled for them; entries the state file already holds for them are dropped unexecuted.
   */
  readonly exclude?: (repo: string) => boolean;
  /** Called after each expiry with what it freed (metrics, the size cap). */
  readonly onExpired?: (type: ContentType, bytesFreed: number, digest: Digest, repo: string) => void;
  /** Who links what (purges ask it instead of every repository). */
  readonly links?: LinkIndex;
  /** Repositories the link index may not know (see `PurgeContext.unindexed`). */
  readonly unindexed?: () => Promise<string[]>;
  /**
   * Shared mode, on the lease holder: content another replica stored (`renewed`: pulled or hit
   * again there), learnt from its journal; the size cap counts it.
   */
  readonly onLearnt?: (type: ContentType, repo: string, digest: Digest, renewed: boolean) => void;
  /** Shared mode: this process has taken the scheduler lease over from another replica. */
  readonly onLeaseTaken?: () => void;
  /** The registry's stop: expiries and the rebuild walk under way end at their next step. */
  readonly signal?: AbortSignal;
}

/** Expiry of cached content. */
export class CacheLifetime {
  private readonly scheduler?: ExpirySchedule;
  private rebuilding?: Promise<void>;

  constructor(private readonly options: CacheLifetimeOptions) {
    if (!options.expires) return;
    this.scheduler = new TtlScheduler({
      statePath: options.statePath,
      store: options.store,
      onExpire: (entry) => this.expire(entry),
      logger: options.logger,
      stillCached: (entry) => this.stillCached(entry),
      shared: options.locks && {
        locks: options.locks,
        learnt: (key, type) => {
          const { repo, digest } = parseKey(key);
          options.links?.linked(repo, digest);
          this.learnt(type, repo, digest, false);
        },
        leaseTaken: options.onLeaseTaken,
        renewed: (key, type) => {
          const { repo, digest } = parseKey(key);
          this.learnt(type, repo, digest, true);
        },
      },
    });
  }

  /** What purges work on: the storage, the link index, and the other replicas' latest links. */
  private get purging(): PurgeContext {
    return { ...this.options, refresh: () => this.scheduler?.refresh() ?? Promise.resolve() };
  }

  /**
   * Loads the schedule, in bounded slices: the registry serves meanwhile (entries scheduled or
   * touched while it loads are kept) and expiries start once it is loaded. A corrupt state file is
   * set aside and the schedule rebuilt from a walk of the storage.
   */
  async start(): Promise<{ problem?: string; loaded?: number }> {
    if (!this.scheduler) return {};
    const { problem, loaded } = await this.scheduler.start();
    if (problem || (await this.scheduler.rebuildPending())) {
      // A stop ends this (rare) walk; the marker, written first and removed once a write holds the
      // rebuilt schedule, tells the next start to walk again.
      this.rebuilding = (async () => {
        await this.scheduler!.markRebuild();
        for (const found of await this.onDisk()) {
          const ttl = this.options.ttlFor(found.repo);
          if (ttl > 0) this.scheduler!.rebuild([found], ttl);
        }
        this.scheduler!.rebuilt();
      })();
      await this.rebuilding;
    }
    return { problem, loaded };
  }

  private learnt(type: ContentType, repo: string, raw: string, renewed: boolean): void {
    const digest = parseDigest(raw);
    if (digest) this.options.onLearnt?.(type, repo, digest, renewed);
  }

  /**
   * True when this process runs the expiries and the size cap's evictions for the storage: always
   * without a schedule shared with other replicas, else only on the holder of the scheduler lease.
   */
  get runsForAll(): boolean {
    return this.scheduler?.expiring ?? true;
  }

  /** True once the schedule is loaded (or when there is none). */
  get ready(): boolean {
    return this.scheduler?.ready ?? true;
  }

  /**
   * Stops expiring (expiries under way end at their next step once `signal` has fired) and writes
   * what changed so far; what in-flight requests still schedule is kept for `stop`.
   */
  async halt(): Promise<void> {
    await this.rebuilding?.catch(() => undefined);
    await this.scheduler?.halt();
  }

  /** Halts, then writes the schedule's changes. */
  async stop(): Promise<void> {
    await this.halt();
    await this.scheduler?.stop();
  }

  /** Content fetched from the upstream gets an expiry. */
  schedule(type: ContentType, repo: string, digest: string): void {
    const ttl = this.options.ttlFor(repo);
    if (ttl > 0) this.scheduler?.add(repo, digest, type, ttl);
  }

  /** A cache hit: popular content is not evicted one TTL after its first pull (scheduled content only). */
  touch(type: ContentType, repo: string, digest: string): void {
    if (!this.options.touchOnHit) return;
    const ttl = this.options.ttlFor(repo);
    if (ttl > 0) this.scheduler?.touch(repo, digest, type, ttl);
  }

  /** When `repo@digest` expires; undefined when it is not scheduled (no TTL, or delete disabled). */
  expiryOf(repo: string, digest: string): Date | undefined {
    return this.scheduler?.get(`${repo}@${digest}`)?.expiry;
  }

  private async expire(entry: Entry): Promise<void> {
    const { repo, digest: raw } = parseKey(entry.key);
    const digest = parseDigest(raw);
    if (!digest) return;
    if (this.options.exclude?.(repo)) {
      this.options.logger.info('not expiring: the repository is hosted', { type: entry.type, 'vars.name': repo, 'vars.digest': digest.value });
      return;
    }
    const freed = entry.type === 'manifest' ? await purgeManifest(this.purging, repo, digest) : await purgeBlob(this.purging, repo, digest);
    this.options.onExpired?.(entry.type, freed, digest, repo);
    // `freed` 0: the data is still linked elsewhere.
    this.options.logger.info('expired', { type: entry.type, 'vars.name': repo, 'vars.digest': digest.value, freed });
  }

  /** Whether the repository still links the entry's content (another replica may have expired it). */
  private async stillCached(entry: Entry): Promise<boolean> {
    const { repo, digest: raw } = parseKey(entry.key);
    const digest = parseDigest(raw);
    if (!digest) return false;
    const r = this.options.repository(repo);
    return entry.type === 'manifest' ? r.hasRevision(digest) : r.hasLayer(digest);
  }

  /** Everything cached on disk, to rebuild a lost schedule. */
  private async onDisk(): Promise<Array<{ repo: string; digest: string; type: ContentType }>> {
    const found: Array<{ repo: string; digest: string; type: ContentType }> = [];
    for (const name of await listRepositories(this.options.driver, { signal: this.options.signal })) {
      throwIfStopping(this.options.signal, 'rebuilding the schedule');
      const repo = this.options.repository(name);
      for (const d of await repo.listRevisions()) found.push({ repo: name, digest: d.value, type: 'manifest' });
      for (const d of await repo.listLayers()) found.push({ repo: name, digest: d.value, type: 'blob' });
    }
    return found;
  }
}
