/**
 * `/v2/<name>/manifests/<reference>` (distribution's `manifests.go`): `GET`/`HEAD` by tag or digest
 * with content negotiation for every repository (`readManifest`, which lib/api/hot-path.ts calls,
 * for express too); `PUT` and `DELETE` for writable (hosted) ones, `DELETE` only with
 * `storage.delete.enabled`.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Request, Response } from 'express';
import { looksLikeDigest } from '../../distribution/digest.js';
import { isValidTag } from '../../distribution/reference.js';
import { MAX_MANIFEST_BYTES, mediaTypeOfPayload, parseManifest } from '../../distribution/manifest.js';
import { isIndexType, parseAccept } from '../../distribution/mediatypes.js';
import type { Manifest, ManifestRef } from '../../stores.js';
import { RegistryError } from '../errors.js';
import { digestParam, header } from '../messages.js';
import type { MethodTable, Resource, RouteServices, Target } from '../resource.js';
import type { Writable } from '../writable.js';
import { requestState } from '../request-state.js';

/**
 * The reference of the path, parsed: a tag or a digest, or a string that is neither. A digest-shaped
 * reference that does not parse is `DIGEST_INVALID` at once (the OCI suite accepts that 400); a
 * string that is not a valid tag names a manifest that cannot exist, and each method answers for it
 * (below) without a store ever seeing it.
 */
export type ManifestParams = { readonly ref: ManifestRef } | { readonly invalidTag: string };

/** The writes of manifests by tag or digest (the reads are `readManifest`). */
export const manifestResource: Resource<ManifestParams> = {
  methods: (s, target) => {
    const t = target!;
    const w = t.writable;
    if (!w) return {};
    const put = (req: Request, res: Response, p: ManifestParams): Promise<void> => putManifest(s, w, req, res, t.name, p);
    const table: MethodTable<ManifestParams> = { PUT: put };
    if (!w.deletes) return table;
    return { ...table, DELETE: (req: Request, res: Response, p: ManifestParams) => deleteManifest(s, w, req, res, t.name, p) };
  },
  params: (groups) => reference(groups[2]!),
};

/** `GET`/`HEAD` of a manifest by tag or digest (the body for `GET` only). */
export function readManifest(s: RouteServices, req: IncomingMessage, res: ServerResponse, t: Target, p: ManifestParams): Promise<void> {
  return getManifest(s, req, res, t, refOf(p, 'lookup'));
}

/** A tag, or a digest (anything shaped like one is routed as a digest, as distribution does). */
function reference(raw: string): ManifestParams {
  if (looksLikeDigest(raw)) return { ref: { digest: digestParam(raw) } };
  return isValidTag(raw) ? { ref: { tag: raw } } : { invalidTag: raw };
}

/**
 * The reference to look up, or the answer for an invalid tag. Reading or deleting one is
 * `404 MANIFEST_UNKNOWN`: no manifest can exist under it, the OCI spec requires 404 for a manifest
 * that does not exist (the conformance suite asks for `.INVALID_MANIFEST_NAME`), and distribution
 * answers 404 too (its route does not match). Pushing under one is `400 TAG_INVALID`, the legacy
 * code the spec allows: the client is told its request is wrong, not that something is missing.
 */
function refOf(p: ManifestParams, use: 'lookup' | 'push'): ManifestRef {
  if ('ref' in p) return p.ref;
  if (use === 'push') throw new RegistryError('TAG_INVALID', { detail: { Tag: p.invalidTag, reason: 'a tag matches [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}' } });
  throw new RegistryError('MANIFEST_UNKNOWN', { detail: { Tag: p.invalidTag, reason: 'not a valid tag, so no manifest has it' } });
}

async function getManifest(s: RouteServices, req: IncomingMessage, res: ServerResponse, t: Target, ref: ManifestRef): Promise<void> {
  let m: Manifest = 'digest' in ref ? await t.manifests.getByDigest(t.name, ref.digest) : await t.manifests.getByTag(t.name, ref.tag);
  if (m.stale) {
    s.logger.warn('serving the cached manifest: the upstream could not confirm it', {
      'vars.name': t.name,
      'vars.reference': 'tag' in ref ? ref.tag : ref.digest.value,
      'vars.digest': m.digest.value,
      'err.message': m.stale.message,
    });
  }
  m = await negotiate(t, req, m, 'tag' in ref);
  res.statusCode = 200;
  res.setHeader('Content-Type', m.mediaType);
  res.setHeader('Content-Length', m.payload.length);
  res.setHeader('Docker-Content-Digest', m.digest.value);
  res.setHeader('Etag', `"${m.digest.value}"`);
  res.end(req.method === 'HEAD' ? undefined : m.payload);
  s.events?.notify(req, res, (n, origin, repo) => n.manifest('pull', origin, repo, m, 'tag' in ref ? ref.tag : undefined));
}

async function putManifest(s: RouteServices, w: Writable, req: Request, res: Response, name: string, p: ManifestParams): Promise<void> {
  let ref: ManifestRef;
  try {
    ref = refOf(p, 'push');
  } catch (err) {
    // Refused before the body is read: drain it, so the client gets the answer rather than a reset.
    req.resume();
    throw err;
  }
  const payload = await readLimited(req, MAX_MANIFEST_BYTES);
  const pushed = await w.manifests.put(name, ref, header(req, 'content-type'), payload, grantedClasses(res, name));
  res.setHeader('Location', `${req.baseUrl}/v2/${name}/manifests/${pushed.digest.value}`);
  res.setHeader('Docker-Content-Digest', pushed.digest.value);
  // OCI 1.1: a registry that serves the referrers API says it has processed the subject.
  if (pushed.subject) res.setHeader('OCI-Subject', pushed.subject.digest.value);
  res.setHeader('Content-Length', 0);
  res.status(201).end();
  const mediaType = header(req, 'content-type') || mediaTypeOfPayload(payload) || '';
  s.events?.notify(req, res, (n, origin, repo) =>
    n.manifest('push', origin, repo, { digest: pushed.digest, mediaType, payload }, 'tag' in ref ? ref.tag : undefined),
  );
}

/**
 * The classes the client's token names `name` with (`image` where it names none), undefined when
 * it does not name it (or there is no token): what `policy.repository.classes` holds a push to, as
 * distribution's `applyResourcePolicy` reads the authorized resources (by name, whatever their type).
 */
function grantedClasses(res: ServerResponse, name: string): string[] | undefined {
  const named = requestState(res).resources?.filter((r) => r.name === name);
  return named && named.length > 0 ? named.map((r) => r.class || 'image') : undefined;
}

async function deleteManifest(s: RouteServices, w: Writable, req: Request, res: Response, name: string, p: ManifestParams): Promise<void> {
  const ref = refOf(p, 'lookup');
  const untagged = await w.manifests.delete(name, ref);
  res.setHeader('Content-Length', 0);
  res.status(202).end();
  // As distribution: a digest's delete event, then one per tag it had; a tag's delete is the tag's.
  s.events?.notify(req, res, (n, origin, repo) => {
    if ('digest' in ref) n.deleted(origin, repo, ref);
    for (const tag of untagged) n.deleted(origin, repo, { tag });
  });
}

/**
 * The request body, at most `limit` bytes (`MANIFEST_INVALID` beyond, as distribution's
 * MaxBytesReader). The rest of a refused body is drained, not read into memory, so the client gets
 * the answer rather than a reset.
 */
function readLimited(req: Request, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let total = 0;
    const onData = (chunk: Buffer): void => {
      total += chunk.length;
      if (total <= limit) {
        chunks.push(chunk);
        return;
      }
      req.off('data', onData);
      req.off('end', onEnd);
      req.resume();
      reject(new RegistryError('MANIFEST_INVALID', { detail: 'http: request body too large' }));
    };
    const onEnd = (): void => resolve(Buffer.concat(chunks));
    req.on('data', onData);
    req.once('end', onEnd);
    req.once('error', reject);
  });
}

/**
 * The manifest to send for `m` given the client's `Accept`; `MANIFEST_UNKNOWN` when none fits. As
 * distribution's manifest handler: a client that names the types it accepts and not the stored
 * index type gets the linux/amd64 image of the index (for a tag); other unacceptable types are
 * unknown to it. A client that names none gets the manifest as stored.
 */
async function negotiate(t: Target, req: IncomingMessage, m: Manifest, byTag: boolean): Promise<Manifest> {
  const accepted = parseAccept(req.headers.accept);
  if (accepted.length === 0 || accepted.includes('*/*') || accepted.includes(m.mediaType)) return m;
  if (isIndexType(m.mediaType) && byTag) {
    const entry = parseManifest(m.payload).refs.manifests.find((e) => e.platform?.os === 'linux' && e.platform.architecture === 'amd64');
    if (entry) {
      const chosen = await t.manifests.getByDigest(t.name, entry.digest);
      if (accepted.includes(chosen.mediaType)) return chosen;
    }
  }
  throw new RegistryError('MANIFEST_UNKNOWN', { detail: `${m.mediaType} manifest found, but the Accept header does not support it` });
}
