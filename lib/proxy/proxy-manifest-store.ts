/**
 * Manifests in pull-through mode (distribution `registry/proxy/proxymanifeststore.go`, improved).
 * By digest: served from the cache once stored; the upstream's bytes are verified against the
 * digest before they are stored. By tag: when the tag is cached, one upstream `HEAD` (which Docker
 * Hub does not count as a pull) tells whether it moved, and the manifest is fetched only when it
 * did; when it is not, the manifest is fetched by tag at once (a `HEAD` first would only cost a
 * round trip). The cached tag is served when the upstream cannot be reached or rate-limits, never
 * when it says the tag is gone; it is served without the `HEAD` when the tag is immutable, was
 * checked within its freshness window, or the upstream's rate-limit budget is low (`tag-checks.ts`).
 *
 * A manifest is committed under a tag only once its digest is known to be the upstream's for that
 * tag: named by `Docker-Content-Digest` on the `HEAD` (then fetched by digest and hashed) or on the
 * `GET` by tag (which must equal the body's hash), or, when the upstream names none, confirmed by
 * asking the upstream for the body's digest by digest (content addressing: the upstream holds
 * exactly these bytes). A body that cannot be verified is refused (503, nothing stored) and
 * reported, so a tag served stale during an outage is always one that was verified.
 */
import type http from 'node:http';
import { digestOf, parseDigest, type Digest } from '../distribution/digest.js';
import { mediaTypeOfPayload } from '../distribution/manifest.js';
import type { CacheEvents, Manifest, ManifestService } from '../stores.js';
import type { BlobStore } from '../storage/blob-store.js';
import type { RepositoryStore } from '../storage/repository-store.js';
import type { SharedLocks } from '../storage/shared-lock.js';
import { manifestLockKey, tagLockKey } from '../storage/paths.js';
import type { DescriptorCache } from '../storage/descriptor-cache.js';
import { Inflight, onceAcrossProcesses, Underway } from './once.js';
import { TagChecks, type CheckSkipped, type TagPolicy } from './tag-checks.js';
import type { Upstream, UpstreamReply } from './upstream.js';
import { UpstreamError } from './upstream-error.js';

/** The cache events of the manifest store, and the refusal of a manifest that could not be verified. */
interface ProxyManifestEvents extends CacheEvents {
  /** An upstream manifest failed verification and was refused: nothing stored, the client got a 503. */
  unverified?(repo: string, reference: string, reason: UnverifiedReason, detail: string): void;
  /** A verified manifest came from the upstream (to fetch what a client asks for next, ahead of it). */
  fetched?(repo: string, manifest: Manifest): void;
  /** A cached tag was served without an upstream check: within its freshness window, or the budget is low. */
  checkSkipped?(repo: string, tag: string, reason: CheckSkipped): void;
}

/**
 * Why an upstream manifest was refused: its body does not hash to the digest the upstream named
 * (`digest_mismatch`), the upstream named no digest and does not hold the body's digest
 * (`not_upstream`), it named none and could not be asked (`unconfirmed`: the request fails as if
 * the upstream were down, so a verified cached tag may answer), or the body is no manifest.
 */
export type UnverifiedReason = 'digest_mismatch' | 'not_upstream' | 'unconfirmed' | 'not_a_manifest';

/** Raised when the upstream's manifest is not what it claims to be, or cannot be shown to be the upstream's. */
class ManifestVerificationError extends UpstreamError {
  constructor(
    message: string,
    readonly reason: UnverifiedReason = 'digest_mismatch',
    cause?: unknown,
  ) {
    super('ERR_UPSTREAM_INVALID', message, { cause });
  }
}

/** The manifest side of the pull-through cache. */
export class ProxyManifestStore implements ManifestService {
  private readonly byDigest = new Inflight<Manifest>();
  private readonly tagChecks: TagChecks<TagResolution>;
  /** This process's fetches, from the lock's taking to its release, and their stop. */
  private readonly underway = new Underway();

  constructor(
    private readonly blobs: BlobStore,
    private readonly repository: (name: string) => RepositoryStore,
    private readonly upstream: Upstream,
    private readonly events: ProxyManifestEvents = {},
    /**
     * How cached tags are checked: `policy` (extensions `immutabletags`, `freshness`), and
     * `lowBudget`, true while the upstream's rate limit is too low to spend on revalidation.
     */
    tags: { readonly policy?: TagPolicy; readonly lowBudget?: () => boolean } = {},
    /** Locks shared with other processes on the same storage (replicas): one fetches, the rest wait. */
    private readonly locks?: SharedLocks,
    /** What storage said of recent hits, so a hot manifest costs no link read and no file read. */
    private readonly descriptors?: DescriptorCache,
  ) {
    this.tagChecks = new TagChecks(tags.policy, tags.lowBudget);
  }

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
  private fetchOnce(name: string, digest: Digest): Promise<Manifest> {
    return onceAcrossProcesses(this.locks, manifestLockKey(name, digest), {
      landed: () => this.local(name, digest),
      work: () => this.fetchAndStore(name, digest),
      underway: this.underway,
    });
  }

  /**
   * The manifest `name:tag`, checked against the upstream unless the tag is immutable and cached,
   * was checked within its freshness window, or the budget is too low to spend on checks.
   */
  async getByTag(name: string, tag: string): Promise<Manifest> {
    // Within the window the digest is known without reading the tag's link (the hot path).
    const fresh = this.tagChecks.fresh(name, tag);
    if (fresh) {
      const cached = await this.local(name, fresh);
      if (cached) return this.servedUnchecked(name, tag, cached, 'fresh');
      this.tagChecks.forget(name, tag);
    }
    const repo = this.repository(name);
    const cachedDigest = await repo.resolveTag(tag);
    if (cachedDigest && (this.tagChecks.immutable(tag) || this.tagChecks.deferred)) {
      const cached = await this.local(name, cachedDigest);
      if (cached) return this.tagChecks.immutable(tag) ? this.servedUnchecked(name, tag, cached) : this.servedUnchecked(name, tag, cached, 'budget');
    }
    let resolved: TagResolution;
    try {
      // Concurrent checks of one tag share one upstream request.
      resolved = await this.tagChecks.run(name, tag, () => this.resolveUpstreamTag(name, tag, cachedDigest !== undefined));
    } catch (err) {
      if (err instanceof UpstreamError && err.isUnavailable) {
        // Unreachable, failing, or rate-limited (429, also when refused here): the cached copy answers.
        const cached = cachedDigest && (await this.local(name, cachedDigest));
        if (cached) {
          this.events.hit?.(name, cachedDigest);
          return { ...cached, stale: err };
        }
      }
      throw err;
    }
    const { digest } = resolved;
    const manifest = resolved.fetched ?? (await this.getByDigest(name, digest));
    if (!resolved.tagged && cachedDigest?.value !== digest.value) {
      try {
        await repo.tag(tag, digest);
      } catch (err) {
        this.cacheWriteFailed(name, digest, err);
      }
    }
    return manifest;
  }

  /** A cached tag's manifest served without asking the upstream; `reason` unset for an immutable tag. */
  private servedUnchecked(name: string, tag: string, cached: Manifest, reason?: CheckSkipped): Manifest {
    this.events.hit?.(name, cached.digest);
    if (reason) this.events.checkSkipped?.(name, tag, reason);
    return cached;
  }

  /**
   * The digest the upstream's tag points at now: when the tag is cached, named by a `HEAD` (the
   * manifest is then read from the cache, or fetched by digest and hashed); else, or when the
   * `HEAD` names none, fetched by tag and verified (its `Docker-Content-Digest`, else confirmed by
   * digest), then stored. Refusals are reported; the manifest is stored only once verified.
   */
  private resolveUpstreamTag(name: string, tag: string, cached: boolean): Promise<TagResolution> {
    return this.reporting(name, tag, async () => {
      if (cached) {
        const head = await this.upstream.headManifest(name, tag);
        const named = digestHeader(head.headers);
        if (named) return { digest: named };
        return this.fetchTag(name, tag);
      }
      return this.fetchTagOnce(name, tag);
    });
  }

  /**
   * The first fetch of a tag across the processes sharing the storage: one replica fetches it by
   * tag and tags it; the others wait for the tag and read it from the storage (a manifest `GET` is
   * what Docker Hub counts as a pull).
   */
  private fetchTagOnce(name: string, tag: string): Promise<TagResolution> {
    const repo = this.repository(name);
    return onceAcrossProcesses<TagResolution>(this.locks, tagLockKey(name, tag), {
      landed: async () => {
        const landed = await repo.resolveTag(tag);
        return landed && { digest: landed, tagged: true };
      },
      work: async () => {
        const resolved = await this.fetchTag(name, tag);
        try {
          await repo.tag(tag, resolved.digest);
        } catch (err) {
          this.cacheWriteFailed(name, resolved.digest, err);
        }
        return { ...resolved, tagged: true };
      },
      underway: this.underway,
    });
  }

  /** The tag's manifest fetched by tag, verified, and stored (or read from the cache if it holds that digest). */
  private async fetchTag(name: string, tag: string): Promise<TagResolution> {
    const reply = await this.upstream.getManifest(name, tag);
    const digest = await this.verifiedDigest(name, tag, reply.headers, reply.body);
    const mediaType = checkedMediaType(`${name}:${tag}`, reply.body);
    // The same manifest may be cached under another tag, or by digest.
    const local = await this.local(name, digest);
    if (local) {
      this.events.hit?.(name, digest);
      return { digest, fetched: local };
    }
    this.events.miss?.(name, digest);
    return { digest, fetched: await this.fetched(name, digest, mediaType, reply.body) };
  }

  /** Runs `work`, reporting a verification failure (then passed on) as `unverified`. */
  private async reporting<T>(name: string, reference: string, work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (err) {
      if (err instanceof ManifestVerificationError) this.events.unverified?.(name, reference, err.reason, err.message);
      throw err;
    }
  }

  /**
   * The digest of a body fetched by tag, once shown to be the upstream's: the `GET`'s
   * `Docker-Content-Digest` must equal the body's hash; without one, the upstream must answer a
   * `HEAD` by the body's own digest (a different or altered body has a digest it does not hold).
   */
  private async verifiedDigest(name: string, tag: string, headers: http.IncomingHttpHeaders, body: Buffer): Promise<Digest> {
    const named = digestHeader(headers);
    if (named) {
      const actual = digestOf(body, named.algorithm);
      if (actual !== named.value)
        throw new ManifestVerificationError(`upstream manifest for ${name}:${tag} hashes to ${actual}, not ${named.value} as the upstream says`);
      return named;
    }
    const computed = parseDigest(digestOf(body))!;
    let confirmed: UpstreamReply;
    try {
      confirmed = await this.upstream.headManifest(name, computed.value);
    } catch (err) {
      if (err instanceof UpstreamError && err.status === 404) {
        throw new ManifestVerificationError(
          `upstream manifest for ${name}:${tag} came without a digest and hashes to ${computed.value}, which the upstream does not hold: altered on the way`,
          'not_upstream',
          err,
        );
      }
      if (err instanceof UpstreamError && err.isUnavailable) {
        // Refused as unverified, and answered as an outage: a verified cached tag may be served.
        this.events.unverified?.(
          name,
          tag,
          'unconfirmed',
          `upstream manifest for ${name}:${tag} came without a digest and ${computed.value} could not be confirmed: ${err.message}`,
        );
        throw err;
      }
      throw new ManifestVerificationError(
        `upstream manifest for ${name}:${tag} came without a digest and the upstream could not confirm ${computed.value}: ${(err as Error).message}`,
        'unconfirmed',
        err,
      );
    }
    const echoed = digestHeader(confirmed.headers);
    if (echoed && echoed.value !== computed.value) {
      throw new ManifestVerificationError(
        `upstream manifest for ${name}:${tag} hashes to ${computed.value}, the upstream's HEAD by that digest names ${echoed.value}`,
        'not_upstream',
      );
    }
    return computed;
  }

  private fetchAndStore(name: string, digest: Digest): Promise<Manifest> {
    return this.reporting(name, digest.value, async () => {
      const reply = await this.upstream.getManifest(name, digest.value);
      const actual = digestOf(reply.body, digest.algorithm);
      if (actual !== digest.value) throw new ManifestVerificationError(`upstream manifest for ${name}@${digest.value} hashes to ${actual}`);
      const mediaType = checkedMediaType(`${name}@${digest.value}`, reply.body);
      return this.fetched(name, digest, mediaType, reply.body);
    });
  }

  /** A verified upstream manifest: stored, announced, returned. */
  private async fetched(name: string, digest: Digest, mediaType: string, payload: Buffer): Promise<Manifest> {
    await this.store(name, digest, payload);
    const manifest = { digest, mediaType, payload, source: 'upstream' as const };
    this.events.fetched?.(name, manifest);
    return manifest;
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
    const known = this.descriptors?.get(name, digest.value, () => this.refresh(name, digest));
    if (known?.kind === 'manifest') return { digest, mediaType: known.mediaType, payload: known.payload, source: 'cache' };
    return this.stored(name, digest);
  }

  /** Asks storage again about a hot descriptor (in the background): renewed, or forgotten when gone. */
  private refresh(name: string, digest: Digest): void {
    this.stored(name, digest).then(
      (found) => void (found || this.descriptors?.forget(name, digest.value)),
      () => this.descriptors?.forget(name, digest.value),
    );
  }

  /** `local` from storage itself, remembered in the descriptor cache. */
  private async stored(name: string, digest: Digest): Promise<Manifest | undefined> {
    const epoch = this.descriptors?.epoch ?? 0;
    if (!(await this.repository(name).hasRevision(digest))) return undefined;
    let payload: Buffer;
    try {
      payload = await this.blobs.get(digest);
    } catch {
      return undefined;
    }
    const mediaType = mediaTypeOfPayload(payload);
    if (!mediaType) return undefined;
    this.descriptors?.set(name, digest.value, { kind: 'manifest', mediaType, payload }, epoch);
    return { digest, mediaType, payload, source: 'cache' };
  }

  /**
   * Stops: no fetch starts from now on, a wait for another process's fetch ends, and this resolves
   * once this process's own fetches have settled (stored or failed, their locks released). A stop
   * closes the upstream connections first, so what is still asked fails at once.
   */
  close(): Promise<void> {
    return this.underway.close();
  }
}

/** What a tag check found: the digest, the manifest when it was fetched by tag, whether the tag was written. */
interface TagResolution {
  readonly digest: Digest;
  readonly fetched?: Manifest;
  readonly tagged?: boolean;
}

/** The media type of an upstream manifest body; throws when it is not a manifest. */
function checkedMediaType(ref: string, body: Buffer): string {
  const mediaType = mediaTypeOfPayload(body);
  if (!mediaType) throw new ManifestVerificationError(`upstream manifest for ${ref} is not a manifest`, 'not_a_manifest');
  return mediaType;
}

/** The `Docker-Content-Digest` an upstream answer names, if it names a valid one. */
function digestHeader(headers: http.IncomingHttpHeaders): Digest | undefined {
  const value = headers['docker-content-digest'];
  return typeof value === 'string' ? parseDigest(value) : undefined;
}
