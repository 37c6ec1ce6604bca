/**
 * The hot routes answered at the `node:http` level: `GET` and `HEAD` of `/v2/`, of a manifest and of
 * a blob (what a pull is made of) never enter express, whose per-request cost (its router, the
 * prototypes it swaps onto every request and response) is most of a warm manifest's. `hotPath`
 * recognises them (`hotRoute`) and runs, in express's order, what the application runs for them:
 * the tracing span, the access log, `frontLayer` (metrics, `http.headers`, the health gate), the
 * API version headers, `serveRead`, and on failure `handleError`. Everything else, and a hot route
 * whose URL express would parse otherwise (a `#`, whitespace), goes to the express application
 * unchanged.
 *
 * The route table of the `/v2/` API is here too (`matchRoute`, distribution's
 * `registry/api/v2/routes.go`): each route's name and path pattern, in the order they are tried.
 * Paths are matched on the raw (undecoded) URL; the name in a path is validated before anything
 * uses it, so percent-encoded tricks fail validation instead of naming another path.
 *
 * One decision, one place: the express router (lib/api/router.ts) calls the same `hotRoute`,
 * `frontLayer`, `serveRead` and `resolveTarget`, and the handlers' reads (`readManifest`,
 * `readBlob`, `sendEmpty`), so that both ways give the same answers (spec/hot-path.test.ts
 * compares them).
 */
import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import { parse as parseQuery } from 'node:querystring';
import type { Logger } from 'winston';
import type { Metrics } from '../metrics/metrics.js';
import type { HealthChecks } from '../health/health-checks.js';
import { isValidName } from '../distribution/reference.js';
import { requestTracing } from '../tracing/tracing.js';
import { RegistryError } from './errors.js';
import { authorize } from './authorize.js';
import { apiVersionHeader, configuredHeaders } from './messages.js';
import { handleError, sendError } from './error-handler.js';
import type { RouteServices, Target } from './resource.js';
import { peerAddress } from './events.js';
import { accessLog, requestState, responseComplete, whenDone, type Subject } from './request-state.js';
import { sendEmpty } from './handlers/base.js';
import { manifestResource, readManifest } from './handlers/manifests.js';
import { blobResource, readBlob } from './handlers/blobs.js';

/** The routes of the API, by distribution's route names. */
export type RouteName = 'base' | 'catalog' | 'blob-upload' | 'blob-upload-chunk' | 'manifest' | 'blob' | 'tags' | 'referrers';

/** One entry of the table. */
interface RouteEntry {
  readonly name: RouteName;
  /** Group 1 is the repository name for every route but `base` and `catalog`. */
  readonly pattern: RegExp;
  /** What an upstream 404 on this route means (the error handler picks `*_UNKNOWN` by it). */
  readonly subject?: Subject;
}

/** The table, in matching order (uploads before blobs: `/blobs/uploads/` is not a digest). */
const ROUTES: readonly RouteEntry[] = [
  { name: 'base', pattern: /^\/v2\/?$/ },
  { name: 'catalog', pattern: /^\/v2\/_catalog$/ },
  { name: 'blob-upload', pattern: /^\/v2\/(.+)\/blobs\/uploads\/?$/ },
  { name: 'blob-upload-chunk', pattern: /^\/v2\/(.+)\/blobs\/uploads\/(.+)$/ },
  { name: 'manifest', pattern: /^\/v2\/(.+)\/manifests\/([^/]+)$/, subject: 'manifest' },
  { name: 'blob', pattern: /^\/v2\/(.+)\/blobs\/([^/]+)$/, subject: 'blob' },
  { name: 'tags', pattern: /^\/v2\/(.+)\/tags\/list$/, subject: 'tags' },
  { name: 'referrers', pattern: /^\/v2\/(.+)\/referrers\/([^/]+)$/ },
];

/** A matched route and its path groups. */
export interface RouteMatch {
  readonly route: RouteEntry;
  readonly groups: RegExpExecArray;
}

/** The first route whose pattern matches `path` (without query), or undefined. */
export function matchRoute(path: string): RouteMatch | undefined {
  for (const route of ROUTES) {
    const groups = route.pattern.exec(path);
    if (groups) return { route, groups };
  }
  return undefined;
}

/** What the front layer works with. */
export interface FrontOptions {
  readonly metrics: Metrics;
  /** distribution's health checks: while one fails, every request is refused. */
  readonly health: HealthChecks;
  /** `http.headers`. */
  readonly headers: Readonly<Record<string, readonly string[]>>;
}

/** What the hot path is built from (a part of lib/api/app.ts's `AppOptions`). */
export interface HotPathOptions extends FrontOptions {
  readonly routes: RouteServices;
  /** `http.prefix` without its trailing slash. */
  readonly prefix: string;
  /** False with `log.accesslog.disabled`. */
  readonly accessLog: boolean;
  readonly logger: Logger;
}

type Next = () => void;

/**
 * Metrics, the configured headers and the health gate in one layer, ahead of everything: every
 * request needs them (mounted first by lib/api/app.ts, run by `hotPath` for the hot routes).
 */
export function frontLayer({ metrics, health, headers: configured }: FrontOptions): (req: IncomingMessage, res: ServerResponse, next: Next) => void {
  const headers = configuredHeaders(configured);
  // Checks are registered from the configuration before this layer is made: with none, no gate.
  const gate = health.size > 0 ? health : undefined;
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
    if (gate && Object.keys(gate.failures()).length > 0) {
      sendError(res, new RegistryError('UNAVAILABLE', { detail: 'health check failed: please see /debug/health' }));
      return;
    }
    next();
  };
}

/** Characters after which express parses a URL with `url.parse` (parseurl's slow path): not taken. */
const UNUSUAL_URL = /[\s#]/;

/**
 * The hot route a request asks for: `GET` or `HEAD` of `<prefix>/v2/`, a manifest or a blob, its
 * URL plain (no `#`, no whitespace: parsed alike by express and here); undefined for anything else.
 */
export function hotRoute(req: IncomingMessage, prefix: string): RouteMatch | undefined {
  const method = req.method;
  if (method !== 'GET' && method !== 'HEAD') return undefined;
  const url = req.url!;
  if (!url.startsWith('/v2', prefix.length) || !url.startsWith(prefix) || UNUSUAL_URL.test(url)) return undefined;
  const match = matchRoute(rawPath(url).slice(prefix.length));
  const name = match?.route.name;
  return name === 'manifest' || name === 'blob' || name === 'base' ? match : undefined;
}

/** The path of a URL without its query, as sent (not percent-decoded). */
export function rawPath(url: string): string {
  const q = url.indexOf('?');
  return q < 0 ? url : url.slice(0, q);
}

/** containerd's `ns` query parameter as express's `simple` query parser reads it (`querystring`). */
function nsOf(url: string): unknown {
  const q = url.indexOf('?');
  return q < 0 ? undefined : parseQuery(url.slice(q + 1)).ns;
}

/**
 * A hot route's read, as distribution's routes: the route's subject, the client's access (to the
 * registry for `/v2/`, to both spellings of a repository), the path's parameters, the answer.
 * `ns` is the query's `ns` parameter (`req.query.ns`).
 */
export async function serveRead(s: RouteServices, req: IncomingMessage, res: ServerResponse, match: RouteMatch, ns: unknown): Promise<void> {
  const { route, groups } = match;
  if (route.subject) requestState(res).subject = route.subject;
  if (route.name === 'base') {
    if (s.access) await authorize(s.access, s.logger, req, res, 'base');
    sendEmpty(req, res);
    return;
  }
  const target = await resolveTarget(s, req, res, groups[1]!, ns);
  if (route.name === 'manifest') await readManifest(s, req, res, target, manifestResource.params(groups));
  else await readBlob(s, req, res, target, blobResource.params(groups));
}

/**
 * Validates the name, finds the stores that serve it and the name they store it under, and checks
 * the client's access to both spellings (`docker.io/org/app` is stored as `org/app`: a token for
 * one must not read the other's content). `ns` is the query's `ns` parameter.
 */
export async function resolveTarget(s: RouteServices, req: IncomingMessage, res: ServerResponse, raw: string, ns: unknown): Promise<Target> {
  if (!isValidName(raw)) throw new RegistryError('NAME_INVALID', { detail: { name: raw } });
  const resolved = ns === undefined || typeof ns === 'string' ? s.names.resolve(raw, ns) : undefined;
  const found = resolved && 'stores' in resolved ? resolved : undefined;
  // Access is checked before anything about the name is told, as distribution does.
  if (s.access) await authorize(s.access, s.logger, req, res, 'repository', found && found.storedName !== raw ? [raw, found.storedName] : raw);
  // A spelling whose stored name is another's (hosted, or another registry's) is refused.
  if (resolved && 'refused' in resolved) throw new RegistryError('NAME_UNKNOWN', { detail: { name: raw, ns, reason: resolved.refused } });
  // Events name the repository as the client does (`busybox`, not the stored `library/busybox`),
  // and the peer as it was now: a blob's pull event is sent after its last byte, when the
  // socket may already be closed and have no address.
  if (s.events) Object.assign(requestState(res), { repository: raw, peer: peerAddress(req) });
  if (ns !== undefined && typeof ns !== 'string') throw new RegistryError('NAME_UNKNOWN', { detail: { ns } });
  if (!found) throw new RegistryError('NAME_UNKNOWN', { detail: { name: raw, ns, reason: 'this mirror has no upstream for that registry' } });
  // The hosted names share the one write side.
  return { name: found.name, storedName: found.storedName, ...found.stores, writable: found.hosted ? s.writable : undefined };
}

/**
 * The server's request listener: the hot routes answered here, every other request handed to
 * `fallback` (the express application) untouched.
 */
export function hotPath(options: HotPathOptions, fallback: RequestListener): RequestListener {
  const { routes, prefix, logger } = options;
  // The layers of lib/api/app.ts, in its order, built once.
  const traced = requestTracing();
  const log = options.accessLog ? accessLog(logger) : undefined;
  const front = frontLayer(options);
  return (req, res) => {
    const match = hotRoute(req, prefix);
    if (!match) {
      fallback(req, res);
      return;
    }
    const url = req.url!;
    const fail = (err: unknown): void => handleError(logger, err, req, res, url);
    const read = (): void => {
      apiVersionHeader(req, res, () => undefined);
      serveRead(routes, req, res, match, nsOf(url)).catch(fail);
    };
    const run = (): void => {
      // What express would catch of a layer that throws (a configured header Node refuses).
      try {
        if (log) log(req, res, () => front(req, res, read));
        else front(req, res, read);
      } catch (err) {
        fail(err);
      }
    };
    if (traced) traced(req, res, run);
    else run();
  };
}
