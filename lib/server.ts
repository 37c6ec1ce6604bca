/**
 * `registry serve`: the HTTP side in front of the registry's services (lib/registry-services.ts
 * builds storage, upstreams, proxy stores, schedule and size cap). This module builds the hosted
 * repositories' write side, the express app (access log, metrics, configured headers, health gate,
 * cache page, the `/v2/` router, the error handler), the listener (lib/http-listener.ts) and the
 * debug server, and shuts it all down gracefully; a start that fails half-way stops what it started.
 */
import type { Socket } from 'node:net';
import express, { type Express } from 'express';
import type { Counter } from 'prom-client';
import type { Logger } from 'winston';
import { createServer, listen } from './http-listener.js';
import type { Config } from './config/types.js';
import { listRepositories } from './storage/catalog.js';
import { hotRoutes, registryRouter, type RouteServices, type Target } from './api/router.js';
import { authorize } from './api/authorize.js';
import { configuredHeaders } from './api/headers.js';
import { createWritable } from './api/writable.js';
import { errorHandler, sendError } from './api/error-handler.js';
import { RegistryError } from './api/errors.js';
import { accessLog, responseComplete, whenDone } from './api/access-log.js';
import { gatherCacheReport, pageQuery, type CacheReportSources } from './api/cache-report.js';
import { sendCachePage, wantsHtml } from './api/cache-page.js';
import { UnsupportedConfigError } from './errors.js';
import type { AccessController } from './auth/access.js';
import { createAccessController } from './auth/controller.js';
import type { Metrics } from './metrics/metrics.js';
import { startDebugServer } from './metrics/debug-server.js';
import { HealthChecks } from './health/health-checks.js';
import { HostedRepositories, isHostedName } from './hosted/hosted.js';
import type { ProxyNamespace } from './proxy/namespace.js';
import { createServices, type RegistryServices } from './registry-services.js';
import { requestTracing } from './tracing/tracing.js';

/** A running registry. */
export interface RunningRegistry {
  /** The bound address (`host:port`, or the socket path for `unix`). */
  readonly address: string;
  readonly port: number | undefined;
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
    throw new UnsupportedConfigError(
      'this registry runs as a pull-through cache: set proxy.remoteurl (or REGISTRY_PROXY_REMOTEURL) to the upstream registry',
    );
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
    for (const stop of started.reverse()) await Promise.resolve().then(stop).catch(() => undefined);
    throw err;
  }
}

async function serve(config: Config, logger: Logger, services: RegistryServices, access: AccessController | undefined, started: Array<() => unknown>): Promise<RunningRegistry> {
  const { metrics, router } = services;
  const canonical = canonicalNames(services, config.proxy!.hosted.length > 0 ? (name) => isHostedName(config.proxy!.hosted, name) : () => false);
  // Extension `proxy.hosted`: names pushed to and served here, never asked of an upstream.
  const hosted = config.proxy!.hosted.length > 0 ? hostedRepositories(config, services, access, logger, canonical) : undefined;
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.set('query parser', 'simple');
  // A server span per request, when tracing is on (lib/tracing): none of its cost otherwise.
  const traced = requestTracing();
  if (traced) app.use(traced);
  if (!config.log.accesslog.disabled) app.use(accessLog(logger));
  const headers = configuredHeaders(config.http.headers);
  // As distribution's health.Handler: while a configured check fails, every request is refused.
  const health = HealthChecks.fromConfig(config.health, services.driver);
  health.start();
  started.push(() => health.stop());
  // Metrics, the configured headers and the health gate in one layer: every request needs them,
  // and each express layer costs the hot routes a match and a `next`.
  app.use((req, res, next) => {
    const stop = metrics.httpDuration.startTimer();
    whenDone(res, () => {
      const route = (res.locals.subject as string | undefined) ?? 'other';
      stop({ route, method: req.method, status: String(res.statusCode) });
      const served = responseComplete(res) && req.method === 'GET' && (res.statusCode === 200 || res.statusCode === 206);
      if ((route === 'blob' || route === 'manifest') && served) {
        metrics.servedBytes.inc({ type: route }, Number(res.getHeader('content-length') ?? 0));
      }
    });
    headers(req, res, () => undefined);
    if (health.size > 0 && Object.keys(health.failures()).length > 0) {
      sendError(res, new RegistryError('UNAVAILABLE', { detail: 'health check failed: please see /debug/health' }));
      return;
    }
    next();
  });
  const prefix = config.http.prefix.replace(/\/$/, '');
  const report = cacheReportSources(config, services);
  const routeServices: RouteServices = {
    listRepositories: (page) => listRepositories(services.driver, page),
    resolve: (name, ns) => {
      const found = canonical(name, ns);
      if (found === undefined) return undefined;
      if ('refused' in found) throw new RegistryError('NAME_UNKNOWN', { detail: { name, ns, reason: found.refused } });
      // Hosted repositories are stored under the name the client uses.
      const stores = found.namespace ? storesOf(found.namespace) : hosted!.target;
      return { name: found.name, storedName: found.storedName, ...stores };
    },
    maxCatalogEntries: config.catalog.maxentries,
    maxTags: config.tags.maxtags,
    logger,
    access,
    events: services.notifier.active ? { notifier: services.notifier, host: config.http.host, prefix } : undefined,
  };
  app.use(hotRoutes(routeServices, prefix));
  app.get(prefix + '/', (req, res, next) => {
    // distribution answers the root with an empty 200 (load balancers probe it); browsers get the
    // cache page, behind the same credentials as the catalog.
    if (!config.http.cachepage || !wantsHtml(req)) {
      res.status(200).end();
      return;
    }
    authorize({ access, logger }, req, res, 'catalog')
      .then(() => gatherCacheReport(report, pageQuery(req.query)))
      .then((r) => sendCachePage(res, r), next);
  });
  app.use(prefix || '/', registryRouter(routeServices));
  app.use((req, res) => sendError(res, new RegistryError('NAME_UNKNOWN', { detail: { path: req.path } })));
  app.use(errorHandler(logger));

  const server = createServer(config.http, app);
  const sockets = new Set<Socket>();
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  const { address, port } = await listen(server, config.http);
  started.push(() => new Promise((resolve) => server.close(resolve)));
  logger.info(`listening on ${address}`);
  const debug = config.http.debug?.addr
    ? await startDebugServer({
        addr: config.http.debug.addr,
        metrics,
        prometheus: config.http.debug.prometheus,
        health,
      })
    : undefined;
  hosted?.repositories.start();
  if (debug) logger.info(`debug server listening on ${config.http.debug!.addr} (port ${debug.port})`);
  const inflightTimer = setInterval(() => metrics.inflightFetches.set(router.all.reduce((sum, n) => sum + n.blobs.inflight, 0)), 1000);
  inflightTimer.unref();

  let closing: Promise<void> | undefined;
  return {
    address,
    port,
    app,
    metrics,
    debugPort: debug?.port,
    close: () =>
      (closing ??= (async () => {
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        // Idle keep-alive connections would hold `close` open forever; busy ones finish their response.
        server.closeIdleConnections();
        // The background work (start-up walk, expiries, evictions, upload purging) ends now: none of
        // it may keep a stop waiting, and what requests still schedule is written below.
        const halted = Promise.all([services.halt(), hosted?.repositories.stop()]);
        // Busy connections get `http.draintimeout`, then are cut: the drain is bounded whatever
        // the clients do (a slow download, a cold fetch from a slow upstream).
        const timer = setTimeout(() => sockets.forEach((s) => s.destroy()), config.http.draintimeoutms);
        // A keep-alive connection whose response ends during the drain is idle from then on: closed
        // at once, not held until the drain's end.
        const idle = setInterval(() => server.closeIdleConnections(), 50);
        await closed;
        clearTimeout(timer);
        clearInterval(idle);
        await halted;
        clearInterval(inflightTimer);
        health.stop();
        await debug?.close();
        await services.close();
      })()),
  };
}

/** The hosted repositories and the target (stores and write side) every hosted name is served with. */
function hostedRepositories(
  config: Config,
  services: RegistryServices,
  access: AccessController | undefined,
  logger: Logger,
  canonical: CanonicalNames,
): { repositories: HostedRepositories; target: Omit<Target, 'name' | 'storedName'> } {
  const { driver, blobs, repository } = services;
  const purging = config.storage.maintenance.uploadpurging;
  const repositories = new HostedRepositories({ prefixes: config.proxy!.hosted, driver, blobs, repository, purging: purging.enabled ? purging : undefined, indexes: config.validation.indexes, logger });
  const writable = createWritable(repositories, {
    access,
    anonymousPush: config.proxy!.hostedanonymouspush,
    deleteEnabled: config.storage.delete.enabled,
    readOnly: config.storage.maintenance.readonly.enabled,
    secret: config.http.secret,
    storedName: (name) => {
      const found = canonical(name, undefined);
      return found && 'storedName' in found ? found.storedName : undefined;
    },
    logger,
  });
  return { repositories, target: { manifests: repositories.manifests, blobs: repositories.blobs, tags: repositories.tags, referrers: repositories.referrers, writable } };
}

/** A client's repository name resolved once: where it is served from and the one name it is stored under; or why it is refused. */
type Canonical =
  /** `namespace`: the upstream's; none for a hosted name. */
  | { readonly name: string; readonly storedName: string; readonly namespace?: ProxyNamespace }
  | { readonly refused: string };

/** Resolves a client's (valid) name and `ns` parameter; undefined: no upstream for that `ns`. */
type CanonicalNames = (name: string, ns: string | undefined) => Canonical | undefined;

/**
 * The one resolution of a client's name that the hosted check, authorization, mounts and storage
 * all use: a hosted name as written; else the upstream's, stored under its namespace's prefix. A
 * proxied spelling whose stored name is hosted (`docker.io/corp/app` for a hosted `corp/`,
 * `busybox` for a hosted `library/`) or belongs to another registry here is refused, so no name is
 * reached by a second spelling that skips the first one's rules.
 */
function canonicalNames(services: RegistryServices, isHosted: (name: string) => boolean): CanonicalNames {
  return (name, ns) => {
    if (isHosted(name)) return { name, storedName: name };
    const found = services.router.resolve(name, ns);
    if (!found) return undefined;
    if (found.conflict) return { refused: found.conflict };
    if (isHosted(found.storedName)) return { refused: `${found.storedName} is a hosted repository; name it as such` };
    return { name: found.name, storedName: found.storedName, namespace: found.namespace };
  };
}

function storesOf(n: ProxyNamespace): Omit<Target, 'name' | 'storedName'> {
  return { manifests: n.manifests, blobs: n.blobs, tags: n.tags, referrers: n.referrers };
}

/** Where the cache page's data comes from. */
function cacheReportSources(config: Config, s: RegistryServices): CacheReportSources {
  const { metrics } = s;
  return {
    listRepositories: (page) => listRepositories(s.driver, page),
    repository: s.repository,
    blobs: s.blobs,
    diskUsage: () => s.driver.diskUsage?.() ?? Promise.resolve(undefined),
    expiryOf: (repo, digest) => s.lifetime.expiryOf(repo, digest),
    lastPulled: (repo, digest) => s.sizeCap.lastPulled(repo, digest),
    upstreams: () => s.router.all.map((n) => ({ host: n.host, url: n.upstream.remoteUrl, ...n.upstream.status, rateLimitRemaining: s.rateLimits.get(n.host), budget: n.budget?.snapshot() })),
    stats: async () => {
      const sum = async (c: Counter<'type'>): Promise<number> => (await c.get()).values.reduce((n, v) => n + v.value, 0);
      return { requests: await sum(metrics.proxyRequests), hits: await sum(metrics.proxyHits), bytesServed: await sum(metrics.servedBytes), bytesFetched: await sum(metrics.fetchedBytes) };
    },
    counts: () => s.links.counts,
    cap: () => ({ cacheBytes: s.sizeCap.bytes, capBytes: s.policy.maxBytes }),
  };
}
