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
import { BlobUnknownError } from '../errors.js';
import { PathNotFoundError } from '../storage/driver.js';
import { inSpan } from '../tracing/tracing.js';

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
  private readonly fetches = new Map<string, BlobFetch>();
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
   * The blob for a `GET`: from the cache when `name` links it, else from (one) upstream fetch.
   * Throws `UpstreamError` when the upstream cannot provide it.
   */
  async get(name: string, digest: Digest): Promise<BlobHandle> {
    const local = await this.local(name, digest);
    if (local) {
      this.events.hit?.(name, digest);
      return local;
    }
    this.events.miss?.(name, digest);
    const fetch = await this.fetch(name, digest);
    if (!fetch) {
      // Another replica fetched it into the shared storage meanwhile.
      const landed = await this.local(name, digest);
      if (landed) return landed;
      return this.get(name, digest);
    }
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
    if (this.fetches.has(digest.value) || this.starting.has(digest.value)) return;
    void (async () => {
      if (await this.local(name, digest)) return;
      await this.fetch(name, digest);
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
   * The running fetch of `digest`, or a new one; joining a fetch from another repository first asks
   * the upstream. Undefined when another process fetched the blob into the storage meanwhile.
   */
  private async fetch(name: string, digest: Digest): Promise<BlobFetch | undefined> {
    const running = this.fetches.get(digest.value);
    // Its bytes are verified and going into the store: served from there in a moment.
    if (running?.committing) {
      await running.done.catch(() => undefined);
      return undefined;
    }
    // A fetch whose cache write was abandoned is joined only while it still holds every byte.
    if (running && running.canRead(0)) {
      const repos = this.linkOnCommit.get(digest.value);
      if (repos && !repos.has(name)) {
        await this.upstream.headBlob(name, digest.value);
        repos.add(name);
      }
      return running;
    }
    const starting = this.starting.get(digest.value);
    if (starting) {
      // Requests that arrive while the upstream has not answered yet share its answer; one from
      // another repository, whose access may differ, tries for itself after a failure.
      const outcome = await starting.promise.then(
        () => undefined,
        (err: unknown) => err,
      );
      if (outcome !== undefined && starting.name === name) throw outcome;
      return this.fetch(name, digest);
    }
    const promise = this.startFetch(name, digest);
    this.starting.set(digest.value, { name, promise });
    try {
      return await promise;
    } finally {
      this.starting.delete(digest.value);
    }
  }

  private readonly starting = new Map<string, { name: string; promise: Promise<BlobFetch | undefined> }>();
  private readonly linkOnCommit = new Map<string, Set<string>>();

  /**
   * Starts the one fetch of `digest` across every process sharing the storage: whoever takes the
   * blob's lock fetches; the others wait until the blob lands (undefined) or the lock is free again
   * (the fetch failed, or its process died and its lock went stale), then try again.
   */
  private async startFetch(name: string, digest: Digest): Promise<BlobFetch | undefined> {
    if (!this.locks) return this.startLocalFetch(name, digest);
    const key = blobLockKey(digest);
    for (;;) {
      const release = await inSpan('lock acquire', { 'registry.lock': key }, () => this.locks!.tryAcquire(key));
      if (release) {
        try {
          if (await this.blobs.stat(digest)) {
            await release();
            return undefined;
          }
          const fetch = await this.startLocalFetch(name, digest);
          void fetch.done.catch(() => undefined).finally(() => release());
          return fetch;
        } catch (err) {
          await release();
          throw err;
        }
      }
      // Another process is fetching it: wait until it lands, or its lock is free again.
      await inSpan('lock wait', { 'registry.lock': key }, () => this.locks!.waitWhileHeld(key, () => this.blobs.stat(digest), 100));
      if (await this.blobs.stat(digest)) return undefined;
    }
  }

  private async startLocalFetch(name: string, digest: Digest): Promise<BlobFetch> {
    const reply = await this.upstream.streamBlob(name, digest.value);
    const announced = Number(reply.headers['content-length']);
    const failed = (err: Error): void => this.events.cacheWriteFailed?.(name, digest, err);
    // No temporary file (a full disk, no inodes): the client is still served, uncached.
    const write = await this.blobs.writer(digest).catch((err: Error) => {
      failed(err);
      return undefined;
    });
    const repos = new Set([name]);
    this.linkOnCommit.set(digest.value, repos);
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
    this.fetches.set(digest.value, fetch);
    fetch.done
      .catch(() => undefined)
      .finally(() => {
        if (this.fetches.get(digest.value) === fetch) {
          this.fetches.delete(digest.value);
          this.linkOnCommit.delete(digest.value);
        }
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
      throw new UpstreamError('ERR_UPSTREAM_INVALID', `upstream answered bytes ${offset}- of /v2/${name}/blobs/${digest.value} with Content-Range ${JSON.stringify(reply.headers['content-range'] ?? null)}`);
    }
    return { body: reply.body, start: Number(range[1]) };
  }

  /** Blob fetches under way (for metrics and tests). */
  get inflight(): number {
    return this.fetches.size;
  }
}
