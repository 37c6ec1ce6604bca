/**
 * The router of everything under `/v2`, as distribution's `registry/handlers/app.go` dispatches:
 * the route-name table finds the route, the client's access is checked, the repository's stores are
 * found, and the route's method table for those stores answers. A method table has the write
 * methods only when the target is writable (a hosted repository), so every other method is
 * `405 UNSUPPORTED` without a handler having to say so.
 */
import express, { type NextFunction, type Request, type RequestHandler, type Response, type Router } from 'express';
import type { Metrics } from '../metrics/metrics.js';
import type { HealthChecks } from '../health/health-checks.js';
import { isValidName } from '../distribution/reference.js';
import { RegistryError } from './errors.js';
import { authorize } from './authorize.js';
import { apiVersionHeader, configuredHeaders } from './headers.js';
import { sendError } from './error-handler.js';
import { matchRoute, type RouteMatch, type RouteName } from './route-names.js';
import type { MethodTable, Resource, RouteServices, Target } from './resource.js';
import { requestState, responseComplete, whenDone } from './request-state.js';
import { baseResource, catalogResource } from './handlers/base.js';
import { manifestResource } from './handlers/manifests.js';
import { blobResource } from './handlers/blobs.js';
import { tagsResource } from './handlers/tags.js';
import { referrersResource } from './handlers/referrers.js';
import { uploadChunkResource, uploadResource } from './handlers/uploads.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
const RESOURCES: Readonly<Record<RouteName, Resource<any>>> = {
  base: baseResource,
  catalog: catalogResource,
  'blob-upload': uploadResource,
  'blob-upload-chunk': uploadChunkResource,
  manifest: manifestResource,
  blob: blobResource,
  tags: tagsResource,
  referrers: referrersResource,
};

/** What the front layer works with. */
export interface FrontOptions {
  readonly metrics: Metrics;
  /** distribution's health checks: while one fails, every request is refused. */
  readonly health: HealthChecks;
  /** `http.headers`. */
  readonly headers: Readonly<Record<string, readonly string[]>>;
}

/**
 * Metrics, the configured headers and the health gate in one layer, ahead of everything (mounted
 * by lib/api/app.ts): every request needs them, and each express layer costs the hot routes a
 * match and a `next`. Here, beside `hotRoutes`, so that a hot request runs no module of its own for it.
 */
export function frontLayer({ metrics, health, headers: configured }: FrontOptions): RequestHandler {
  const headers = configuredHeaders(configured);
  return (req, res, next) => {
    const stop = metrics.httpDuration.startTimer();
    whenDone(res, () => {
      const route = requestState(res).subject ?? 'other';
      stop({ route, method: req.method, status: String(res.statusCode) });
      const served = responseComplete(res) && req.method === 'GET' && (res.statusCode === 200 || res.statusCode === 206);
      if ((route === 'blob' || route === 'manifest') && served) {
        metrics.servedBytes.inc({ type: route }, Number(res.getHeader('content-length') ?? 0));
      }
    });
    headers(req, res, () => undefined);
    // As distribution's health.Handler: while a configured check fails, every request is refused.
    if (health.size > 0 && Object.keys(health.failures()).length > 0) {
      sendError(res, new RegistryError('UNAVAILABLE', { detail: 'health check failed: please see /debug/health' }));
      return;
    }
    next();
  };
}

/** The router for everything under `/v2`. */
export function registryRouter(services: RouteServices): Router {
  const router = express.Router();
  router.use(apiVersionHeader);
  router.all(/.*/, (req, res, next) => {
    dispatch(services, req, res).catch(next);
  });
  return router;
}

/**
 * The hot routes (`GET`/`HEAD` of a manifest or a blob) answered ahead of the express router, from
 * one middleware mounted at the application's root: no nested router, no `baseUrl` rewriting, no
 * further layers. Any other request goes on to `registryRouter`, which answers it as before.
 * `prefix` is `http.prefix` without its trailing slash.
 */
export function hotRoutes(services: RouteServices, prefix: string) {
  const start = `${prefix}/v2/`;
  return (req: Request, res: Response, next: NextFunction): void => {
    if ((req.method !== 'GET' && req.method !== 'HEAD') || !req.url.startsWith(start)) return next();
    const match = matchRoute(rawPath(req).slice(prefix.length));
    if (!match || (match.route.name !== 'manifest' && match.route.name !== 'blob')) return next();
    apiVersionHeader(req, res, () => undefined);
    dispatchMatched(services, req, res, match).catch(next);
  };
}

async function dispatch(s: RouteServices, req: Request, res: Response): Promise<void> {
  const path = rawPath(req);
  const match = matchRoute(path);
  if (!match) throw new RegistryError('NAME_UNKNOWN', { status: 404, message: 'repository name not known to registry', detail: { path } });
  return dispatchMatched(s, req, res, match);
}

async function dispatchMatched(s: RouteServices, req: Request, res: Response, match: RouteMatch): Promise<void> {
  const { route, groups } = match;
  if (route.subject) requestState(res).subject = route.subject;
  let target: Target | undefined;
  if (route.name === 'base' || route.name === 'catalog') await authorize(s, req, res, route.name);
  else target = await resolveTarget(s, req, res, groups[1]!);
  const resource = RESOURCES[route.name];
  const methods = resource.methods(s, target);
  if (!methods) throw new RegistryError('UNSUPPORTED');
  // "May this client write" is asked here only, for every method that writes: before anything
  // else about an upload is looked at (as distribution's upload routes), for the other routes once
  // the path's parameters and the method are known to be served.
  const writes = isRead(req.method) ? undefined : target?.writable;
  const checkWrite = (): void => writes?.checkWrite(req, target!.name);
  if (resource.writesFirst) checkWrite();
  const params: unknown = resource.params(groups);
  const handler = Object.hasOwn(methods, req.method) ? methods[req.method as keyof MethodTable<unknown>] : undefined;
  if (!handler) throw new RegistryError('UNSUPPORTED');
  if (!resource.writesFirst) checkWrite();
  await handler(req, res, params);
}

/** True for the methods that only read. */
function isRead(method: string): boolean {
  return method === 'GET' || method === 'HEAD';
}

/** The request path without the prefix and query, as sent (not percent-decoded). */
function rawPath(req: Request): string {
  const url = req.url;
  const q = url.indexOf('?');
  return q < 0 ? url : url.slice(0, q);
}

/**
 * Validates the name, finds the stores that serve it and the name they store it under, and checks
 * the client's access to both spellings (`docker.io/org/app` is stored as `org/app`: a token for
 * one must not read the other's content).
 */
async function resolveTarget(s: RouteServices, req: Request, res: Response, raw: string): Promise<Target> {
  if (!isValidName(raw)) throw new RegistryError('NAME_INVALID', { detail: { name: raw } });
  const ns = req.query.ns;
  const resolved = ns === undefined || typeof ns === 'string' ? s.names.resolve(raw, ns) : undefined;
  const found = resolved && 'stores' in resolved ? resolved : undefined;
  // Access is checked before anything about the name is told, as distribution does.
  await authorize(s, req, res, 'repository', found && found.storedName !== raw ? [raw, found.storedName] : raw);
  // A spelling whose stored name is another's (hosted, or another registry's) is refused.
  if (resolved && 'refused' in resolved) throw new RegistryError('NAME_UNKNOWN', { detail: { name: raw, ns, reason: resolved.refused } });
  // Events name the repository as the client does (`busybox`, not the stored `library/busybox`).
  if (s.events) requestState(res).repository = raw;
  if (ns !== undefined && typeof ns !== 'string') throw new RegistryError('NAME_UNKNOWN', { detail: { ns } });
  if (!found) throw new RegistryError('NAME_UNKNOWN', { detail: { name: raw, ns, reason: 'this mirror has no upstream for that registry' } });
  // The hosted names share the one write side.
  return { name: found.name, storedName: found.storedName, ...found.stores, writable: found.hosted ? s.writable : undefined };
}
