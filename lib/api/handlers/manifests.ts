/**
 * `/v2/<name>/manifests/<reference>` (distribution's `manifests.go`): `GET`/`HEAD` by tag or digest
 * with content negotiation for every repository; `PUT` and `DELETE` for writable (hosted) ones,
 * `DELETE` only with `storage.delete.enabled`.
 */
import type { Request, Response } from 'express';
import { looksLikeDigest } from '../../distribution/digest.js';
import { isValidTag } from '../../distribution/reference.js';
import { MAX_MANIFEST_BYTES } from '../../distribution/manifest.js';
import type { Manifest, ManifestRef } from '../../stores.js';
import { RegistryError } from '../errors.js';
import { digestParam, header } from '../messages.js';
import { negotiate } from '../negotiation.js';
import type { MethodTable, Resource, RouteServices, Target } from '../router.js';
import type { Writable } from '../writable.js';

/** Manifests by tag or digest. */
export const manifestResource: Resource<ManifestRef> = {
  methods: (s, target) => {
    const t = target!;
    const get = (req: Request, res: Response, ref: ManifestRef): Promise<void> => getManifest(s, req, res, t, ref);
    const table: MethodTable<ManifestRef> = { GET: get, HEAD: get };
    const w = t.writable;
    if (!w) return table;
    const put = (req: Request, res: Response, ref: ManifestRef): Promise<void> => putManifest(w, req, res, t.name, ref);
    if (!w.deletes) return { ...table, PUT: put };
    return { ...table, PUT: put, DELETE: (req: Request, res: Response, ref: ManifestRef) => deleteManifest(w, req, res, t.name, ref) };
  },
  params: (groups) => reference(groups[2]!),
};

/** A tag, or a digest (anything shaped like one is routed as a digest, as distribution does). */
function reference(raw: string): ManifestRef {
  if (looksLikeDigest(raw)) return { digest: digestParam(raw) };
  if (!isValidTag(raw)) throw new RegistryError('TAG_INVALID', { detail: { tag: raw } });
  return { tag: raw };
}

async function getManifest(s: RouteServices, req: Request, res: Response, t: Target, ref: ManifestRef): Promise<void> {
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

async function putManifest(w: Writable, req: Request, res: Response, name: string, ref: ManifestRef): Promise<void> {
  w.checkWrite(req, name);
  const payload = await readLimited(req, MAX_MANIFEST_BYTES);
  const pushed = await w.manifests.put(name, ref, header(req, 'content-type'), payload);
  res.setHeader('Location', `${req.baseUrl}/v2/${name}/manifests/${pushed.digest.value}`);
  res.setHeader('Docker-Content-Digest', pushed.digest.value);
  // OCI 1.1: a registry that serves the referrers API says it has processed the subject.
  if (pushed.subject) res.setHeader('OCI-Subject', pushed.subject.digest.value);
  res.setHeader('Content-Length', 0);
  res.status(201).end();
}

async function deleteManifest(w: Writable, req: Request, res: Response, name: string, ref: ManifestRef): Promise<void> {
  w.checkWrite(req, name);
  await w.manifests.delete(name, ref);
  res.setHeader('Content-Length', 0);
  res.status(202).end();
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
