/**
 * Hosted repositories beside the pull-through cache (extension `proxy.hosted`): names under the
 * configured prefixes are pushed to and served from local storage in distribution's layout and
 * never reach an upstream; every other name keeps the pull-through behaviour. This module decides
 * which names are hosted, builds their stores and push routes, and runs the upload purger.
 */
import type { Logger } from 'winston';
import type { Config } from '../config/types.js';
import type { AccessController } from '../auth/access.js';
import type { StorageDriver } from '../storage/driver.js';
import type { BlobStore } from '../storage/blob-store.js';
import type { RepositoryStore } from '../storage/repository-store.js';
import type { Target } from '../api/routes.js';
import { PushRoutes } from '../api/push-routes.js';
import { UploadStore } from './upload-store.js';
import { HostedBlobStore } from './hosted-blob-store.js';
import { HostedManifestStore, HostedTagService } from './hosted-manifest-store.js';
import { UploadPurger } from './upload-purger.js';

/** True when `name` lies under one of `prefixes` (each ending with `/`; `internal/` also names `internal`). */
export function isHostedName(prefixes: readonly string[], name: string): boolean {
  return prefixes.some((p) => name.startsWith(p) || name === p.slice(0, -1));
}

/** What hosted repositories are built from. */
export interface HostedOptions {
  readonly config: Config;
  readonly driver: StorageDriver;
  readonly blobs: BlobStore;
  readonly repository: (name: string) => RepositoryStore;
  readonly access?: AccessController;
  readonly logger: Logger;
  /** The stored name of a pull-through repository as a client names it (mount sources), if served. */
  readonly proxiedStoredName: (clientName: string) => string | undefined;
}

/** The hosted side of the registry. */
export class HostedRepositories {
  readonly prefixes: readonly string[];
  private readonly target: Omit<Target, 'name'>;
  private readonly purger?: UploadPurger;

  constructor(o: HostedOptions) {
    this.prefixes = o.config.proxy?.hosted ?? [];
    const anonymousPush = o.config.proxy?.hostedanonymouspush === true;
    const blobs = new HostedBlobStore(o.blobs, o.repository);
    const manifests = new HostedManifestStore(o.blobs, o.repository);
    const push = new PushRoutes({
      uploads: new UploadStore(o.driver, o.blobs, o.repository),
      blobs,
      manifests,
      blobStore: o.blobs,
      repository: o.repository,
      access: o.access,
      anonymousPush,
      deleteEnabled: o.config.storage.delete.enabled,
      readOnly: o.config.storage.maintenance.readonly.enabled,
      secret: o.config.http.secret,
      storedNameOf: (name) => (this.owns(name) ? name : o.proxiedStoredName(name)),
      logger: o.logger,
    });
    this.target = { manifests, blobs, tags: new HostedTagService(o.repository), push };
    o.logger.info(`hosted repositories (pushes accepted, never asked of an upstream): ${this.prefixes.join(', ')}`);
    if (!o.access && anonymousPush) {
      o.logger.warn(
        'proxy.hostedanonymouspush is true and no auth is configured: ANYONE who can reach this registry can push to, overwrite and (with storage.delete.enabled) delete the hosted repositories ' +
          this.prefixes.join(', '),
      );
    } else if (!o.access) {
      o.logger.warn('proxy.hosted is set but no auth is configured: pushes to hosted repositories are refused (401) until auth is configured (or proxy.hostedanonymouspush: true)');
    }
    const purging = o.config.storage.maintenance.uploadpurging;
    if (purging.enabled) this.purger = new UploadPurger({ driver: o.driver, agems: purging.agems, intervalms: purging.intervalms, dryrun: purging.dryrun, logger: o.logger });
  }

  /** True for names hosted here. */
  owns(name: string): boolean {
    return isHostedName(this.prefixes, name);
  }

  /** The stores of a hosted repository (stored under the name the client uses). */
  resolve(name: string): Target {
    return { name, ...this.target };
  }

  /** Starts the upload purger. */
  start(): void {
    this.purger?.start();
  }

  /** Stops the upload purger. */
  async stop(): Promise<void> {
    await this.purger?.stop();
  }
}
