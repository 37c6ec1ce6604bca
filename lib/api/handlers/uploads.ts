/**
 * Blob uploads of writable (hosted) repositories, as distribution's `blobupload.go`:
 * `POST /v2/<name>/blobs/uploads/` starts one (or mounts a blob from another repository, or takes
 * the whole blob at once with `?digest=`); `/v2/<name>/blobs/uploads/<uuid>` reports it (`GET`),
 * takes a chunk (`PATCH`), finishes it (`PUT ?digest=`) or cancels it (`DELETE`).
 */
import type { Request, Response } from 'express';
import { parseDigest, type Digest } from '../../distribution/digest.js';
import { UploadUnknownError } from '../../errors.js';
import { RegistryError } from '../errors.js';
import { header, query } from '../messages.js';
import type { Resource, RouteServices } from '../resource.js';
import type { UploadInfo, Writable } from '../writable.js';

/** `POST /v2/<name>/blobs/uploads/`. */
export const uploadResource: Resource<void> = {
  writesFirst: true,
  methods: (s, target) => {
    const w = target?.writable;
    return w && { POST: (req, res) => start(s, w, req, res, target!.name) };
  },
  params: () => undefined,
};

/** `/v2/<name>/blobs/uploads/<uuid>`. */
export const uploadChunkResource: Resource<string> = {
  writesFirst: true,
  methods: (s, target) => {
    const w = target?.writable;
    if (!w) return undefined;
    const name = target!.name;
    const status = async (_req: Request, res: Response, uuid: string): Promise<void> => {
      uploadHeaders(w, res, name, await w.uploads.info(name, uuid));
      res.status(204).end();
    };
    return {
      GET: status,
      HEAD: status,
      PATCH: (req, res, uuid) => patch(w, req, res, name, uuid),
      PUT: (req, res, uuid) => finish(s, w, req, res, name, uuid),
      DELETE: async (_req, res, uuid) => {
        await w.uploads.cancel(name, uuid);
        res.setHeader('Docker-Upload-UUID', uuid);
        res.setHeader('Content-Length', 0);
        res.status(204).end();
      },
    };
  },
  params: (groups) => {
    const uuid = groups[2]!;
    if (uuid.includes('/')) throw new UploadUnknownError(uuid);
    return uuid;
  },
};

/** `POST`: a mount, the one-request upload (`?digest=`), or a new upload session (202). */
async function start(s: RouteServices, w: Writable, req: Request, res: Response, name: string): Promise<void> {
  const mount = query(req, 'mount');
  const from = query(req, 'from');
  if (mount !== undefined && from !== undefined) {
    const digest = parseDigest(mount);
    const source = digest && (await w.mountSource(req, from));
    const size = source !== undefined ? await w.blobs.mount(name, source, digest!) : undefined;
    if (digest && size !== undefined) {
      w.logger.debug('blob mounted', { 'vars.name': name, 'vars.digest': digest.value, 'vars.from': from });
      created(res, req, name, digest);
      s.events?.notify(req, res, (n, origin, repo) => n.blob('mount', origin, repo, digest!, size, from));
      return;
    }
  }
  const raw = query(req, 'digest');
  const digest = raw === undefined ? undefined : parseDigest(raw);
  if (raw !== undefined && !digest) throw new RegistryError('DIGEST_INVALID', { detail: 'digest parsing failed' });
  const upload = await w.uploads.create(name);
  if (digest) {
    const { size } = await w.uploads.commit(name, upload.uuid, digest, req);
    created(res, req, name, digest);
    s.events?.notify(req, res, (n, origin, repo) => n.blob('push', origin, repo, digest, size));
    return;
  }
  uploadHeaders(w, res, name, upload);
  res.status(202).end();
}

async function patch(w: Writable, req: Request, res: Response, name: string, uuid: string): Promise<void> {
  await w.uploads.info(name, uuid);
  const contentType = header(req, 'content-type');
  if (contentType !== undefined && contentType !== '' && contentType !== 'application/octet-stream') {
    throw new RegistryError('UNKNOWN', { status: 400, detail: 'bad Content-Type' });
  }
  const range = header(req, 'content-range');
  const length = header(req, 'content-length');
  const info = await w.uploads.append(name, uuid, req, (current) => {
    if (range === undefined || length === undefined) return;
    const m = /^(?:bytes[ =])?(\d+)-(\d+)$/.exec(range.trim());
    const start = m ? Number(m[1]) : NaN;
    const end = m ? Number(m[2]) : NaN;
    if (!m || start > end || start !== current.size) {
      throw new RegistryError('RANGE_INVALID', { headers: uploadHeaderValues(w, req, name, current), detail: { 'Content-Range': range, size: current.size } });
    }
    if (Number(length) !== end - start + 1) throw new RegistryError('SIZE_INVALID', { detail: { 'Content-Range': range, 'Content-Length': length } });
  });
  uploadHeaders(w, res, name, info);
  res.status(202).end();
}

/** `PUT ?digest=`: the last chunk (or the whole blob), verified, moved into place, linked. */
async function finish(s: RouteServices, w: Writable, req: Request, res: Response, name: string, uuid: string): Promise<void> {
  await w.uploads.info(name, uuid);
  const raw = query(req, 'digest');
  if (raw === undefined || raw === '') throw new RegistryError('DIGEST_INVALID', { detail: 'digest missing' });
  const digest = parseDigest(raw);
  if (!digest) throw new RegistryError('DIGEST_INVALID', { detail: 'digest parsing failed' });
  const { size } = await w.uploads.commit(name, uuid, digest, req);
  created(res, req, name, digest);
  s.events?.notify(req, res, (n, origin, repo) => n.blob('push', origin, repo, digest, size));
}

function created(res: Response, req: Request, name: string, digest: Digest): void {
  res.setHeader('Location', `${req.baseUrl}/v2/${name}/blobs/${digest.value}`);
  res.setHeader('Docker-Content-Digest', digest.value);
  res.setHeader('Content-Length', 0);
  res.status(201).end();
}

/** distribution's `blobUploadResponse`: where to send the next chunk and what has arrived. */
function uploadHeaders(w: Writable, res: Response, name: string, info: UploadInfo): void {
  for (const [k, v] of Object.entries(uploadHeaderValues(w, res.req, name, info))) res.setHeader(k, v);
}

function uploadHeaderValues(w: Writable, req: Request, name: string, info: UploadInfo): Record<string, string> {
  const state = w.secret ? `?_state=${encodeURIComponent(w.uploads.packState(w.secret, name, info))}` : '';
  return {
    'Docker-Upload-UUID': info.uuid,
    Location: `${req.baseUrl}/v2/${name}/blobs/uploads/${info.uuid}${state}`,
    Range: `0-${info.size > 0 ? info.size - 1 : 0}`,
    'Content-Length': '0',
  };
}
