/**
 * The upstreams of the configuration (`proxy.remoteurl` and each `proxy.upstreams` entry) as proxy
 * namespaces over the one storage, each reporting to the cache's fan-out (lib/services/cache-events.ts).
 */
import type { Logger } from 'winston';
import type { ProxyConfig, UpstreamConfig } from '../config/types.js';
import { registryHostOf } from '../distribution/registry-host.js';
import { decideTagPolicy } from '../cache-policy.js';
import type { StorageDriver } from '../storage/driver.js';
import type { BlobStore } from '../storage/blob-store.js';
import type { RepositoryStore } from '../storage/repository-store.js';
import type { DescriptorCache } from '../storage/descriptor-cache.js';
import type { SharedLocks } from '../storage/shared-lock.js';
import { ProxyNamespace } from '../proxy/namespace.js';
import { NamespaceRouter } from './serving.js';
import type { CacheEventFanOut } from './cache-events.js';

/** The storage and coordination every namespace shares. */
interface UpstreamsContext {
  readonly driver: StorageDriver;
  readonly blobs: BlobStore;
  readonly repository: (name: string) => RepositoryStore;
  readonly locks?: SharedLocks;
  readonly descriptors: DescriptorCache;
  readonly events: CacheEventFanOut;
  readonly fetchAhead: boolean;
  readonly logger: Logger;
}

/** The namespace router of `proxy`: the default upstream and every other one, each logged once. */
export function createUpstreams(proxy: ProxyConfig, context: UpstreamsContext): NamespaceRouter {
  const router = new NamespaceRouter(
    namespace(proxy, context, registryHostOf(proxy.remoteurl), proxy, true),
    Object.entries(proxy.upstreams).map(([host, upstream]) => namespace(proxy, context, host, upstream, false)),
  );
  for (const n of router.others)
    context.logger.info('upstream', { 'upstream.host': n.host, 'upstream.url': n.upstream.remoteUrl, 'storage.prefix': n.storagePrefix });
  return router;
}

function namespace(proxy: ProxyConfig, context: UpstreamsContext, host: string, upstream: UpstreamConfig, isDefault: boolean): ProxyNamespace {
  const { logger, events } = context;
  return new ProxyNamespace({
    host,
    isDefault,
    config: upstream,
    exec: isDefault ? proxy.exec : undefined,
    timeouts: { connect: proxy.timeouts.connectms, response: proxy.timeouts.responsems, idle: proxy.timeouts.idlems },
    driver: context.driver,
    blobs: context.blobs,
    repository: context.repository,
    events: events.stores,
    locks: context.locks,
    descriptors: context.descriptors,
    overtake: { minBytesPerSecond: proxy.overtake.minratebytes, afterMs: proxy.overtake.afterms },
    cacheWriteTimeoutMs: proxy.cachewritetimeoutms,
    onBlobRace: events.blobRace,
    fetchAhead: context.fetchAhead,
    tagPolicy: decideTagPolicy(upstream),
    budget: {
      reserve: proxy.budget.reserve,
      recheckMs: proxy.budget.recheckms,
      onChange: (state, detail) =>
        state === 'ok'
          ? logger.info('upstream rate-limit budget', { 'upstream.host': host, detail })
          : logger.warn(`upstream rate-limit budget ${state}`, { 'upstream.host': host, detail }),
    },
    maxConnections: proxy.maxupstreamconns,
    onWarning: (msg) => logger.warn(msg),
    onResponse: events.upstreamResponse,
  });
}
