/**
 * The registry's services without its HTTP side: storage, the upstream namespaces with their proxy
 * stores, metrics, the expiry schedule and the size cap, wired together by one set of cache events.
 * `registry serve` puts routes and a listener in front of them (lib/server.ts); `registry warm`
 * calls the proxy stores directly, so what it caches is cached exactly as a pull caches it.
 */
import { join } from 'node:path';
import type { Logger } from 'winston';
import type { Config, UpstreamConfig } from './config/types.js';
import type { StorageDriver } from './storage/driver.js';
import { createDriver, createSharedLocks } from './storage/factory.js';
import type { SharedLocks } from './storage/shared-lock.js';
import { BlobStore } from './storage/blob-store.js';
import { driverStateStore, type StateStore } from './scheduler/state-file.js';
import { RepositoryStore } from './storage/repository-store.js';
import { ProxyNamespace, type NamespaceEvents } from './proxy/namespace.js';
import { NamespaceRouter } from './proxy/namespace-router.js';
import { registryHostOf } from './distribution/registry-host.js';
import { UnsupportedConfigError } from './errors.js';
import { CacheLifetime } from './scheduler/cache-lifetime.js';
import { SizeCap, startSizeCap } from './scheduler/size-cap.js';
import { Metrics } from './metrics/metrics.js';
import { decideCachePolicy, type CachePolicy } from './cache-policy.js';
import { SCHEDULER_STATE_PATH } from './storage/paths.js';

/** The running services of one registry process. */
export interface RegistryServices {
  readonly driver: StorageDriver;
  readonly blobs: BlobStore;
  /**
   * Locks shared with other processes on the same storage root (replicas, `registry warm`); none on
   * S3, where this process coordinates only its own requests.
   */
  readonly locks?: SharedLocks;
  /** The repository store of a stored name. */
  readonly repository: (name: string) => RepositoryStore;
  readonly metrics: Metrics;
  /** The cache's policies as decided from the configuration (TTLs, hosted names, the cap). */
  readonly policy: CachePolicy;
  /** The upstreams (`proxy.remoteurl` and `proxy.upstreams`) and their proxy stores. */
  readonly router: NamespaceRouter;
  /** The expiry schedule (`scheduler-state.json`), started. */
  readonly lifetime: CacheLifetime;
  /** The size accounting (enforcing `proxy.maxsize` when `policy.maxBytes` is set). */
  readonly sizeCap: SizeCap;
  /** For the cache page: when each `repo@digest` manifest was last served. */
  readonly lastPulled: Map<string, Date>;
  /** For the cache page: each upstream host's last `RateLimit-Remaining`. */
  readonly rateLimits: Map<string, string>;
  /** Stops the schedule (flushing `scheduler-state.json`) and closes the upstream connections. */
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
 * Builds the services described by `config`: removes temporary files an earlier run left, loads the
 * expiry schedule (running the expiries already due) and measures the cache for the size cap. Each
 * part is built after what it reports to, so no event can reach a part that does not exist yet;
 * a failure on the way stops what was started.
 */
export async function createServices(config: Config, logger: Logger, options: ServicesOptions = {}): Promise<RegistryServices> {
  if (!config.proxy) {
    throw new UnsupportedConfigError(
      'this registry runs as a pull-through cache: set proxy.remoteurl (or REGISTRY_PROXY_REMOTEURL) to the upstream registry',
    );
  }
  const proxy = config.proxy;
  const policy = decideCachePolicy(proxy, config.storage.delete.enabled, (msg) => logger.warn(msg));
  const driver = await createDriver(config.storage);
  // Housekeeping only: a store that cannot be reached now must not keep the registry from starting.
  const removed = await (driver.cleanup?.() ?? Promise.resolve(0)).catch((err: Error) => {
    logger.warn(`could not remove what earlier runs left in storage: ${err.message}`);
    return 0;
  });
  if (removed > 0) logger.info(`removed ${removed} unfinished temporary file(s) left by an earlier run`);
  const blobs = new BlobStore(driver, { redirect: !config.storage.redirect.disable });
  // Replicas on one volume coordinate through it: one fetch per blob, one expiry runner.
  const locks = createSharedLocks(config.storage, proxy.lockstalems, (key, err) =>
    logger.warn(`shared lock ${key} lost: ${err.message}; another replica may fetch the same content`),
  );
  const repository = (name: string): RepositoryStore => new RepositoryStore(driver, name);
  const metrics = new Metrics();

  const sizeCap = new SizeCap({
    driver,
    blobs,
    repository,
    maxBytes: policy.maxBytes ?? Number.POSITIVE_INFINITY,
    logger,
    exclude: policy.isHosted,
    onEvicted: (type, freed) => {
      metrics.evictions.inc({ type });
      metrics.evictedBytes.inc(freed);
    },
    onSize: (bytes) => metrics.cacheBytes.set(bytes),
  });
  const lifetime = new CacheLifetime({
    driver,
    blobs,
    repository,
    logger,
    ...schedulerState(config, driver),
    expires: policy.expires,
    ttlFor: policy.ttlFor,
    touchOnHit: policy.touchOnHit,
    locks,
    exclude: policy.isHosted,
    onExpired: (type, freed, digest) => {
      metrics.expirations.inc({ type });
      if (freed > 0) sizeCap.forget(digest);
    },
  });
  /** For the cache page: when each manifest was last served, and each upstream's rate-limit headroom. */
  const lastPulled = new Map<string, Date>();
  const rateLimits = new Map<string, string>();
  /** The same bookkeeping for both kinds of content and every upstream: metrics, expiry schedule, size cap. */
  const events: NamespaceEvents = {
    stored: (type, repo, digest, size) => {
      if (type === 'manifest') lastPulled.set(`${repo}@${digest.value}`, new Date());
      metrics.fetchedBytes.inc({ type }, size);
      lifetime.schedule(type, repo, digest.value);
      sizeCap.stored(type, repo, digest, size);
    },
    hit: (type, repo, digest) => {
      if (type === 'manifest') lastPulled.set(`${repo}@${digest.value}`, new Date());
      metrics.hit(type);
      lifetime.touch(type, repo, digest.value);
      sizeCap.hit(type, repo, digest);
    },
    miss: (type) => metrics.miss(type),
    cacheWriteFailed: (type, repo, digest, err) => {
      metrics.cacheWriteFailures.inc({ type });
      const code = (err as NodeJS.ErrnoException).code;
      logger.error(`cache write abandoned for ${type} ${repo}@${digest.value}: ${err.message}; the client is served from the upstream`, {
        'err.code': code,
      });
    },
    manifestRefused: (repo, reference, reason, detail) => {
      metrics.manifestsRefused.inc({ reason });
      logger.warn(`upstream manifest ${repo}${reference.includes(':') ? '@' : ':'}${reference} refused as unverified (${reason}), nothing stored: ${detail}`);
    },
  };
  const namespace = (host: string, upstreamConfig: UpstreamConfig, isDefault: boolean): ProxyNamespace =>
    new ProxyNamespace({
      host,
      isDefault,
      config: upstreamConfig,
      timeouts: { connect: proxy.timeouts.connectms, response: proxy.timeouts.responsems, idle: proxy.timeouts.idlems },
      driver,
      blobs,
      repository,
      events,
      locks,
      fetchAhead: options.fetchAhead ?? true,
      onWarning: (msg) => logger.warn(msg),
      onResponse: ({ host: from, method, path, status, headers }) => {
        logger.debug(`upstream ${from} ${method} ${path} ${status}`);
        metrics.upstreamResponses.inc({ method, status: String(status) });
        const remaining = headers['ratelimit-remaining'];
        if (typeof remaining === 'string') {
          // Docker Hub sends `RateLimit-Remaining: 76;w=21600`.
          const left = Number(remaining.split(';')[0]);
          if (Number.isFinite(left)) metrics.rateLimitRemaining.set(left);
          rateLimits.set(from, remaining);
          logger.info(`upstream ${from} rate limit remaining: ${remaining}`, { 'ratelimit.limit': headers['ratelimit-limit'] });
        }
      },
    });
  const router = new NamespaceRouter(
    namespace(registryHostOf(proxy.remoteurl), proxy, true),
    Object.entries(proxy.upstreams).map(([host, u]) => namespace(host, u, false)),
  );
  for (const n of router.others) logger.info(`upstream ${n.host}: ${n.upstream.remoteUrl}, cached under ${n.storagePrefix}`);
  const close = async (): Promise<void> => {
    await lifetime.stop();
    for (const n of router.all) n.close();
  };
  try {
    // Expiries due at start-up run first, and the cap measures after them.
    const loaded = await lifetime.start();
    if (loaded.problem) logger.warn(`scheduler state: ${loaded.problem}`);
    await startSizeCap(sizeCap, logger);
  } catch (err) {
    await close().catch(() => undefined);
    throw err;
  }

  let closing: Promise<void> | undefined;
  return {
    driver,
    blobs,
    locks,
    repository,
    metrics,
    policy,
    router,
    lifetime,
    sizeCap,
    lastPulled,
    rateLimits,
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
  return { statePath: `${driver.name}:${SCHEDULER_STATE_PATH}`, store: driverStateStore(driver, SCHEDULER_STATE_PATH) };
}
