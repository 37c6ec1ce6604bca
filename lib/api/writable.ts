/**
 * The write side of hosted repositories as the routes see it: the contracts of the stores they
 * write through (lib/hosted implements them; lib/api knows no hosted class), and the policy of who
 * may write (distribution's handlers in non-proxy mode). Built once by lib/server.ts, which puts it
 * into every hosted repository's target; the method tables of lib/api/handlers offer the write
 * methods only for targets that have one, and the router alone asks `checkWrite`.
 */
import type { Readable } from 'node:stream';
import type { Request } from 'express';
import type { Logger } from 'winston';
import type { Digest } from '../distribution/digest.js';
import { isValidName } from '../distribution/reference.js';
import { accessDetail, accessFor, type AccessController } from '../auth/access.js';
import type { ManifestRef } from '../stores.js';
import { RegistryError } from './errors.js';
import { header } from './messages.js';

/** An upload session (distribution's `blobwriter`) as the routes report it. */
export interface UploadInfo {
  readonly uuid: string;
  /** Bytes received so far. */
  readonly size: number;
  readonly startedAt: Date;
}

/** The upload sessions of writable repositories. */
interface UploadService {
  create(repo: string): Promise<UploadInfo>;
  info(repo: string, uuid: string): Promise<UploadInfo>;
  /** Appends `body`; `check` may refuse it (throwing) once the upload's current state is known. */
  append(repo: string, uuid: string, body: Readable, check?: (current: UploadInfo) => void): Promise<UploadInfo>;
  /** Verifies the upload (with a last chunk) against `digest`, moves it into place and links it. */
  commit(repo: string, uuid: string, digest: Digest, body: Readable | undefined): Promise<{ size: number }>;
  cancel(repo: string, uuid: string): Promise<void>;
  /** distribution's signed `_state` of an upload (`http.secret`), which registry:2 can resume. */
  packState(secret: string, repo: string, info: UploadInfo): string;
}

/** The blob writes of writable repositories. */
interface WritableBlobs {
  /** Links `digest` from `from` into `name`; its size, or undefined when `from` does not have it. */
  mount(name: string, from: string, digest: Digest): Promise<number | undefined>;
  delete(name: string, digest: Digest): Promise<void>;
}

/** The manifest writes of writable repositories. */
interface WritableManifests {
  /**
   * Verifies and stores a pushed manifest (`grantedClasses`: the classes the client's token names
   * the repository with, for `policy.repository.classes`); its digest and the subject it refers
   * to (OCI 1.1).
   */
  put(
    name: string,
    ref: ManifestRef,
    contentType: string | undefined,
    payload: Buffer,
    grantedClasses?: readonly string[],
  ): Promise<{ readonly digest: Digest; readonly subject?: { readonly digest: Digest } }>;
  /** Deletes by tag or digest; the tags a digest's delete removed. */
  delete(name: string, ref: ManifestRef): Promise<string[]>;
}

/** The write stores of the hosted repositories. */
interface WriteStores {
  /** `proxy.hosted`: the name prefixes (for the start-up message). */
  readonly prefixes: readonly string[];
  readonly uploads: UploadService;
  readonly blobs: WritableBlobs;
  readonly manifests: WritableManifests;
}

/** What the write routes of a hosted repository work with. */
export interface Writable {
  readonly uploads: UploadService;
  readonly blobs: WritableBlobs;
  readonly manifests: WritableManifests;
  /** `storage.delete.enabled`: the `DELETE` methods exist. */
  readonly deletes: boolean;
  /** Throws unless the registry is writable and the client may push (authenticated, or the anonymous switch). */
  checkWrite(req: Request, name: string): void;
  /** The stored name of a mount's `from`, if it is served here and the client may pull it; undefined: no mount. */
  mountSource(req: Request, from: string): Promise<string | undefined>;
  /** `http.secret`: when set, upload locations carry distribution's signed `_state` (registry:2 can resume them). */
  readonly secret?: string;
  readonly logger: Logger;
}

/** The policy the write side is built with. */
interface WritableOptions {
  /** The configured `auth` controller; without one pushes need `anonymousPush`. */
  readonly access?: AccessController;
  /** `proxy.hostedanonymouspush`. */
  readonly anonymousPush: boolean;
  /** `storage.delete.enabled`. */
  readonly deleteEnabled: boolean;
  /** `storage.maintenance.readonly.enabled`: no writes at all. */
  readonly readOnly: boolean;
  readonly secret?: string;
  /** The one stored name of a repository as a client names it (mount sources); undefined: not served here, or refused. */
  readonly storedName: (clientName: string) => string | undefined;
  readonly logger: Logger;
}

/** The write side of `hosted`; says at start-up who may push. */
export function createWritable(hosted: WriteStores, options: WritableOptions): Writable {
  const prefixes = hosted.prefixes.join(', ');
  options.logger.info('hosted repositories: pushes accepted, never asked of an upstream', { 'hosted.prefixes': prefixes });
  if (!options.access && options.anonymousPush) {
    options.logger.warn(
      `proxy.hostedanonymouspush is true and no auth is configured: ANYONE who can reach this registry can push to, overwrite and (with storage.delete.enabled) delete the hosted repositories ${prefixes}`,
    );
  } else if (!options.access) {
    options.logger.warn(
      'proxy.hosted is set but no auth is configured: pushes to hosted repositories are refused (401) until auth is configured (or proxy.hostedanonymouspush: true)',
    );
  }
  return {
    uploads: hosted.uploads,
    blobs: hosted.blobs,
    manifests: hosted.manifests,
    deletes: options.deleteEnabled,
    secret: options.secret,
    logger: options.logger,
    checkWrite: (req, name) => {
      if (options.readOnly) throw new RegistryError('UNSUPPORTED', { detail: 'the registry is in read-only mode (storage.maintenance.readonly)' });
      if (!options.access && !options.anonymousPush)
        throw new RegistryError('UNAUTHORIZED', { detail: accessDetail(accessFor(req.method, name, 'repository')) });
    },
    // A mount needs pull access to `from` (both spellings of an alias), checked on its own:
    // refused, the client just uploads.
    mountSource: async (req, from) => {
      const stored = isValidName(from) ? options.storedName(from) : undefined;
      if (stored === undefined || !options.access) return stored;
      const access = [...accessFor('GET', from, 'repository'), ...(stored === from ? [] : accessFor('GET', stored, 'repository'))];
      try {
        await options.access.authorized(
          { authorization: header(req, 'authorization'), host: header(req, 'host'), forwardedProto: header(req, 'x-forwarded-proto') },
          access,
        );
        return stored;
      } catch {
        return undefined;
      }
    },
  };
}
