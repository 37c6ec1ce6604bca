/**
 * The registry's services without its HTTP side: storage, the upstream namespaces with their proxy
 * stores, the hosted repositories, metrics, the expiry schedule and the size cap. `registry serve`
 * puts routes and a listener in front of them (lib/server.ts); `registry warm` calls the proxy
 * stores directly, so what it caches is cached exactly as a pull caches it. Each concern is its own
 * module of lib/services: the fan-out of cache events (`cache-events.ts`), the replicas'
 * coordination (`coordination.ts`), the upstreams (`upstreams.ts`), which stores serve a name
 * (`serving.ts`) and the background start-up (`background.ts`); this one lists them in order.
 */
import { join, resolve } from 'node:path';
import type { Logger } from 'winston';
import type { Config } from '../config/types.js';
import type { StorageDriver } from '../storage/driver.js';
import { createDriver } from '../storage/factory.js';
import type { SharedLocks } from '../storage/shared-lock.js';
import { BlobStore } from '../storage/blob-store.js';
import { DescriptorCache, invalidatingDriver } from '../storage/descriptor-cache.js';
import type { RepositoryStore } from '../storage/repository-store.js';
import { LinkIndex, observedRepositories } from '../storage/link-index.js';
import { listRepositories, type CatalogPage } from '../storage/catalog.js';
import { RepositoryIndex } from '../storage/repository-index.js';
import { repositoriesRoot, SCHEDULER_STATE_PATH } from '../storage/paths.js';
import type { StateStore } from '../expiry/state-store.js';
import { DriverStateStore } from '../expiry/driver-state-store.js';
import { CacheLifetime } from '../expiry/cache-lifetime.js';
import { SizeCap } from '../retention/size-cap.js';
import { HostedRepositories } from '../hosted/hosted.js';
import { Metrics } from '../metrics/metrics.js';
import { Notifier } from '../notifications/notifier.js';
import { reportingListener } from '../notifications/reporting.js';
import { decideCachePolicy, type CachePolicy } from '../cache-policy.js';
import { UnsupportedConfigError } from '../errors.js';
import { CacheEventFanOut } from './cache-events.js';
import { createCoordination } from './coordination.js';
import { createUpstreams } from './upstreams.js';
import { ServedNames, type NamespaceRouter } from './serving.js';
import { startBackground } from './background.js';

/** The running services of one registry process. */
export interface RegistryServices {
  readonly driver: StorageDriver;
  readonly blobs: BlobStore;
  /**
   * Locks shared with other processes on the same storage root (replicas, `registry warm`); none on
   * S3 without Redis, where this process coordinates only its own requests.
   */
  readonly locks?: SharedLocks;
  /** The repository store of a stored name. */
  readonly repository: (name: string) => RepositoryStore;
  readonly metrics: Metrics;
  /** The cache's policies as decided from the configuration (TTLs, hosted names, the cap). */
  readonly policy: CachePolicy;
  /** The upstreams (`proxy.remoteurl` and `proxy.upstreams`) and their proxy stores. */
  readonly router: NamespaceRouter;
  /** The hosted repositories (extension `proxy.hosted`); undefined without hosted prefixes. */
  readonly hosted?: HostedRepositories;
  /** Which stores serve a client's name. */
  readonly names: ServedNames;
  /** The expiry schedule (`scheduler-state.json`), started. */
  readonly lifetime: CacheLifetime;
  /** The size accounting (enforcing `proxy.maxsize` when `policy.maxBytes` is set), and the manifests' last pulls. */
  readonly sizeCap: SizeCap;
  /** Which repositories link each digest (complete once the start-up walk is done). */
  readonly links: LinkIndex;
  /**
   * A page of the catalog: from memory once the catalog index is kept and built (filesystem
   * storage, lib/storage/repository-index.ts), else a walk of the storage.
   */
  catalog(page: Pick<CatalogPage, 'n' | 'last'>): Promise<string[]>;
  /** Starts keeping the catalog index (`serve`, once it listens; on S3 there is none). */
  startCatalog(): void;
  /** Settles when the background start-up work (schedule load, walk of the storage) is done. */
  readonly started: Promise<void>;
  /** For the cache page: each upstream host's last `RateLimit-Remaining`. */
  readonly rateLimits: ReadonlyMap<string, string>;
  /** The `notifications:` endpoints (inactive without any). */
  readonly notifier: Notifier;
  /**
   * The first step of a stop, at once: ends the background work (the start-up walk, expiries,
   * evictions, the temporary-file janitor) at its next step and writes the schedule's changes so
   * far, while requests are still served; what they schedule meanwhile is written by `close`.
   */
  halt(): Promise<void>;
  /** Halts, then writes the schedule's changes (`scheduler-state.json`) and closes the upstream connections. */
  close(): Promise<void>;
}

/** How the services are used. */
export interface ServicesOptions {
  /**
   * Fetch what a client asks for next ahead of it (an image's config once its manifest came from
   * the upstream). Default true; `warm` fetches everything itself and reports what it fetched.
   */
  readonly fetchAhead?: boolean;
}

/**
 * Builds the services described by `config`, at once: the work whose size is the cache's runs in
 * the background (lib/services/background.ts), so requests never wait for it. Each part is built
 * after what it reports to, so no event can reach a part that does not exist yet.
 */
export async function createServices(config: Config, logger: Logger, options: ServicesOptions = {}): Promise<RegistryServices> {
  if (!config.proxy) {
    throw new UnsupportedConfigError('this registry runs as a pull-through cache: set proxy.remoteurl (or REGISTRY_PROXY_REMOTEURL) to the upstream registry');
  }
  const proxy = config.proxy;
  const policy = decideCachePolicy(proxy, config.storage.delete.enabled, (msg) => logger.warn(msg));
  // Every delete of this process (expiry, eviction, hosted deletes) empties the hot path's
  // descriptor cache; other processes' changes are seen within its entries' lifetime (1 s).
  const descriptors = new DescriptorCache();
  // The registry's stop: every background loop ends at its next step once this fires, so that a
  // stop never waits for work that can no longer complete (the walk the expiries wait for).
  const stopping = new AbortController();
  const signal = stopping.signal;
  const driver = invalidatingDriver(await createDriver(config.storage, config.middleware.storage, (msg) => logger.warn(msg)), descriptors);
  const blobs = new BlobStore(driver, { redirect: !config.storage.redirect.disable });
  // Every link made or removed through the stores is known to the index, and every repository
  // created or deleted to the catalog's (a filesystem's only: its thread reads mtimes).
  const links = new LinkIndex();
  const root = config.storage.filesystem?.rootdirectory;
  const catalogIndex = root === undefined ? undefined : new RepositoryIndex(resolve(root).replace(/\/+$/, '') + repositoriesRoot(), logger);
  const repository = observedRepositories(driver, links, catalogIndex);
  // Hosted pushes of another process are in no journal: a deletion asks those repositories too.
  const unindexed =
    proxy.hosted.length > 0
      ? () =>
          listRepositories(driver, { within: (path) => proxy.hosted.some((p) => p.startsWith(path) || path.startsWith(p)) }).then((names) =>
            names.filter(policy.isHosted),
          )
      : undefined;
  const metrics = new Metrics();
  const notifier = new Notifier(config.notifications, config.http.addr, reportingListener(metrics, logger));
  for (const e of config.notifications.endpoints) {
    if (e.disabled) logger.info('notifications: endpoint disabled, skipping', { endpoint: e.name });
    else logger.info('notifications: endpoint configured', { endpoint: e.name, url: e.url, 'timeout.ms': e.timeoutms, queuelimit: e.queuelimit });
  }
  const events = new CacheEventFanOut(metrics, notifier.active ? notifier : undefined, logger);
  const { locks, redis } = await createCoordination(config, proxy.lockstalems, metrics, logger);
  const purge = { driver, blobs, repository, links, unindexed, logger, signal, exclude: policy.isHosted };
  const sizeCap = new SizeCap({
    ...purge,
    maxBytes: policy.maxBytes ?? Number.POSITIVE_INFINITY,
    onEvicted: events.evicted,
    onSize: events.sized,
    evicts: events.runsForAll,
  });
  const lifetime = new CacheLifetime({
    ...purge,
    ...schedulerState(config, driver),
    expires: policy.expires,
    ttlFor: policy.ttlFor,
    touchOnHit: policy.touchOnHit,
    locks,
    onExpired: events.expired,
    onLeaseTaken: events.leaseTaken,
    onLearnt: events.learnt,
  });
  events.attach(lifetime, sizeCap);
  const router = createUpstreams(proxy, { driver, blobs, repository, locks, descriptors, events, fetchAhead: options.fetchAhead ?? true, logger });
  const purging = config.storage.maintenance.uploadpurging;
  const hosted =
    proxy.hosted.length > 0
      ? new HostedRepositories({
          prefixes: proxy.hosted,
          driver,
          blobs,
          repository,
          purging: purging.enabled ? purging : undefined,
          validation: { ...config.validation, classes: config.policy.repository.classes },
          logger,
        })
      : undefined;
  const names = new ServedNames(router, policy.isHosted, hosted);
  const background = startBackground({ driver, repository, links, lifetime, sizeCap, logger }, stopping);
  let halting: Promise<void> | undefined;
  let closing: Promise<void> | undefined;
  const halt = (): Promise<void> => (halting ??= Promise.all([background.halt(), catalogIndex?.stop()]).then(() => undefined));
  const close = async (): Promise<void> => {
    await halt();
    // Upstream connections first: a fetch that outlived the drain fails (its temporary file
    // removed) instead of committing content after the schedule's last write, unscheduled; one
    // already committing lands with its entry. Either way it has settled before the write.
    await Promise.all(router.all.map((n) => n.close()));
    await lifetime.stop();
    await redis?.close();
    await notifier.close();
  };
  return {
    driver,
    blobs,
    locks,
    repository,
    metrics,
    policy,
    router,
    hosted,
    names,
    lifetime,
    sizeCap,
    links,
    catalog: async (page) => (await catalogIndex?.page(page)) ?? listRepositories(driver, page),
    startCatalog: () => catalogIndex?.start(),
    started: background.started,
    rateLimits: events.rateLimits,
    notifier,
    halt,
    close: () => (closing ??= close()),
  };
}

/**
 * `scheduler-state.json` where distribution keeps it: at the root of the filesystem driver (a local
 * file, locked across replicas on the volume), or the object `/scheduler-state.json` of any other
 * driver (S3: `<rootdirectory>/scheduler-state.json`).
 */
function schedulerState(config: Config, driver: StorageDriver): { statePath: string; store?: StateStore } {
  const root = config.storage.filesystem?.rootdirectory;
  if (root !== undefined) return { statePath: join(root, SCHEDULER_STATE_PATH) };
  return { statePath: `${driver.name}:${SCHEDULER_STATE_PATH}`, store: new DriverStateStore(driver, SCHEDULER_STATE_PATH) };
}
