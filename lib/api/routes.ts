/**
 * The `/v2/` API of the pull-through cache. Paths are matched on the raw (undecoded) URL and every
 * name, tag and digest is validated before it reaches storage, so percent-encoded tricks fail
 * validation instead of naming another path.
 */
import { pipeline } from 'node:stream/promises';
import express, { type Request, type Response, type NextFunction, type Router } from 'express';
import type { Logger } from 'winston';
import { isValidName, isValidTag } from '../distribution/reference.js';
import { looksLikeDigest, parseDigest, type Digest } from '../distribution/digest.js';
import { isIndexType, parseAccept } from '../distribution/mediatypes.js';
import type { BlobService, Manifest, ManifestService, TagService } from '../stores.js';
import { paginate } from '../proxy/proxy-tag-service.js';
import { RegistryError } from './errors.js';
import { AuthChallenge, accessDetail, accessFor, type AccessController } from '../auth/access.js';
import { parseRange } from './range.js';
import { sendFileRange } from './send-file.js';
import type { Subject } from './error-handler.js';
import type { PushHandlers } from './push-routes.js';

/** The stores that serve one repository, and its name there. */
export interface Target {
  /** The name the stores know (`library/busybox` for a client's `busybox` on Docker Hub). */
  readonly name: string;
  readonly manifests: ManifestService;
  readonly blobs: BlobService;
  readonly tags: TagService;
  /** The write side (hosted repositories, extension `proxy.hosted`); undefined: writes are 405 UNSUPPORTED. */
  readonly push?: PushHandlers;
}

/** What the routes serve from. */
export interface RegistryServices {
  /** Cached repository names in lexical order, after `last`, at most `n`. */
  listRepositories(page: { n: number; last?: string }): Promise<string[]>;
  /** The stores for a client's (valid) name and containerd's `ns` parameter; undefined: not served here. */
  resolve(name: string, ns: string | undefined): Target | undefined;
  readonly maxCatalogEntries: number;
  readonly logger: Logger;
  /** The configured `auth` controller; undefined when the registry is open. */
  readonly access?: AccessController;
}

const MANIFEST_RE = /^\/v2\/(.+)\/manifests\/([^/]+)$/;
const UPLOAD_RE = /^\/v2\/(.+)\/blobs\/uploads(\/.*)?$/;
const BLOB_RE = /^\/v2\/(.+)\/blobs\/([^/]+)$/;
const TAGS_RE = /^\/v2\/(.+)\/tags\/list$/;
const REFERRERS_RE = /^\/v2\/(.+)\/referrers\/([^/]+)$/;

/** The router for everything under `/v2`. */
export function registryRouter(services: RegistryServices): Router {
  const router = express.Router();
  router.use((req, res, next) => {
    res.setHeader('Docker-Distribution-API-Version', 'registry/2.0');
    next();
  });
  router.all(/.*/, (req, res, next) => {
    dispatch(services, req, res).catch(next);
  });
  return router;
}

async function dispatch(s: RegistryServices, req: Request, res: Response): Promise<void> {
  const path = rawPath(req);
  const readOnly = req.method === 'GET' || req.method === 'HEAD';
  if (path === '/v2/' || path === '/v2') {
    await authorize(s, req, res, 'base');
    if (!readOnly) throw new RegistryError('UNSUPPORTED');
    sendJson(res, 200, {});
    return;
  }
  if (path === '/v2/_catalog') {
    await authorize(s, req, res, 'catalog');
    if (!readOnly) throw new RegistryError('UNSUPPORTED');
    await catalog(s, req, res);
    return;
  }
  let m: RegExpExecArray | null;
  if ((m = UPLOAD_RE.exec(path))) {
    const repo = await target(s, req, res, m[1]!);
    if (!repo.push) throw new RegistryError('UNSUPPORTED');
    await repo.push.upload(req, res, repo.name, m[2]);
    return;
  }
  if ((m = MANIFEST_RE.exec(path))) {
    res.locals.subject = 'manifest' satisfies Subject;
    const repo = await target(s, req, res, m[1]!);
    const ref = reference(m[2]!);
    if (!readOnly) {
      if (!repo.push || (req.method !== 'PUT' && req.method !== 'DELETE')) throw new RegistryError('UNSUPPORTED');
      await (req.method === 'PUT' ? repo.push.putManifest(req, res, repo.name, ref) : repo.push.deleteManifest(req, res, repo.name, ref));
      return;
    }
    await manifest(s, req, res, repo, ref);
    return;
  }
  if ((m = BLOB_RE.exec(path))) {
    res.locals.subject = 'blob' satisfies Subject;
    const repo = await target(s, req, res, m[1]!);
    const digest = digestParam(m[2]!);
    if (!readOnly) {
      if (!repo.push || req.method !== 'DELETE') throw new RegistryError('UNSUPPORTED');
      await repo.push.deleteBlob(req, res, repo.name, digest);
      return;
    }
    await blob(s, req, res, repo, digest);
    return;
  }
  if ((m = TAGS_RE.exec(path))) {
    res.locals.subject = 'tags' satisfies Subject;
    const repo = await target(s, req, res, m[1]!);
    if (!readOnly) throw new RegistryError('UNSUPPORTED');
    await tags(req, res, m[1]!, repo);
    return;
  }
  if ((m = REFERRERS_RE.exec(path))) {
    const repo = await target(s, req, res, m[1]!);
    if (!repo.push) throw new RegistryError('UNSUPPORTED');
    await repo.push.referrers(req, res, repo.name, digestParam(m[2]!));
    return;
  }
  throw new RegistryError('NAME_UNKNOWN', { status: 404, message: 'repository name not known to registry', detail: { path } });
}

/** The request path without the prefix and query, as sent (not percent-decoded). */
function rawPath(req: Request): string {
  const url = req.url;
  const q = url.indexOf('?');
  return q < 0 ? url : url.slice(0, q);
}

/** Validates the name, checks the client's access to it, and finds the stores that serve it. */
async function target(s: RegistryServices, req: Request, res: Response, raw: string): Promise<Target> {
  if (!isValidName(raw)) throw new RegistryError('NAME_INVALID', { detail: { name: raw } });
  await authorize(s, req, res, 'repository', raw);
  const ns = req.query.ns;
  if (ns !== undefined && typeof ns !== 'string') throw new RegistryError('NAME_UNKNOWN', { detail: { ns } });
  const found = s.resolve(raw, ns);
  if (!found) throw new RegistryError('NAME_UNKNOWN', { detail: { name: raw, ns, reason: 'this mirror has no upstream for that registry' } });
  return found;
}

/**
 * distribution's `authorized`: a challenge becomes `401 UNAUTHORIZED` with `WWW-Authenticate` and
 * the access records as detail; any other failure of the controller a bare refusal (never access).
 */
export async function authorize(
  s: Pick<RegistryServices, 'access' | 'logger'>,
  req: Request,
  res: Response,
  route: 'base' | 'catalog' | 'repository',
  name?: string,
): Promise<void> {
  if (!s.access) return;
  const access = accessFor(req.method, name, route);
  try {
    const { user } = await s.access.authorized({ authorization: header(req, 'authorization'), host: header(req, 'host') }, access);
    res.locals.user = user;
  } catch (err) {
    if (err instanceof AuthChallenge) {
      s.logger.debug(`access refused: ${err.message}`);
      throw new RegistryError('UNAUTHORIZED', { headers: { 'WWW-Authenticate': err.wwwAuthenticate }, detail: accessDetail(access) });
    }
    s.logger.error(`error checking authorization: ${(err as Error).message}`);
    throw new RegistryError('UNAUTHORIZED', { status: 400, cause: err });
  }
}

function reference(raw: string): { tag: string } | { digest: Digest } {
  if (looksLikeDigest(raw)) return { digest: digestParam(raw) };
  if (!isValidTag(raw)) throw new RegistryError('TAG_INVALID', { detail: { tag: raw } });
  return { tag: raw };
}

function digestParam(raw: string): Digest {
  const d = parseDigest(raw);
  if (!d) throw new RegistryError('DIGEST_INVALID', { detail: { digest: raw } });
  return d;
}

function sendJson(res: Response, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.status(status);
  res.setHeader('Content-Type', 'application/json; charset=utf-8');
  res.setHeader('Content-Length', Buffer.byteLength(text));
  res.end(res.req.method === 'HEAD' ? undefined : text);
}

/** `n` as distribution bounds it: a non-negative integer no larger than `max`. */
function pageSize(raw: unknown, max: number): number | undefined {
  if (raw === undefined) return undefined;
  const n = typeof raw === 'string' && /^\d+$/.test(raw) ? Number(raw) : NaN;
  if (!Number.isSafeInteger(n) || n > max) {
    throw new RegistryError('PAGINATION_NUMBER_INVALID', { detail: { n: typeof raw === 'string' && /^-?\d+$/.test(raw) ? Number(raw) : raw } });
  }
  return n;
}

function lastParam(raw: unknown): string | undefined {
  if (raw === undefined) return undefined;
  if (typeof raw !== 'string') throw new RegistryError('PAGINATION_NUMBER_INVALID', { detail: { last: raw } });
  return raw;
}

function nextLink(res: Response, path: string, next: { last: string; n: number } | undefined): void {
  if (!next) return;
  const base = res.req.baseUrl ?? '';
  res.setHeader('Link', `<${base}${path}?last=${encodeURIComponent(next.last)}&n=${next.n}>; rel="next"`);
}

async function catalog(s: RegistryServices, req: Request, res: Response): Promise<void> {
  const n = pageSize(req.query.n, s.maxCatalogEntries) ?? s.maxCatalogEntries;
  const last = lastParam(req.query.last);
  const found = n === 0 ? [] : await s.listRepositories({ n: n + 1, last });
  const repositories = found.slice(0, n);
  if (found.length > n) nextLink(res, '/v2/_catalog', { last: repositories[repositories.length - 1]!, n });
  sendJson(res, 200, { repositories });
}

async function tags(req: Request, res: Response, clientName: string, t: Target): Promise<void> {
  const n = pageSize(req.query.n, Number.MAX_SAFE_INTEGER);
  const last = lastParam(req.query.last);
  const page = await t.tags.list(t.name, { n, last });
  const result = page.source === 'upstream' ? page : { ...paginate(page.tags, { n, last }), source: page.source };
  nextLink(res, `/v2/${clientName}/tags/list`, result.next);
  // As distribution: the name the client asked for.
  sendJson(res, 200, { name: clientName, tags: result.tags });
}

async function manifest(s: RegistryServices, req: Request, res: Response, t: Target, ref: { tag: string } | { digest: Digest }): Promise<void> {
  let m: Manifest = 'digest' in ref ? await t.manifests.getByDigest(t.name, ref.digest) : await t.manifests.getByTag(t.name, ref.tag);
  if (m.stale) s.logger.warn(`serving cached ${t.name}:${'tag' in ref ? ref.tag : ''} (${m.digest.value}): ${m.stale.message}`);
  m = await negotiate(t, req, m, 'tag' in ref);
  res.status(200);
  res.setHeader('Content-Type', m.mediaType);
  res.setHeader('Content-Length', m.payload.length);
  res.setHeader('Docker-Content-Digest', m.digest.value);
  res.setHeader('Etag', `"${m.digest.value}"`);
  res.end(req.method === 'HEAD' ? undefined : m.payload);
}

/**
 * Content negotiation as distribution's manifest handler: a client that names the types it accepts
 * and not the stored index type gets the linux/amd64 image of the index (for a tag); other
 * unacceptable types are unknown to it. A client that names none gets the manifest as stored.
 */
async function negotiate(t: Target, req: Request, m: Manifest, byTag: boolean): Promise<Manifest> {
  const accepted = parseAccept(req.headers.accept);
  if (accepted.length === 0 || accepted.includes('*/*') || accepted.includes(m.mediaType)) return m;
  if (isIndexType(m.mediaType) && byTag) {
    const index = JSON.parse(m.payload.toString('utf8')) as { manifests?: Array<{ digest?: string; platform?: { os?: string; architecture?: string } }> };
    const entry = index.manifests?.find((e) => e.platform?.os === 'linux' && e.platform?.architecture === 'amd64');
    const child = entry?.digest ? parseDigest(entry.digest) : undefined;
    if (child) {
      const chosen = await t.manifests.getByDigest(t.name, child);
      if (accepted.includes(chosen.mediaType)) return chosen;
    }
  }
  throw new RegistryError('MANIFEST_UNKNOWN', { detail: `${m.mediaType} manifest found, but the Accept header does not support it` });
}

async function blob(s: RegistryServices, req: Request, res: Response, t: Target, digest: Digest): Promise<void> {
  const common = (size: number | undefined): void => {
    res.setHeader('Content-Type', 'application/octet-stream');
    res.setHeader('Docker-Content-Digest', digest.value);
    res.setHeader('Etag', `"${digest.value}"`);
    res.setHeader('Cache-Control', 'max-age=31536000');
    if (size !== undefined) res.setHeader('Accept-Ranges', 'bytes');
  };
  if (req.method === 'HEAD') {
    const info = await t.blobs.stat(t.name, digest);
    common(info.size);
    if (info.size !== undefined) res.setHeader('Content-Length', info.size);
    res.status(200).end();
    return;
  }
  const handle = await t.blobs.get(t.name, digest);
  const range = handle.size === undefined ? ({ kind: 'full' } as const) : parseRange(header(req, 'range'), handle.size);
  common(handle.size);
  if (range.kind === 'unsatisfiable') {
    throw new RegistryError('RANGE_INVALID', { headers: { 'Content-Range': `bytes */${handle.size}` }, detail: { range: header(req, 'range') } });
  }
  const file = await handle.openFile?.();
  const body = file ? undefined : await handle.open(range.kind === 'partial' ? { start: range.start, end: range.end } : undefined);
  if (range.kind === 'partial') {
    res.status(206);
    res.setHeader('Content-Range', `bytes ${range.start}-${range.end}/${handle.size}`);
    res.setHeader('Content-Length', range.end - range.start + 1);
  } else {
    res.status(200);
    if (handle.size !== undefined) res.setHeader('Content-Length', handle.size);
  }
  res.flushHeaders();
  const sent = { bytes: 0 };
  res.locals.sent = sent;
  try {
    if (file) {
      const start = range.kind === 'partial' ? range.start : 0;
      await sendFileRange(res, file, start, range.kind === 'partial' ? range.end : handle.size! - 1, sent);
    } else {
      body!.on('data', (chunk: Buffer) => {
        sent.bytes += chunk.length;
      });
      await pipeline(body!, res);
    }
  } catch (err) {
    // Headers are gone: the only honest signal left is an aborted transfer.
    res.destroy();
    if (sent.bytes !== Number(res.getHeader('content-length'))) s.logger.warn(`blob ${t.name}@${digest.value} transfer aborted: ${(err as Error).message}`);
  }
}

function header(req: Request, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** Adds the configured `http.headers` to every response. */
export function configuredHeaders(headers: Readonly<Record<string, readonly string[]>>) {
  return (_req: Request, res: Response, next: NextFunction): void => {
    for (const [name, values] of Object.entries(headers)) res.setHeader(name, [...values]);
    next();
  };
}
