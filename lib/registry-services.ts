/**
 * The registry's services without its HTTP side: storage, the upstream namespaces with their proxy
 * stores, metrics, the expiry schedule and the size cap, wired together by one set of cache events.
 * `registry serve` puts routes and a listener in front of them (lib/server.ts); `registry warm`
 * calls the proxy stores directly, so what it caches is cached exactly as a pull caches it.
 */
import { join } from 'node:path';
import type { Logger } from 'winston';
import type { Config, RedisConfig, UpstreamConfig } from './config/types.js';
import type { StorageDriver } from './storage/driver.js';
import { createDriver, createSharedLocks } from './storage/factory.js';
import type { SharedLocks } from './storage/shared-lock.js';
import { BlobStore } from './storage/blob-store.js';
import { DescriptorCache, invalidatingDriver } from './storage/descriptor-cache.js';
import { DriverStateStore, type StateStore } from './scheduler/state-store.js';
import type { RepositoryStore } from './storage/repository-store.js';
import { ProxyNamespace, type NamespaceEvents } from './proxy/namespace.js';
import { NamespaceRouter } from './proxy/namespace-router.js';
import { registryHostOf } from './distribution/registry-host.js';
import { StoppingError, UnsupportedConfigError } from './errors.js';
import { CacheLifetime } from './scheduler/cache-lifetime.js';
import { SizeCap } from './scheduler/size-cap.js';
import { LinkIndex, ObservedRepositoryStore, walkLinks } from './scheduler/link-index.js';
import { listRepositories } from './storage/catalog.js';
import { Metrics } from './metrics/metrics.js';
import { decideCachePolicy, decideTagPolicy, type CachePolicy } from './cache-policy.js';
import { isCharged } from './proxy/budget.js';
import { SCHEDULER_LEASE_KEY, SCHEDULER_STATE_PATH } from './storage/paths.js';
import type { RedisConnection } from './coordination/redis-connection.js';
import { formatRate } from './proxy/overtake.js';
import { BlobFetchStoppedError } from './proxy/blob-fetch.js';
import { Notifier } from './notifications/notifier.js';
import { reportingListener } from './notifications/reporting.js';

/** How often temporary files of processes that died are looked for while serving. */
const TEMP_CLEANUP_INTERVAL_MS = 60_000;

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
  /** The size accounting (enforcing `proxy.maxsize` when `policy.maxBytes` is set), and the manifests' last pulls. */
  readonly sizeCap: SizeCap;
  /** Which repositories link each digest (complete once the start-up walk is done). */
  readonly links: LinkIndex;
  /** Settles when the background start-up work (schedule load, walk of the storage) is done. */
  readonly started: Promise<void>;
  /** For the cache page: each upstream host's last `RateLimit-Remaining`. */
  readonly rateLimits: Map<string, string>;
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
 * the background (removing what earlier runs left, loading the expiry schedule, one walk of the
 * storage for the link index and the size cap's measure), so requests never wait for it. Each
 * part is built after what it reports to, so no event can reach a part that does not exist yet.
 */
export async function createServices(config: Config, logger: Logger, options: ServicesOptions = {}): Promise<RegistryServices> {
  if (!config.proxy) {
    throw new UnsupportedConfigError(
      'this registry runs as a pull-through cache: set proxy.remoteurl (or REGISTRY_PROXY_REMOTEURL) to the upstream registry',
    );
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
  const driver = invalidatingDriver(await createDriver(config.storage), descriptors);
  // Housekeeping only, in the background: it removes what dead processes left, never this one's,
  // and a store that cannot be reached now must not keep the registry from starting.
  void (driver.cleanup?.() ?? Promise.resolve(0)).then(
    (removed) => void (removed > 0 && logger.info(`removed ${removed} unfinished temporary file(s) left by an earlier run`)),
    (err: Error) => void logger.warn(`could not remove what earlier runs left in storage: ${err.message}`),
  );
  // And while serving: a replica on the volume may die any time (its pid then reused, or a zombie).
  const janitor = setInterval(() => {
    driver.cleanup?.().then(
      (n) => n > 0 && logger.info(`removed ${n} temporary file(s) of processes that died`),
      (err: Error) => logger.warn(`could not remove temporary files of dead processes: ${err.message}`),
    );
  }, TEMP_CLEANUP_INTERVAL_MS);
  janitor.unref();
  const blobs = new BlobStore(driver, { redirect: !config.storage.redirect.disable });
  // Every link made or removed through the stores is known to the index.
  const links = new LinkIndex();
  // Hosted pushes of another process are in no journal: a deletion asks those repositories too.
  const hosted = proxy.hosted;
  const unindexed =
    hosted.length > 0
      ? () => listRepositories(driver, { within: (path) => hosted.some((p) => p.startsWith(path) || path.startsWith(p)) }).then((names) => names.filter(policy.isHosted))
      : undefined;
  const metrics = new Metrics();
  const notifier = new Notifier(config.notifications, config.http.addr, reportingListener(metrics, logger));
  for (const e of config.notifications.endpoints) {
    logger.info(e.disabled ? `notifications: endpoint ${e.name} disabled, skipping` : `notifications: endpoint ${e.name} (${e.url}), timeout ${e.timeoutms} ms, at most ${e.queuelimit} events queued`);
  }
  const lockLost = (key: string, err: Error): void => void logger.warn(`shared lock ${key} lost: ${err.message}; another replica may fetch the same content`);
  // Replicas coordinate through Redis when it is configured (any storage), else through the
  // volume's lock directories (filesystem), else not at all (S3 without Redis: one replica).
  const redis = config.redis && (await connectRedis(config.redis, metrics, logger));
  const locks: SharedLocks | undefined = redis ? await redisLocks(redis, proxy.lockstalems, metrics, logger, lockLost) : createSharedLocks(config.storage, proxy.lockstalems, lockLost);
  const repository = (name: string): RepositoryStore => new ObservedRepositoryStore(driver, name, links);

  const sizeCap = new SizeCap({
    driver,
    blobs,
    repository,
    links,
    unindexed,
    maxBytes: policy.maxBytes ?? Number.POSITIVE_INFINITY,
    logger,
    signal,
    exclude: policy.isHosted,
    onEvicted: (type, freed, repo, digest) => {
      metrics.evictions.inc({ type });
      metrics.evictedBytes.inc(freed);
      notifier.cache('evicted', type, repo, digest, undefined);
    },
    onSize: (bytes) => metrics.cacheBytes.set(bytes),
    // Replicas: one cache-wide figure, kept and enforced by the scheduler-lease holder alone.
    evicts: () => lifetime.runsForAll,
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
    links,
    unindexed,
    signal,
    onExpired: (type, freed, digest, repo) => {
      metrics.expirations.inc({ type });
      sizeCap.expired(repo, digest, freed);
      notifier.cache('evicted', type, repo, digest, undefined);
    },
    // A replica taking the lease over enforces the cap at once (its own figure may be over it).
    onLeaseTaken: () => void sizeCap.enforce(),
    onLearnt: (type, repo, digest, renewed) =>
      void sizeCap.learnt(type, repo, digest, renewed).catch((err: Error) => logger.warn(`size cap: measuring ${repo}@${digest.value} failed: ${err.message}`)),
  });
  /** For the cache page: each upstream's rate-limit headroom. */
  const rateLimits = new Map<string, string>();
  /** The same bookkeeping for both kinds of content and every upstream: metrics, expiry schedule, size cap. */
  const events: NamespaceEvents = {
    stored: (type, repo, digest, size) => {
      metrics.fetchedBytes.inc({ type }, size);
      lifetime.schedule(type, repo, digest.value);
      sizeCap.stored(type, repo, digest, size);
      notifier.cache('cached', type, repo, digest, size);
    },
    hit: (type, repo, digest) => {
      metrics.hit(type);
      lifetime.touch(type, repo, digest.value);
      sizeCap.hit(type, repo, digest);
    },
    miss: (type) => metrics.miss(type),
    cacheWriteFailed: (type, repo, digest, err) => {
      metrics.cacheWriteFailures.inc({ type });
      if (err instanceof BlobFetchStoppedError) {
        logger.warn(`cache write abandoned for ${type} ${repo}@${digest.value}: ${err.message}`);
        return;
      }
      const code = (err as NodeJS.ErrnoException).code;
      logger.error(`cache write abandoned for ${type} ${repo}@${digest.value}: ${err.message}; the client is served from the upstream`, {
        'err.code': code,
      });
    },
    checkSkipped: (_repo, _tag, reason) => metrics.tagChecksSkipped.inc({ reason }),
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
      exec: isDefault ? proxy.exec : undefined,
      timeouts: { connect: proxy.timeouts.connectms, response: proxy.timeouts.responsems, idle: proxy.timeouts.idlems },
      driver,
      blobs,
      repository,
      events,
      locks,
      descriptors,
      overtake: { minBytesPerSecond: proxy.overtake.minratebytes, afterMs: proxy.overtake.afterms },
      cacheWriteTimeoutMs: proxy.cachewritetimeoutms,
      onBlobRace: (repo, digest, event) => {
        const blob = `blob ${repo}@${digest.value}`;
        switch (event.kind) {
          case 'started':
            return logger.info(`${blob}: the upstream sends ${formatRate(event.rate)}, below proxy.overtake.minrate: racing a second connection from byte ${event.offset}`);
          case 'won':
          case 'lost':
            metrics.blobRaces.inc({ outcome: event.kind });
            return logger.info(
              `${blob}: the second connection ${event.kind} (${formatRate(event.racerRate)} against ${formatRate(event.rate)}); the ${event.kind === 'won' ? 'first' : 'second'} is cancelled`,
            );
          case 'failed':
            metrics.blobRaces.inc({ outcome: 'failed' });
            return logger.warn(`${blob}: a second upstream connection could not be used: ${event.error.message}`);
          case 'stopped':
            metrics.blobRaces.inc({ outcome: 'stopped' });
            return logger.warn(`${blob}: upstream fetch stopped: no client reads it and it crawls at ${formatRate(event.rate)}; the next request fetches it anew`);
        }
      },
      fetchAhead: options.fetchAhead ?? true,
      tagPolicy: decideTagPolicy(upstreamConfig),
      budget: {
        reserve: proxy.budget.reserve,
        recheckMs: proxy.budget.recheckms,
        onChange: (state, detail) => (state === 'ok' ? logger.info(`upstream ${host} rate-limit budget: ${detail}`) : logger.warn(`upstream ${host} rate-limit budget ${state}: ${detail}`)),
      },
      maxConnections: proxy.maxupstreamconns,
      onWarning: (msg) => logger.warn(msg),
      onResponse: ({ host: from, method, path, status, headers }) => {
        logger.debug(`upstream ${from} ${method} ${path} ${status}`);
        metrics.upstreamResponses.inc({ method, status: String(status) });
        // What Docker Hub charges: a manifest GET it answered; everything else is free.
        metrics.upstreamRequests.inc({ upstream: from, charged: String(isCharged(method, path) && status >= 200 && status < 300) });
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
  let halting: Promise<void> | undefined;
  let closing: Promise<void> | undefined;
  // In the background: the schedule loads (expiries then run as their data's links are known), then
  // one walk of the storage fills the link index and measures the cache for the size cap.
  const started = (async () => {
    const began = Date.now();
    const loaded = await lifetime.start();
    if (loaded.problem) logger.warn(`scheduler state: ${loaded.problem}`);
    if (loaded.loaded !== undefined) logger.info(`schedule loaded: ${loaded.loaded} entries in ${Date.now() - began} ms`);
    const walk = await walkLinks(
      driver,
      repository,
      async (repo, digest, type) => {
        links.linked(repo, digest.value);
        await sizeCap.found(repo, digest, type);
      },
      signal,
      async (name, repo) => links.tagsOf(name, { count: (await repo.tagNames()).length }),
    );
    links.markBuilt();
    logger.info(`cache walked: ${walk.repositories} repositories, ${walk.links} links`);
    await sizeCap.measuredAll();
  })().catch((err: Error) => {
    // The link index lives in memory only: the next start walks the cache again.
    if (err instanceof StoppingError) return void logger.info(`start-up work on the cache interrupted: ${err.message}`);
    logger.error(`start-up work on the cache failed: ${err.message}`);
  });
  const halt = async (): Promise<void> => {
    clearInterval(janitor);
    stopping.abort();
    await lifetime.halt();
    // Every step of it watches the signal: it ends at its next one.
    await started;
  };
  const close = async (): Promise<void> => {
    await (halting ??= halt());
    // Upstream connections first: a fetch that outlived the drain fails (its temporary file
    // removed) instead of committing content after the schedule's last write, unscheduled.
    for (const n of router.all) n.close();
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
    lifetime,
    sizeCap,
    links,
    started,
    rateLimits,
    notifier,
    halt: () => (halting ??= halt()),
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

/**
 * The connection to the cache's Redis, waited for up to `redis.dialtimeout` at start-up: the
 * replica starts without it too (serving its cache, fetching without coordination) and says so.
 * ioredis is loaded only when `redis:` is configured.
 */
async function connectRedis(config: RedisConfig, metrics: Metrics, logger: Logger): Promise<RedisConnection> {
  const { RedisConnection } = await import('./coordination/redis-connection.js');
  const where = config.sentinel ? `primary ${config.sentinel.mastername} (Sentinels ${config.sentinel.sentinels.map((n) => `${n.host}:${n.port}`).join(', ')})` : `${config.host}:${config.port}`;
  metrics.redisUp.set(0);
  const connection = new RedisConnection(config, {
    down: (reason) => {
      metrics.redisUp.set(0);
      logger.warn(`Redis ${where} unreachable (${reason}): serving the cache and fetching from the upstream without coordination across replicas until it answers again`);
    },
    up: () => {
      metrics.redisUp.set(1);
      logger.info(`Redis ${where} connected: replicas coordinate through it (one upstream fetch per blob, one expiry runner)`);
    },
  });
  await connection.ready(config.dialtimeoutms);
  return connection;
}

/** The replicas' locks as Redis leases; the expiry lease is never held without Redis. */
async function redisLocks(redis: RedisConnection, staleMs: number, metrics: Metrics, logger: Logger, lost: (key: string, err: Error) => void): Promise<SharedLocks> {
  const { RedisLocks } = await import('./coordination/redis-locks.js');
  return new RedisLocks(
    redis,
    staleMs,
    {
      compromised: lost,
      uncoordinated: (key, err) => {
        metrics.uncoordinated.inc();
        logger.debug(`${key}: fetched without coordination, Redis did not answer: ${err.message}`);
      },
    },
    (key) => key === SCHEDULER_LEASE_KEY,
  );
}
