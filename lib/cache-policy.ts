/**
 * The cache's policies, each decided once from the configuration and handed to the parts that act
 * on it (as distribution's `NewRegistryPullThroughCache` settles the TTL and passes it down): how
 * long content stored under a name lives, whether a hit extends it, whether anything may be purged
 * at all, the size cap, and which names are hosted (never expired, evicted or proxied). The expiry
 * schedule and the size cap get these decisions, not the configuration.
 */
import type { ProxyConfig, UpstreamConfig } from './config/types.js';
import { isSignatureTag, type TagPolicy } from './proxy/tag-checks.js';
import { storagePrefixOf } from './distribution/registry-host.js';
import { isHostedName } from './hosted/hosted.js';

/** The decided policies. */
export interface CachePolicy {
  /**
   * The lifetime in ms of content stored under `storedName`: its upstream's TTL (`proxy.ttl`, or a
   * `proxy.upstreams` entry's), `0` for hosted names. `0`: it never expires.
   */
  ttlFor(storedName: string): number;
  /** True when anything can expire: some TTL above 0, and deletes enabled (else nothing is scheduled). */
  readonly expires: boolean;
  /** Extension `proxy.touchonhit`: a cache hit extends the expiry. */
  readonly touchOnHit: boolean;
  /** Extension `proxy.maxsize` in bytes when it is enforced; undefined without one or with deletes disabled. */
  readonly maxBytes?: number;
  /** True for names under `proxy.hosted`. */
  isHosted(storedName: string): boolean;
}

/**
 * Decides the policies of `proxy` with `storage.delete.enabled` as given. Without deletes nothing
 * can be purged, so nothing expires and no cap is kept, and `warn` says so once for each (the
 * official registry schedules anyway, fails each expiry and leaks it, distribution #1994).
 */
export function decideCachePolicy(proxy: ProxyConfig, deleteEnabled: boolean, warn: (message: string) => void): CachePolicy {
  const hosted = proxy.hosted;
  const isHosted = hosted.length === 0 ? () => false : (name: string): boolean => isHostedName(hosted, name);
  const others = Object.entries(proxy.upstreams).map(([host, u]) => ({ prefix: storagePrefixOf(host, false), ttlms: u.ttlms }));
  const ttlFor = (name: string): number => {
    if (isHosted(name)) return 0;
    // The default upstream stores without a prefix: what no other upstream's prefix claims is its.
    return others.find((o) => name.startsWith(o.prefix))?.ttlms ?? proxy.ttlms;
  };
  const anyTtl = proxy.ttlms > 0 || others.some((o) => o.ttlms > 0);
  if (anyTtl && !deleteEnabled) warn('proxy.ttl is set but storage.delete.enabled is false: cached content will never expire');
  if (proxy.maxsizebytes !== undefined && !deleteEnabled)
    warn('proxy.maxsize is set but storage.delete.enabled is false: the cache will not be kept under its size cap');
  return {
    ttlFor,
    expires: anyTtl && deleteEnabled,
    touchOnHit: proxy.touchonhit,
    maxBytes: deleteEnabled ? proxy.maxsizebytes : undefined,
    isHosted,
  };
}

/**
 * How one upstream's cached tags are checked: extension `immutabletags` (served unchecked, except
 * its `exclude` patterns) and extension `freshness` (the first pattern a tag matches gives the time
 * it is served unasked after a check). Cosign's signature, attestation and SBOM tags
 * (`sha256-<hex>.sig`, `.att`, `.sbom`) and the OCI referrers tag (`sha256-<hex>`) are appended to
 * upstream: neither freezes them.
 */
export function decideTagPolicy(upstream: UpstreamConfig): TagPolicy {
  const immutable = upstream.immutabletags;
  const mutable = immutable?.exclude.map((source) => new RegExp(source)) ?? [];
  const windows = (upstream.freshness ?? []).map((rule) => ({ re: new RegExp(rule.pattern), ms: rule.ms }));
  return {
    immutable: (tag) => immutable !== undefined && !isSignatureTag(tag) && !mutable.some((re) => re.test(tag)),
    freshMs: (tag) => (isSignatureTag(tag) ? 0 : (windows.find((w) => w.re.test(tag))?.ms ?? 0)),
  };
}
