/**
 * The router of everything under `/v2`, as distribution's `registry/handlers/app.go` dispatches:
 * the route-name table finds the route, the client's access is checked, the repository's stores are
 * found, and the route's method table for those stores answers. A method table has the write
 * methods only when the target is writable (a hosted repository), so every other method is
 * `405 UNSUPPORTED` without a handler having to say so. The reads of `/v2/`, manifests and blobs
 * are the hot path's `serveRead` (lib/api/hot-path.ts), whichever way they come.
 */
import express, { type NextFunction, type Request, type Response, type Router } from 'express';
import { RegistryError } from './errors.js';
import { authorize } from './authorize.js';
import { apiVersionHeader } from './messages.js';
import type { MethodTable, Resource, RouteServices, Target } from './resource.js';
import { requestState } from './request-state.js';
import { hotRoute, matchRoute, rawPath, resolveTarget, serveRead, type RouteName } from './hot-path.js';
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
 * The hot routes (`GET`/`HEAD` of `/v2/`, a manifest or a blob) answered ahead of the express router,
 * from one middleware mounted at the application's root: no nested router, no `baseUrl` rewriting,
 * no further layers. The server's listener answers them before express (lib/api/hot-path.ts); this
 * is the express application's own way for them (when it is used alone, or for a request the hot
 * path leaves to it). Any other request goes on to `registryRouter`. `prefix` is `http.prefix`
 * without its trailing slash.
 */
export function hotRoutes(services: RouteServices, prefix: string) {
  return (req: Request, res: Response, next: NextFunction): void => {
    const match = hotRoute(req, prefix);
    if (!match) return next();
    apiVersionHeader(req, res, () => undefined);
    serveRead(services, req, res, match, req.query.ns).catch(next);
  };
}

async function dispatch(s: RouteServices, req: Request, res: Response): Promise<void> {
  const path = rawPath(req.url);
  const match = matchRoute(path);
  if (!match) throw new RegistryError('NAME_UNKNOWN', { status: 404, message: 'repository name not known to registry', detail: { path } });
  const { route, groups } = match;
  // The reads of `/v2/`, manifests and blobs: the hot path's, whatever way they come.
  if (isRead(req.method) && (route.name === 'base' || route.name === 'manifest' || route.name === 'blob')) return serveRead(s, req, res, match, req.query.ns);
  if (route.subject) requestState(res).subject = route.subject;
  let target: Target | undefined;
  if (route.name === 'base' || route.name === 'catalog') {
    if (s.access) await authorize(s.access, s.logger, req, res, route.name);
  } else target = await resolveTarget(s, req, res, groups[1]!, req.query.ns);
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
