/**
 * `registry serve`: the HTTP side in front of the registry's services (lib/services builds storage,
 * upstreams, proxy and hosted stores, schedule and size cap, and decides which stores serve a
 * name). This module adds the write side of hosted repositories, the express application
 * (lib/api/app.ts), the listener (lib/http-listener.ts), the health checks and the debug server, and
 * shuts it all down gracefully; a start that fails half-way stops what it started.
 */
import type { Express } from 'express';
import type { Counter } from 'prom-client';
import type { Logger } from 'winston';
import { startListener } from './http-listener.js';
import type { Config } from './config/types.js';
import { registryListener } from './api/app.js';
import { RouteEvents } from './api/events.js';
import type { RouteServices } from './api/resource.js';
import { createWritable } from './api/writable.js';
import type { CacheReportSources } from './api/cache-report.js';
import { UnsupportedConfigError } from './errors.js';
import type { AccessController } from './auth/access.js';
import { createAccessController } from './auth/controller.js';
import type { Metrics } from './metrics/metrics.js';
import { startDebugServer } from './metrics/debug-server.js';
import { HealthChecks } from './health/health-checks.js';
import { createServices, type RegistryServices } from './services/registry-services.js';

/** A running registry. */
export interface RunningRegistry {
  /** The bound address (`host:port`, or the socket path for `unix`). */
  readonly address: string;
  readonly port: number | undefined;
  /** The express application: every route (the listener answers the hot ones before it, lib/api/hot-path.ts). */
  readonly app: Express;
  readonly metrics: Metrics;
  /** The port of the `http.debug.addr` listener, when configured. */
  readonly debugPort: number | undefined;
  /**
   * Stops: no new connections, background work ended at once, in-flight responses given
   * `http.draintimeout` (then cut), then the schedule written.
   */
  close(): Promise<void>;
}

/** Starts the registry described by `config`. */
export async function startRegistry(config: Config, logger: Logger): Promise<RunningRegistry> {
  if (!config.proxy) {
    throw new UnsupportedConfigError('this registry runs as a pull-through cache: set proxy.remoteurl (or REGISTRY_PROXY_REMOTEURL) to the upstream registry');
  }
  const access = await createAccessController(config.auth, logger);
  if (config.proxy.username && !config.auth) {
    logger.warn(
      'proxy.username is set and no auth is configured: anything those upstream credentials can read is readable by anyone who can reach this mirror',
    );
  }
  const services = await createServices(config, logger);
  // What has started, stopped in reverse order if a later step fails (a port in use).
  const started: Array<() => unknown> = [() => services.close()];
  try {
    return await serve(config, logger, services, access, started);
  } catch (err) {
    for (const stop of started.reverse())
      await Promise.resolve()
        .then(stop)
        .catch(() => undefined);
    throw err;
  }
}

async function serve(
  config: Config,
  logger: Logger,
  services: RegistryServices,
  access: AccessController | undefined,
  started: Array<() => unknown>,
): Promise<RunningRegistry> {
  const { metrics, router, hosted } = services;
  const prefix = config.http.prefix.replace(/\/$/, '');
  // As distribution's health.Handler: while a configured check fails, every request is refused.
  const health = HealthChecks.fromConfig(config.health, services.driver);
  health.start();
  started.push(() => health.stop());
  const { listener: handler, app } = registryListener({
    routes: routeServices(config, services, access, logger, prefix),
    prefix,
    metrics,
    health,
    headers: config.http.headers,
    accessLog: !config.log.accesslog.disabled,
    cachePage: config.http.cachepage ? cacheReportSources(services) : undefined,
    logger,
  });
  const listener = await startListener(config.http, handler);
  started.push(() => listener.drain());
  logger.info(`listening on ${listener.address}`);
  const debug = config.http.debug?.addr
    ? await startDebugServer({ addr: config.http.debug.addr, metrics, prometheus: config.http.debug.prometheus, health })
    : undefined;
  hosted?.start();
  // After `listen`: the index's thread and its first pass never delay the first answer.
  services.startCatalog();
  // Likewise the upstream clients' modules: loaded now rather than on the first cold request.
  setImmediate(() => {
    for (const ns of router.all) ns.upstream.preload();
  }).unref();
  if (debug) logger.info(`debug server listening on ${config.http.debug!.addr} (port ${debug.port})`);
  const inflightTimer = setInterval(() => metrics.inflightFetches.set(router.all.reduce((sum, n) => sum + n.blobs.inflight, 0)), 1000);
  inflightTimer.unref();

  let closing: Promise<void> | undefined;
  return {
    address: listener.address,
    port: listener.port,
    app,
    metrics,
    debugPort: debug?.port,
    close: () =>
      (closing ??= (async () => {
        const drained = listener.drain();
        // The background work (start-up walk, expiries, evictions, upload purging) ends now: none of
        // it may keep a stop waiting, and what requests still schedule is written below.
        const halted = Promise.all([services.halt(), hosted?.stop()]);
        await drained;
        await halted;
        clearInterval(inflightTimer);
        health.stop();
        await debug?.close();
        await services.close();
      })()),
  };
}

/** What the routes serve from: the stores `services.names` finds for a name, with the write side for hosted ones. */
function routeServices(config: Config, services: RegistryServices, access: AccessController | undefined, logger: Logger, prefix: string): RouteServices {
  const { names } = services;
  // Extension `proxy.hosted`: names pushed to and served here, never asked of an upstream.
  const writable = services.hosted
    ? createWritable(services.hosted, {
        access,
        anonymousPush: config.proxy!.hostedanonymouspush,
        deleteEnabled: config.storage.delete.enabled,
        readOnly: config.storage.maintenance.readonly.enabled,
        secret: config.http.secret,
        storedName: (name) => names.storedName(name),
        logger,
      })
    : undefined;
  return {
    listRepositories: (page) => services.catalog(page),
    names,
    writable,
    maxCatalogEntries: config.catalog.maxentries,
    maxTags: config.tags.maxtags,
    logger,
    access,
    events: services.notifier.active ? new RouteEvents(services.notifier, config.http.host, prefix) : undefined,
  };
}

/** Where the cache page's data comes from. */
function cacheReportSources(s: RegistryServices): CacheReportSources {
  const { metrics } = s;
  return {
    listRepositories: (page) => s.catalog(page),
    repository: s.repository,
    blobs: s.blobs,
    diskUsage: () => s.driver.diskUsage?.() ?? Promise.resolve(undefined),
    expiryOf: (repo, digest) => s.lifetime.expiryOf(repo, digest),
    lastPulled: (repo, digest) => s.sizeCap.lastPulled(repo, digest),
    upstreams: () =>
      s.router.all.map((n) => ({
        host: n.host,
        url: n.upstream.remoteUrl,
        ...n.upstream.status,
        rateLimitRemaining: s.rateLimits.get(n.host),
        budget: n.budget?.snapshot(),
      })),
    stats: async () => {
      const sum = async (c: Counter<'type'>): Promise<number> => (await c.get()).values.reduce((n, v) => n + v.value, 0);
      return {
        requests: await sum(metrics.proxyRequests),
        hits: await sum(metrics.proxyHits),
        bytesServed: await sum(metrics.servedBytes),
        bytesFetched: await sum(metrics.fetchedBytes),
      };
    },
    counts: () => s.links.counts,
    cap: () => ({ cacheBytes: s.sizeCap.bytes, capBytes: s.policy.maxBytes }),
  };
}
