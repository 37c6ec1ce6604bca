/**
 * The request listener of `registry serve`: the hot path (lib/api/hot-path.ts: `GET`/`HEAD` of
 * `/v2/`, manifests and blobs at the `node:http` level) in front of the express application. The
 * application, in the order a request meets it: a tracing span, the access log, one front layer
 * (metrics, `http.headers`, the health gate; lib/api/hot-path.ts), the hot routes (the same reads,
 * for what reaches express), the root (empty 200, or the cache page for a browser), the `/v2/`
 * router, `404 NAME_UNKNOWN` for anything else, and the error handler.
 */
import type { RequestListener } from 'node:http';
import express, { type Express } from 'express';
import type { Logger } from 'winston';
import { requestTracing } from '../tracing/tracing.js';
import { hotRoutes, registryRouter } from './router.js';
import { frontLayer, hotPath, type FrontOptions } from './hot-path.js';
import type { RouteServices } from './resource.js';
import { authorize } from './authorize.js';
import { errorHandler, sendError } from './error-handler.js';
import { RegistryError } from './errors.js';
import { gatherCacheReport, pageQuery, type CacheReportSources } from './cache-report.js';
import { sendCachePage, wantsHtml } from './cache-page.js';
import { accessLog } from './request-state.js';

/** What the application is built from. */
export interface AppOptions extends FrontOptions {
  readonly routes: RouteServices;
  /** `http.prefix` without its trailing slash. */
  readonly prefix: string;
  /** False with `log.accesslog.disabled`. */
  readonly accessLog: boolean;
  /** `http.cachepage`: where its data comes from; undefined: the root is an empty 200 for everyone. */
  readonly cachePage?: CacheReportSources;
  readonly logger: Logger;
}

/** The server's listener (the hot path, then `app`) and the express application behind it. */
export function registryListener(options: AppOptions): { readonly listener: RequestListener; readonly app: Express } {
  const app = registryApp(options);
  return { listener: hotPath(options, app), app };
}

/** Builds the express application (every route; behind the hot path in the server). */
function registryApp(options: AppOptions): Express {
  const { routes, prefix, logger } = options;
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.set('query parser', 'simple');
  // A server span per request, when tracing is on (lib/tracing): none of its cost otherwise.
  const traced = requestTracing();
  if (traced) app.use(traced);
  if (options.accessLog) app.use(accessLog(logger));
  app.use(frontLayer(options));
  app.use(hotRoutes(routes, prefix));
  const cachePage = options.cachePage;
  app.get(prefix + '/', (req, res, next) => {
    // distribution answers the root with an empty 200 (load balancers probe it); browsers get the
    // cache page, behind the same credentials as the catalog.
    if (!cachePage || !wantsHtml(req)) {
      res.status(200).end();
      return;
    }
    (routes.access ? authorize(routes.access, routes.logger, req, res, 'catalog') : Promise.resolve())
      .then(() => gatherCacheReport(cachePage, pageQuery(req.query)))
      .then((r) => sendCachePage(res, r), next);
  });
  app.use(prefix || '/', registryRouter(routes));
  app.use((req, res) => sendError(res, new RegistryError('NAME_UNKNOWN', { detail: { path: req.path } })));
  app.use(errorHandler(logger));
  return app;
}
