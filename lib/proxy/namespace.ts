/**
 * One upstream registry behind the mirror with its own client and stores: the default one of
 * `proxy.remoteurl`, or one of the extension `proxy.upstreams`. A namespace's content is stored
 * under its own repository prefix (`ghcr.io/org/app`), so content of different upstreams never
 * mixes; the default namespace has no prefix and keeps distribution's layout exactly.
 */
import type http from 'node:http';
import type { UpstreamConfig } from '../config/types.js';
import type { Digest } from '../distribution/digest.js';
import type { CacheEvents, ContentType, Manifest, TypedCacheEvents } from '../stores.js';
import { tryParseManifest } from '../distribution/manifest.js';
import { dockerHubName, storagePrefixOf } from '../distribution/registry-host.js';
import type { BlobStore } from '../storage/blob-store.js';
import type { RepositoryStore } from '../storage/repository-store.js';
import type { StorageDriver } from '../storage/driver.js';
import { ProxyBlobStore } from './proxy-blob-store.js';
import { ProxyManifestStore, type UnverifiedReason } from './proxy-manifest-store.js';
import { ProxyTagService } from './proxy-tag-service.js';
import { ProxyReferrers } from './proxy-referrers.js';
import { Upstream, type UpstreamTimeouts } from './upstream.js';
import type { SharedLocks } from '../storage/shared-lock.js';
import type { DescriptorCache } from '../storage/descriptor-cache.js';
import type { OvertakePolicy, RaceEvent } from './overtake.js';
import { RateBudget, type BudgetOptions } from './upstream-guards.js';
import type { CheckSkipped, TagPolicy } from './tag-checks.js';

/** The cache events of a namespace's stores, told the name content is stored under, and the manifests refused as unverified. */
export type NamespaceEvents = TypedCacheEvents & {
  manifestRefused?(storedName: string, reference: string, reason: UnverifiedReason, detail: string): void;
  /** A cached tag served without an upstream check (its freshness window, or a low budget). */
  checkSkipped?(storedName: string, tag: string, reason: CheckSkipped): void;
};

/** What a namespace is built from. */
interface NamespaceOptions {
  /** The registry host clients name (`docker.io`, `ghcr.io`). */
  readonly host: string;
  /** True for the default upstream (`proxy.remoteurl`): stored without a prefix. */
  readonly isDefault: boolean;
  readonly config: UpstreamConfig;
  /** `proxy.exec` (the default upstream only): a credential helper in place of `username`/`password`. */
  readonly exec?: { readonly command: string; readonly lifetimems?: number };
  readonly timeouts: UpstreamTimeouts;
  readonly driver: StorageDriver;
  readonly blobs: BlobStore;
  readonly repository: (storedName: string) => RepositoryStore;
  /** Cache events, reported with the name the content is stored under. */
  readonly events: NamespaceEvents;
  /** Locks shared with other processes on the same storage (replicas). */
  readonly locks?: SharedLocks;
  /** The hot path's memory of recent hits (lib/storage/descriptor-cache.ts); none: every hit reads storage. */
  readonly descriptors?: DescriptorCache;
  /** When a crawling blob fetch is raced by a second connection (`proxy.overtake`). */
  readonly overtake?: OvertakePolicy;
  /** `proxy.cachewritetimeout`: how long a blob fetch its clients left goes on filling the cache. */
  readonly cacheWriteTimeoutMs?: number;
  /** What racing a blob fetch did, told the name the blob is stored under. */
  readonly onBlobRace?: (storedName: string, digest: Digest, event: RaceEvent) => void;
  /** Fetch an image's config once its manifest came from the upstream, before a client asks (default false). */
  readonly fetchAhead?: boolean;
  /** How the upstream's cached tags are checked (`lib/cache-policy.ts`); none: every pull of a tag asks. */
  readonly tagPolicy?: TagPolicy;
  /** The upstream's rate-limit budget (`proxy.budget`); none: it is not tracked. */
  readonly budget?: BudgetOptions;
  /** `proxy.maxupstreamconns`: the most connections open to the upstream at once. */
  readonly maxConnections: number;
  readonly onResponse?: (info: { host: string; method: string; path: string; status: number; headers: http.IncomingHttpHeaders }) => void;
  readonly onWarning?: (message: string) => void;
}

/** An upstream and the stores that proxy it. Store methods take the upstream's repository names. */
export class ProxyNamespace {
  readonly host: string;
  /** Prepended to upstream names to form stored names: `''` or `ghcr.io/`. */
  readonly storagePrefix: string;
  readonly upstream: Upstream;
  readonly manifests: ProxyManifestStore;
  readonly blobs: ProxyBlobStore;
  readonly tags: ProxyTagService;
  readonly referrers: ProxyReferrers;
  /** The upstream's rate-limit budget as read from its answers, if tracked. */
  readonly budget?: RateBudget;
  private readonly dockerHub: boolean;

  constructor(o: NamespaceOptions) {
    this.host = o.host;
    this.storagePrefix = storagePrefixOf(o.host, o.isDefault);
    this.dockerHub = o.config.dockerhub;
    this.budget = o.budget && new RateBudget(o.budget);
    this.upstream = new Upstream({
      budget: this.budget,
      maxConnections: o.maxConnections,
      remoteUrl: o.config.remoteurl,
      username: o.config.username,
      password: o.config.password,
      exec: o.exec,
      timeouts: o.timeouts,
      onWarning: o.onWarning,
      onResponse: o.onResponse && ((info) => o.onResponse!({ host: o.host, ...info })),
    });
    const repository = (name: string): RepositoryStore => o.repository(this.storedName(name));
    const events = (type: ContentType): CacheEvents => ({
      stored: (name: string, digest: Digest, size: number) => o.events.stored(type, this.storedName(name), digest, size),
      hit: (name: string, digest: Digest) => {
        if (type === 'manifest') this.budget?.savedPull();
        o.events.hit(type, this.storedName(name), digest);
      },
      miss: (name: string, digest: Digest) => o.events.miss(type, this.storedName(name), digest),
      cacheWriteFailed: (name: string, digest: Digest, err: Error) => o.events.cacheWriteFailed(type, this.storedName(name), digest, err),
    });
    this.blobs = new ProxyBlobStore(o.blobs, repository, this.upstream, events('blob'), {
      locks: o.locks,
      descriptors: o.descriptors,
      overtake: o.overtake,
      cacheWriteTimeoutMs: o.cacheWriteTimeoutMs,
      onRace: o.onBlobRace && ((name, digest, event) => o.onBlobRace!(this.storedName(name), digest, event)),
    });
    const manifestEvents = {
      ...events('manifest'),
      unverified: (name: string, reference: string, reason: UnverifiedReason, detail: string) =>
        o.events.manifestRefused?.(this.storedName(name), reference, reason, detail),
      // A client that got an image manifest asks for its config next: fetch it already.
      fetched: o.fetchAhead
        ? (name: string, manifest: Manifest) => {
            const config = tryParseManifest(manifest.payload)?.refs.config;
            if (config) this.blobs.prefetch(name, config.digest);
          }
        : undefined,
      checkSkipped: (name: string, tag: string, reason: CheckSkipped) => o.events.checkSkipped?.(this.storedName(name), tag, reason),
    };
    this.manifests = new ProxyManifestStore(
      o.blobs,
      repository,
      this.upstream,
      manifestEvents,
      { policy: o.tagPolicy, lowBudget: this.budget && (() => this.budget!.low) },
      o.locks,
      o.descriptors,
    );
    this.tags = new ProxyTagService(repository, this.upstream);
    this.referrers = new ProxyReferrers(this.upstream, this.manifests);
  }

  /** The upstream's name for a client's: on Docker Hub (or `dockerhub: true`) `busybox` is `library/busybox`. */
  upstreamName(name: string): string {
    return this.dockerHub ? dockerHubName(name) : name;
  }

  /** The repository name `name` (an upstream name) is stored under. */
  storedName(name: string): string {
    return this.storagePrefix + name;
  }

  /**
   * Closes the upstream's connections, and resolves once this process's fetches under way (blobs
   * and manifests) have settled; none starts after it.
   */
  async close(): Promise<void> {
    this.upstream.close();
    await Promise.all([this.blobs.close(), this.manifests.close()]);
  }
}
