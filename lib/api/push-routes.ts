/**
 * The push side of the `/v2/` API for hosted repositories, as distribution's handlers in non-proxy
 * mode (`registry/handlers/blobupload.go`, `manifests.go`, `blob.go`): blob uploads (monolithic,
 * chunked and resumable, the one-request `POST ?digest=`, cross-repository mounts), manifest
 * `PUT`, manifest and blob `DELETE`, and the OCI referrers API. The routes in `routes.ts` validate
 * the name and check the client's access before any of these run.
 */
import type { Request, Response } from 'express';
import type { Logger } from 'winston';
import { parseDigest, type Digest } from '../distribution/digest.js';
import { isValidName } from '../distribution/reference.js';
import { RegistryError } from './errors.js';
import { accessDetail, accessFor, type AccessController } from '../auth/access.js';
import type { UploadInfo, UploadStore } from '../hosted/upload-store.js';
import type { HostedBlobStore } from '../hosted/hosted-blob-store.js';
import { MAX_MANIFEST_BYTES, type HostedManifestStore, type ManifestRef } from '../hosted/hosted-manifest-store.js';
import { listReferrers } from '../hosted/referrers.js';
import { packUploadState } from '../hosted/upload-state.js';
import type { BlobStore } from '../storage/blob-store.js';
import type { RepositoryStore } from '../storage/repository-store.js';

/** The write side of one kind of repository; `routes.ts` answers 405 UNSUPPORTED where there is none. */
export interface PushHandlers {
  /** `/v2/<name>/blobs/uploads/` (suffix empty or `/`) and `/v2/<name>/blobs/uploads/<uuid>`. */
  upload(req: Request, res: Response, name: string, suffix: string | undefined): Promise<void>;
  putManifest(req: Request, res: Response, name: string, ref: ManifestRef): Promise<void>;
  deleteManifest(req: Request, res: Response, name: string, ref: ManifestRef): Promise<void>;
  deleteBlob(req: Request, res: Response, name: string, digest: Digest): Promise<void>;
  referrers(req: Request, res: Response, name: string, digest: Digest): Promise<void>;
}

/** What the push routes work with. */
export interface PushRoutesOptions {
  readonly uploads: UploadStore;
  readonly blobs: HostedBlobStore;
  readonly manifests: HostedManifestStore;
  readonly blobStore: BlobStore;
  readonly repository: (name: string) => RepositoryStore;
  /** The configured `auth` controller; without one pushes need `anonymousPush`. */
  readonly access?: AccessController;
  readonly anonymousPush: boolean;
  /** `storage.delete.enabled`. */
  readonly deleteEnabled: boolean;
  /** `storage.maintenance.readonly.enabled`: no writes at all. */
  readonly readOnly: boolean;
  /** The stored name of a client's repository name (for a mount's `from`), undefined when not served. */
  readonly storedNameOf: (clientName: string) => string | undefined;
  /** `http.secret`: when set, upload locations carry distribution's signed `_state` (registry:2 can resume them). */
  readonly secret?: string;
  readonly logger: Logger;
}

/** The push routes of hosted repositories. */
export class PushRoutes implements PushHandlers {
  constructor(private readonly o: PushRoutesOptions) {}

  async upload(req: Request, res: Response, name: string, suffix: string | undefined): Promise<void> {
    const uuid = suffix?.replace(/^\//, '') ?? '';
    const status = req.method === 'GET' || req.method === 'HEAD';
    if (!status) this.writable(req, name);
    if (uuid === '') {
      if (req.method !== 'POST') throw new RegistryError('UNSUPPORTED');
      await this.start(req, res, name);
      return;
    }
    if (uuid.includes('/')) throw new RegistryError('BLOB_UPLOAD_UNKNOWN', { detail: { uuid } });
    switch (req.method) {
      case 'GET':
      case 'HEAD':
        this.uploadHeaders(res, name, await this.o.uploads.info(name, uuid));
        res.status(204).end();
        return;
      case 'PATCH':
        await this.patch(req, res, name, uuid);
        return;
      case 'PUT':
        await this.finish(req, res, name, uuid);
        return;
      case 'DELETE':
        await this.o.uploads.cancel(name, uuid);
        res.setHeader('Docker-Upload-UUID', uuid);
        res.setHeader('Content-Length', 0);
        res.status(204).end();
        return;
      default:
        throw new RegistryError('UNSUPPORTED');
    }
  }

  async putManifest(req: Request, res: Response, name: string, ref: ManifestRef): Promise<void> {
    this.writable(req, name);
    const payload = await readLimited(req, MAX_MANIFEST_BYTES);
    const pushed = await this.o.manifests.put(name, ref, header(req, 'content-type'), payload);
    res.setHeader('Location', `${req.baseUrl}/v2/${name}/manifests/${pushed.digest.value}`);
    res.setHeader('Docker-Content-Digest', pushed.digest.value);
    // OCI 1.1: a registry that serves the referrers API says it has processed the subject.
    if (pushed.subject) res.setHeader('OCI-Subject', pushed.subject.digest.value);
    res.setHeader('Content-Length', 0);
    res.status(201).end();
  }

  async deleteManifest(req: Request, res: Response, name: string, ref: ManifestRef): Promise<void> {
    this.deletable(req, name);
    await this.o.manifests.delete(name, ref);
    res.setHeader('Content-Length', 0);
    res.status(202).end();
  }

  async deleteBlob(req: Request, res: Response, name: string, digest: Digest): Promise<void> {
    this.deletable(req, name);
    await this.o.blobs.delete(name, digest);
    res.setHeader('Content-Length', 0);
    res.status(202).end();
  }

  async referrers(req: Request, res: Response, name: string, digest: Digest): Promise<void> {
    if (req.method !== 'GET' && req.method !== 'HEAD') throw new RegistryError('UNSUPPORTED');
    const raw = req.query.artifactType;
    if (raw !== undefined && (typeof raw !== 'string' || raw === '')) throw new RegistryError('QUERY_PARAMETER_INVALID', { detail: { artifactType: raw } });
    const { index, filtered } = await listReferrers(this.o.blobStore, this.o.repository(name), digest, raw);
    const body = JSON.stringify(index);
    if (filtered) res.setHeader('OCI-Filters-Applied', 'artifactType');
    res.setHeader('Content-Type', index.mediaType);
    res.setHeader('Content-Length', Buffer.byteLength(body));
    res.status(200).end(req.method === 'HEAD' ? undefined : body);
  }

  /** `POST`: a mount, the one-request upload (`?digest=`), or a new upload session (202). */
  private async start(req: Request, res: Response, name: string): Promise<void> {
    const mount = query(req, 'mount');
    const from = query(req, 'from');
    if (mount !== undefined && from !== undefined) {
      const digest = parseDigest(mount);
      const size = digest && (await this.mountable(req, from)) ? await this.o.blobs.mount(name, this.o.storedNameOf(from)!, digest) : undefined;
      if (digest && size !== undefined) {
        this.o.logger.debug(`mounted ${digest.value} from ${from} into ${name}`);
        this.created(req, res, name, digest);
        return;
      }
    }
    const raw = query(req, 'digest');
    const digest = raw === undefined ? undefined : parseDigest(raw);
    if (raw !== undefined && !digest) throw new RegistryError('DIGEST_INVALID', { detail: 'digest parsing failed' });
    const upload = await this.o.uploads.create(name);
    if (digest) {
      await this.o.uploads.commit(name, upload.uuid, digest, req);
      this.created(req, res, name, digest);
      return;
    }
    this.uploadHeaders(res, name, upload);
    res.status(202).end();
  }

  /** A mount needs pull access to `from` (checked separately: refused, the client just uploads). */
  private async mountable(req: Request, from: string): Promise<boolean> {
    if (!isValidName(from) || this.o.storedNameOf(from) === undefined) return false;
    if (!this.o.access) return true;
    try {
      await this.o.access.authorized({ authorization: header(req, 'authorization'), host: header(req, 'host') }, accessFor('GET', from, 'repository'));
      return true;
    } catch {
      return false;
    }
  }

  private async patch(req: Request, res: Response, name: string, uuid: string): Promise<void> {
    await this.o.uploads.info(name, uuid);
    const contentType = header(req, 'content-type');
    if (contentType !== undefined && contentType !== '' && contentType !== 'application/octet-stream') {
      throw new RegistryError('UNKNOWN', { status: 400, detail: 'bad Content-Type' });
    }
    const range = header(req, 'content-range');
    const length = header(req, 'content-length');
    const info = await this.o.uploads.append(name, uuid, req, (current) => {
      if (range === undefined || length === undefined) return;
      const m = /^(?:bytes[ =])?(\d+)-(\d+)$/.exec(range.trim());
      const start = m ? Number(m[1]) : NaN;
      const end = m ? Number(m[2]) : NaN;
      if (!m || start > end || start !== current.size) {
        throw new RegistryError('RANGE_INVALID', { headers: this.uploadHeaderValues(req, name, current), detail: { 'Content-Range': range, size: current.size } });
      }
      if (Number(length) !== end - start + 1) throw new RegistryError('SIZE_INVALID', { detail: { 'Content-Range': range, 'Content-Length': length } });
    });
    this.uploadHeaders(res, name, info);
    res.status(202).end();
  }

  /** `PUT ?digest=`: the last chunk (or the whole blob), verified, moved into place, linked. */
  private async finish(req: Request, res: Response, name: string, uuid: string): Promise<void> {
    await this.o.uploads.info(name, uuid);
    const raw = query(req, 'digest');
    if (raw === undefined || raw === '') throw new RegistryError('DIGEST_INVALID', { detail: 'digest missing' });
    const digest = parseDigest(raw);
    if (!digest) throw new RegistryError('DIGEST_INVALID', { detail: 'digest parsing failed' });
    await this.o.uploads.commit(name, uuid, digest, req);
    this.created(req, res, name, digest);
  }

  private created(req: Request, res: Response, name: string, digest: Digest): void {
    res.setHeader('Location', `${req.baseUrl}/v2/${name}/blobs/${digest.value}`);
    res.setHeader('Docker-Content-Digest', digest.value);
    res.setHeader('Content-Length', 0);
    res.status(201).end();
  }

  /** distribution's `blobUploadResponse`: where to send the next chunk and what has arrived. */
  private uploadHeaders(res: Response, name: string, info: UploadInfo): void {
    for (const [k, v] of Object.entries(this.uploadHeaderValues(res.req, name, info))) res.setHeader(k, v);
  }

  private uploadHeaderValues(req: Request, name: string, info: UploadInfo): Record<string, string> {
    const state = this.o.secret ? `?_state=${encodeURIComponent(packUploadState(this.o.secret, name, info.uuid, info.size, info.startedAt))}` : '';
    return {
      'Docker-Upload-UUID': info.uuid,
      Location: `${req.baseUrl}/v2/${name}/blobs/uploads/${info.uuid}${state}`,
      Range: `0-${info.size > 0 ? info.size - 1 : 0}`,
      'Content-Length': '0',
    };
  }

  /** Writes need a writable registry and an authenticated client (or the explicit anonymous switch). */
  private writable(req: Request, name: string): void {
    if (this.o.readOnly) throw new RegistryError('UNSUPPORTED', { detail: 'the registry is in read-only mode (storage.maintenance.readonly)' });
    if (!this.o.access && !this.o.anonymousPush) {
      throw new RegistryError('UNAUTHORIZED', {
        detail: accessDetail(accessFor(req.method, name, 'repository')),
      });
    }
  }

  private deletable(req: Request, name: string): void {
    if (!this.o.deleteEnabled) throw new RegistryError('UNSUPPORTED');
    this.writable(req, name);
  }
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

function query(req: Request, name: string): string | undefined {
  const v = req.query[name];
  return typeof v === 'string' ? v : undefined;
}

function header(req: Request, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}
