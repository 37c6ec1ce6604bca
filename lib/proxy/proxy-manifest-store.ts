/**
 * Manifests in pull-through mode (distribution `registry/proxy/proxymanifeststore.go`, improved).
 * By digest: served from the cache once stored; the upstream's bytes are verified against the
 * digest before they are stored. By tag: one upstream `HEAD` (which Docker Hub does not count as a
 * pull) tells whether the tag moved; the manifest is fetched only when it did. The cached tag is
 * served when the upstream cannot be reached or rate-limits, never when it says the tag is gone.
 */
import { digestOf, parseDigest, type Digest } from '../distribution/digest.js';
import { mediaTypeOfPayload } from '../distribution/manifest.js';
import type { CacheEvents, Manifest, ManifestService } from '../stores.js';
import type { BlobStore } from '../storage/blob-store.js';
import type { RepositoryStore } from '../storage/repository-store.js';
import type { SharedLocks } from '../storage/shared-lock.js';
import { manifestLockKey } from '../storage/paths.js';
import { Inflight } from './inflight.js';
import type { Upstream } from './upstream.js';
import { UpstreamError } from './upstream-error.js';

/** Raised when the upstream's manifest is not what it claims to be. */
export class ManifestVerificationError extends UpstreamError {
  constructor(message: string) {
    super('ERR_UPSTREAM_INVALID', message);
  }
}

/** The manifest side of the pull-through cache. */
export class ProxyManifestStore implements ManifestService {
  private readonly byDigest = new Inflight<Manifest>();
  private readonly tagChecks = new Inflight<Digest>();

  constructor(
    private readonly blobs: BlobStore,
    private readonly repository: (name: string) => RepositoryStore,
    private readonly upstream: Upstream,
    private readonly events: CacheEvents = {},
    /** Extension `immutabletags`: true for a tag whose cached manifest is served with no upstream check. */
    private readonly immutable?: (tag: string) => boolean,
    /** Locks shared with other processes on the same storage (replicas): one fetches, the rest wait. */
    private readonly locks?: SharedLocks,
  ) {}

  /** The manifest `name@digest`: from the cache, else fetched, verified and stored. */
  getByDigest(name: string, digest: Digest): Promise<Manifest> {
    return this.byDigest.run(`${name}@${digest.value}`, async () => {
      const cached = await this.local(name, digest);
      if (cached) {
        this.events.hit?.(name, digest);
        return cached;
      }
      this.events.miss?.(name, digest);
      return this.fetchOnce(name, digest);
    });
  }

  /** One upstream fetch of `name@digest` across the processes sharing the storage. */
  private async fetchOnce(name: string, digest: Digest): Promise<Manifest> {
    if (!this.locks) return this.fetchAndStore(name, digest);
    const key = manifestLockKey(name, digest);
    for (;;) {
      const release = await this.locks.tryAcquire(key);
      if (release) {
        try {
          return (await this.local(name, digest)) ?? (await this.fetchAndStore(name, digest));
        } finally {
          await release();
        }
      }
      // Another replica is fetching it: wait until it is stored, or its lock is free again.
      const stored = await this.locks.waitWhileHeld(key, () => this.local(name, digest), 50);
      if (stored) return stored;
    }
  }

  /** The manifest `name:tag`, checked against the upstream unless the tag is immutable and cached. */
  async getByTag(name: string, tag: string): Promise<Manifest> {
    const repo = this.repository(name);
    if (this.immutable?.(tag)) {
      const cachedDigest = await repo.resolveTag(tag);
      const cached = cachedDigest && (await this.local(name, cachedDigest));
      if (cached) {
        this.events.hit?.(name, cachedDigest);
        return cached;
      }
    }
    let digest: Digest;
    try {
      // Concurrent checks of one tag share one upstream HEAD.
      digest = await this.tagChecks.run(`${name}:${tag}`, () => this.resolveUpstreamTag(name, tag));
    } catch (err) {
      if (err instanceof UpstreamError && err.isUnavailable) {
        const cachedDigest = await repo.resolveTag(tag);
        const cached = cachedDigest && (await this.local(name, cachedDigest));
        if (cached) {
          this.events.hit?.(name, cachedDigest);
          return { ...cached, stale: err };
        }
      }
      throw err;
    }
    const manifest = await this.getByDigest(name, digest);
    try {
      const current = await repo.resolveTag(tag);
      if (current?.value !== digest.value) await repo.tag(tag, digest);
    } catch (err) {
      this.cacheWriteFailed(name, digest, err);
    }
    return manifest;
  }

  /** The digest the upstream's tag points at now: a `HEAD`, or a `GET` if the `HEAD` names none. */
  private async resolveUpstreamTag(name: string, tag: string): Promise<Digest> {
    const head = await this.upstream.headManifest(name, tag);
    const headerDigest = head.headers['docker-content-digest'];
    const parsed = typeof headerDigest === 'string' ? parseDigest(headerDigest) : undefined;
    if (parsed) return parsed;
    const reply = await this.upstream.getManifest(name, tag);
    const digest = parseDigest(digestOf(reply.body))!;
    await this.store(name, digest, reply.body);
    return digest;
  }

  private async fetchAndStore(name: string, digest: Digest): Promise<Manifest> {
    const reply = await this.upstream.getManifest(name, digest.value);
    const actual = digestOf(reply.body, digest.algorithm);
    if (actual !== digest.value) {
      throw new ManifestVerificationError(`upstream manifest for ${name}@${digest.value} hashes to ${actual}`);
    }
    const mediaType = mediaTypeOfPayload(reply.body);
    if (!mediaType) throw new ManifestVerificationError(`upstream manifest for ${name}@${digest.value} is not a manifest`);
    await this.store(name, digest, reply.body);
    return { digest, mediaType, payload: reply.body, source: 'upstream' };
  }

  /** Caches a verified manifest; a storage failure is reported, never passed to the client. */
  private async store(name: string, digest: Digest, payload: Buffer): Promise<void> {
    try {
      await this.blobs.put(digest, payload);
      await this.repository(name).linkRevision(digest);
    } catch (err) {
      this.cacheWriteFailed(name, digest, err);
      return;
    }
    this.events.stored?.(name, digest, payload.length);
  }

  private cacheWriteFailed(name: string, digest: Digest, err: unknown): void {
    this.events.cacheWriteFailed?.(name, digest, err instanceof Error ? err : new Error(String(err)));
  }

  /** The cached manifest, if this repository has the revision and its data is intact. */
  private async local(name: string, digest: Digest): Promise<Manifest | undefined> {
    if (!(await this.repository(name).hasRevision(digest))) return undefined;
    let payload: Buffer;
    try {
      payload = await this.blobs.get(digest);
    } catch {
      return undefined;
    }
    const mediaType = mediaTypeOfPayload(payload);
    if (!mediaType) return undefined;
    return { digest, mediaType, payload, source: 'cache' };
  }
}
