/**
 * The write side of hosted repositories as the routes see it: the hosted stores, and the policy of
 * who may write (distribution's handlers in non-proxy mode). Built once by lib/server.ts, which puts
 * it into every hosted repository's target; the method tables of lib/api/handlers offer the write
 * methods only for targets that have one.
 */
import type { Request } from 'express';
import type { Logger } from 'winston';
import { isValidName } from '../distribution/reference.js';
import { accessDetail, accessFor, type AccessController } from '../auth/access.js';
import type { HostedRepositories } from '../hosted/hosted.js';
import type { HostedBlobStore } from '../hosted/hosted-blob-store.js';
import type { HostedManifestStore } from '../hosted/hosted-manifest-store.js';
import type { UploadStore } from '../hosted/upload-store.js';
import { RegistryError } from './errors.js';
import { header } from './messages.js';

/** What the write routes of a hosted repository work with. */
export interface Writable {
  readonly uploads: UploadStore;
  readonly blobs: HostedBlobStore;
  readonly manifests: HostedManifestStore;
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
export interface WritableOptions {
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
export function createWritable(hosted: HostedRepositories, o: WritableOptions): Writable {
  const prefixes = hosted.prefixes.join(', ');
  o.logger.info(`hosted repositories (pushes accepted, never asked of an upstream): ${prefixes}`);
  if (!o.access && o.anonymousPush) {
    o.logger.warn(
      `proxy.hostedanonymouspush is true and no auth is configured: ANYONE who can reach this registry can push to, overwrite and (with storage.delete.enabled) delete the hosted repositories ${prefixes}`,
    );
  } else if (!o.access) {
    o.logger.warn('proxy.hosted is set but no auth is configured: pushes to hosted repositories are refused (401) until auth is configured (or proxy.hostedanonymouspush: true)');
  }
  return {
    uploads: hosted.uploads,
    blobs: hosted.blobs,
    manifests: hosted.manifests,
    deletes: o.deleteEnabled,
    secret: o.secret,
    logger: o.logger,
    checkWrite: (req, name) => {
      if (o.readOnly) throw new RegistryError('UNSUPPORTED', { detail: 'the registry is in read-only mode (storage.maintenance.readonly)' });
      if (!o.access && !o.anonymousPush) throw new RegistryError('UNAUTHORIZED', { detail: accessDetail(accessFor(req.method, name, 'repository')) });
    },
    // A mount needs pull access to `from` (both spellings of an alias), checked on its own:
    // refused, the client just uploads.
    mountSource: async (req, from) => {
      const stored = isValidName(from) ? o.storedName(from) : undefined;
      if (stored === undefined || !o.access) return stored;
      const access = [...accessFor('GET', from, 'repository'), ...(stored === from ? [] : accessFor('GET', stored, 'repository'))];
      try {
        await o.access.authorized({ authorization: header(req, 'authorization'), host: header(req, 'host') }, access);
        return stored;
      } catch {
        return undefined;
      }
    },
  };
}
