/**
 * Blobs in pull-through mode (distribution `registry/proxy/proxyblobstore.go`, improved): a blob
 * this repository links is served from the cache; a cold blob is fetched from the upstream once,
 * whatever the number of concurrent clients, and streamed to all of them while it is written.
 */
import type { Readable } from 'node:stream';
import type { Digest } from '../distribution/digest.js';
import type { BlobHandle, BlobInfo, BlobService, CacheEvents } from '../stores.js';
import type { BlobStore } from '../storage/blob-store.js';
import type { RepositoryStore } from '../storage/repository-store.js';
import type { SharedLocks } from '../storage/shared-lock.js';
import { blobLockKey } from '../storage/paths.js';
import type { DescriptorCache } from '../storage/descriptor-cache.js';
import { BlobFetch, type RaceEvent } from './blob-fetch.js';
import type { OvertakePolicy } from './overtake.js';
import type { Upstream } from './upstream.js';
import { UpstreamError } from './upstream-error.js';
import { Inflight, onceAcrossProcesses, Underway } from './once.js';
import { BlobUnknownError } from '../errors.js';
import { PathNotFoundError } from '../storage/driver.js';

/** How the blob store coordinates and races its fetches. */
export interface ProxyBlobOptions {
  /** Locks shared with the other processes of the cache (replicas): one fetches, the rest wait. */
  readonly locks?: SharedLocks;
  /** When a crawling fetch is raced by a second connection (`proxy.overtake`; none: never). */
  readonly overtake?: OvertakePolicy;
  /** What racing did, for logs and metrics. */
  onRace?(name: string, digest: Digest, event: RaceEvent): void;
  /** What storage said of recent hits, so a hot blob costs no link read and no `stat`. */
  readonly descriptors?: DescriptorCache;
  /** `proxy.cachewritetimeout`: how long a fetch its clients left goes on filling the cache. */
  readonly cacheWriteTimeoutMs?: number;
}

/** The blob side of the pull-through cache. */
export class ProxyBlobStore implements BlobService {
  /** The downloads under way, by digest, with the repositories that link the blob once it is committed. */
  private readonly downloads = new Map<string, { readonly fetch: BlobFetch; readonly repos: Set<string> }>();
  /** Downloads being started (the upstream has not answered yet), once in this process. */
  private readonly starting = new Inflight<{ fetch: BlobFetch | 'stored' } | { error: unknown; name: string }>();
  /** This process's downloads until each has settled (committed or cleaned up, its lock released), and their stop. */
  private readonly underway = new Underway();
  private readonly locks?: SharedLocks;

  constructor(
    private readonly blobs: BlobStore,
    private readonly repository: (name: string) => RepositoryStore,
    private readonly upstream: Upstream,
    private readonly events: CacheEvents = {},
    private readonly options: ProxyBlobOptions = {},
  ) {
    this.locks = options.locks;
  }

  /**
   * The blob for a `GET`, top to bottom: served from the cache when `name` links it; else the
   * download under way is joined, or one is started (once in this process, once across the
   * processes sharing the storage); the client reads it as it is written (blob-fetch.ts), and the
   * verified blob is committed, linked and reported `stored` (the schedule) by `download`.
   * Throws `UpstreamError` when the upstream cannot provide it.
   */
  async get(name: string, digest: Digest): Promise<BlobHandle> {
    const local = await this.local(name, digest);
    if (local) {
      this.events.hit?.(name, digest);
      return local;
    }
    this.events.miss?.(name, digest);
    const fetch = await this.joinOrStart(name, digest);
    // Another process fetched it into the shared storage meanwhile, or this one just committed it.
    if (fetch === 'stored') return (await this.local(name, digest)) ?? this.get(name, digest);
    return {
      size: fetch.size,
      source: 'upstream',
      open: async (range): Promise<Readable> => {
        // Committed between the join and now: the bytes are in the store, linked for this repository.
        if (fetch.committed) return this.blobs.reader(digest, range);
        if (fetch.canRead(range?.start ?? 0)) return fetch.createReader(range?.start ?? 0, range?.end);
        // Stopped for crawling with nobody reading between the join and now: a fresh fetch.
        if (fetch.stopped) return (await this.get(name, digest)).open(range);
        if (fetch.failed) throw new UpstreamError('ERR_UPSTREAM_INVALID', `fetch of ${digest.value} failed`);
        // The disk failed between the join and now and the bytes this client needs are gone from
        // memory: it gets a fetch of its own (each state change ends this loop).
        return (await this.get(name, digest)).open(range);
      },
    };
  }

  /**
   * Starts fetching `digest` for `name` before any client asks: the config of an image manifest
   * just fetched from the upstream, which every client asks for next (skopeo after the layers, a
   * round trip at the end of a cold pull). Nothing happens when it is cached or already being
   * fetched; clients that ask join the fetch; a failure is left to them (they fetch again).
   */
  prefetch(name: string, digest: Digest): void {
    if (this.downloads.has(digest.value) || this.starting.has(digest.value)) return;
    // Not held as a whole: a stop waits for the download it starts (held in `start`), not for
    // another process's that it may wait on.
    void (async () => {
      if (await this.local(name, digest)) return;
      await this.joinOrStart(name, digest);
    })().catch(() => undefined);
  }

  /**
   * The size of the blob for a `HEAD`: from the cache, else from an upstream `HEAD` (nothing is
   * downloaded, as in distribution).
   */
  async stat(name: string, digest: Digest): Promise<BlobInfo> {
    const local = await this.local(name, digest);
    if (local) return { size: local.size, source: 'cache', redirect: local.redirect };
    const reply = await this.upstream.headBlob(name, digest.value);
    const size = Number(reply.headers['content-length']);
    return { size: Number.isFinite(size) ? size : undefined, source: 'upstream' };
  }

  /**
   * The cached blob if `name` may have it. Data cached for another repository is linked into
   * `name` only after the upstream confirms that `name` has the blob, so a digest known from one
   * (maybe private) repository cannot be read through another.
   */
  private async local(name: string, digest: Digest): Promise<BlobHandle | undefined> {
    const known = this.options.descriptors?.get(name, digest.value, () => this.refresh(name, digest));
    if (known?.kind === 'blob') return this.cachedHandle(name, digest, known.size);
    return this.stored(name, digest);
  }

  /** Asks storage again about a hot descriptor (in the background): renewed, or forgotten when gone. */
  private refresh(name: string, digest: Digest): void {
    this.stored(name, digest, false).then(
      (found) => void (found || this.options.descriptors?.forget(name, digest.value)),
      () => this.options.descriptors?.forget(name, digest.value),
    );
  }

  /**
   * `local` from storage itself, remembered in the descriptor cache; `link` false (a refresh, no
   * client asked): data this repository does not link is not linked, just not found.
   */
  private async stored(name: string, digest: Digest, link = true): Promise<BlobHandle | undefined> {
    const cache = this.options.descriptors;
    const epoch = cache?.epoch ?? 0;
    const repo = this.repository(name);
    // Both at once: on an object store each is a round trip to it.
    const [info, linked] = await Promise.all([this.blobs.stat(digest), repo.hasLayer(digest)]);
    if (!info || (!linked && !link)) return undefined;
    if (!linked) {
      // The upstream's answer for this repository is final: a 404 here would be a 404 for a GET too.
      await this.upstream.headBlob(name, digest.value);
      await repo.linkLayer(digest);
      this.events.stored?.(name, digest, info.size);
    }
    cache?.set(name, digest.value, { kind: 'blob', size: info.size }, epoch);
    return this.cachedHandle(name, digest, info.size);
  }

  /**
   * A stored blob's handle. Its data may be removed after the lookup (by our own expiry, another
   * replica, or `registry garbage-collect`): opening it then forgets the entry and serves the blob
   * as a miss, from the upstream, once; gone again after that, the answer is `BLOB_UNKNOWN`.
   */
  private cachedHandle(name: string, digest: Digest, size: number, retried = false): BlobHandle {
    const isGone = (err: unknown): boolean => (err as NodeJS.ErrnoException).code === 'ENOENT' || err instanceof PathNotFoundError;
    return {
      size,
      source: 'cache',
      open: (range) =>
        this.blobs.reader(digest, range).catch(async (err: unknown) => {
          if (!isGone(err)) throw err;
          this.options.descriptors?.forget(name, digest.value);
          if (retried) throw new BlobUnknownError(digest);
          // The digest fixes the bytes and the size the client was promised: a fetch serves the same.
          const again = await this.get(name, digest);
          return again.source === 'cache' ? this.cachedHandle(name, digest, size, true).open(range) : again.open(range);
        }),
      // Gone: undefined, so the route opens it as a stream, which fetches it again.
      openFile: () =>
        this.blobs.openFile(digest)?.catch((err: unknown) => {
          if (isGone(err)) return undefined;
          throw err;
        }),
      redirect: (method) => this.blobs.redirectURL(method, digest),
    };
  }

  /**
   * The download of `digest` under way, or a new one; joining a download for another repository
   * first asks the upstream whether that repository has the blob. `stored` when the blob is in the
   * storage now (committed meanwhile, or fetched by another process).
   */
  private async joinOrStart(name: string, digest: Digest): Promise<BlobFetch | 'stored'> {
    const running = this.downloads.get(digest.value);
    // Its bytes are verified and going into the store: served from there in a moment.
    if (running?.fetch.committing) {
      await running.fetch.done.catch(() => undefined);
      return 'stored';
    }
    // A download whose cache write was abandoned is joined only while it still holds every byte.
    if (running && running.fetch.canRead(0)) {
      if (!running.repos.has(name)) {
        await this.upstream.headBlob(name, digest.value);
        running.repos.add(name);
      }
      return running.fetch;
    }
    // Requests that arrive while the upstream has not answered yet share its answer; one for
    // another repository, whose access may differ, tries for itself after a failure.
    let started = false;
    const outcome = await this.starting.run(digest.value, () => {
      started = true;
      return this.start(name, digest).then(
        (fetch) => ({ fetch }),
        (error: unknown) => ({ error, name }),
      );
    });
    if ('fetch' in outcome) return started || outcome.fetch === 'stored' ? outcome.fetch : this.joinOrStart(name, digest);
    if (started || outcome.name === name) throw outcome.error;
    return this.joinOrStart(name, digest);
  }

  /** The one download of `digest` across the processes sharing the storage; its lock is held until the download ends. */
  private start(name: string, digest: Digest): Promise<BlobFetch | 'stored'> {
    return onceAcrossProcesses<BlobFetch | 'stored'>(this.locks, blobLockKey(digest), {
      landed: async () => ((await this.blobs.stat(digest)) ? 'stored' : undefined),
      work: () => this.download(name, digest),
      holdUntil: (fetch) => (fetch === 'stored' ? undefined : fetch.done),
      underway: this.underway,
    });
  }

  /**
   * Streams `digest` from the upstream into the store's writer and to every reader (blob-fetch.ts);
   * once verified, the blob is committed, linked into every repository that joined, and reported
   * `stored`. A full disk still serves the clients, uncached.
   */
  private async download(name: string, digest: Digest): Promise<BlobFetch> {
    const reply = await this.upstream.streamBlob(name, digest.value);
    const announced = Number(reply.headers['content-length']);
    const failed = (err: Error): void => this.events.cacheWriteFailed?.(name, digest, err);
    // No temporary file (a full disk, no inodes): the client is still served, uncached.
    const write = await this.blobs.writer(digest).catch((err: Error) => {
      failed(err);
      return undefined;
    });
    const repos = new Set([name]);
    const size = Number.isFinite(announced) ? announced : undefined;
    const fetch = BlobFetch.start({
      digest,
      size,
      write,
      body: reply.body,
      commit: async (w) => {
        await this.blobs.commit(w, digest);
        for (const repo of repos) {
          await this.repository(repo).linkLayer(digest);
          this.events.stored?.(repo, digest, w.size);
        }
      },
      cacheWriteFailed: failed,
      overtake: this.options.overtake,
      reopen: (offset) => this.reopen(name, digest, offset, size),
      onRace: (event) => this.options.onRace?.(name, digest, event),
      cacheWriteTimeoutMs: this.options.cacheWriteTimeoutMs,
    });
    const download = { fetch, repos };
    this.downloads.set(digest.value, download);
    fetch.done
      .catch(() => undefined)
      .finally(() => {
        if (this.downloads.get(digest.value) === download) this.downloads.delete(digest.value);
      });
    return fetch;
  }

  /**
   * A second connection for the bytes of `digest` from `offset` on: a `206` must start at or
   * before `offset` and agree on the size; a `200` (an upstream that ignores ranges) starts at 0.
   */
  private async reopen(name: string, digest: Digest, offset: number, size: number | undefined): Promise<{ body: Readable; start: number }> {
    const reply = await this.upstream.streamBlob(name, digest.value, offset);
    if (reply.status === 200) return { body: reply.body, start: 0 };
    const range = /^bytes (\d+)-\d+\/(\d+|\*)$/.exec(String(reply.headers['content-range'] ?? ''));
    if (!range || Number(range[1]) > offset || (size !== undefined && range[2] !== '*' && Number(range[2]) !== size)) {
      reply.body.destroy();
      throw new UpstreamError(
        'ERR_UPSTREAM_INVALID',
        `upstream answered bytes ${offset}- of /v2/${name}/blobs/${digest.value} with Content-Range ${JSON.stringify(reply.headers['content-range'] ?? null)}`,
      );
    }
    return { body: reply.body, start: Number(range[1]) };
  }

  /**
   * Stops: no download starts from now on, a wait for another process's download ends, and this
   * resolves once this process's own downloads (its clients' and its fetches ahead) have settled:
   * committed with their schedule entries, or failed with their temporary files removed, and their
   * locks released. A stop closes the upstream connections first, so what still streams fails at once.
   */
  close(): Promise<void> {
    return this.underway.close();
  }

  /** Blob fetches under way (for metrics and tests). */
  get inflight(): number {
    return this.downloads.size;
  }
}
