/**
 * Hosted repositories beside the pull-through cache (extension `proxy.hosted`): names under the
 * configured prefixes are pushed to and served from local storage in distribution's layout and
 * never reach an upstream; every other name keeps the pull-through behaviour. This module decides
 * which names are hosted, builds their stores, and runs the upload purger. Who may write, and the
 * HTTP side of it, is lib/api's (lib/api/writable.ts).
 */
import type { Logger } from 'winston';
import type { Digest } from '../distribution/digest.js';
import type { StorageDriver } from '../storage/driver.js';
import type { BlobStore } from '../storage/blob-store.js';
import type { RepositoryStore } from '../storage/repository-store.js';
import { UploadStore } from './upload-store.js';
import { HostedBlobStore } from './hosted-blob-store.js';
import { HostedManifestStore, HostedTagService } from './hosted-manifest-store.js';
import type { PushValidation } from './manifest-verify.js';
import type { ReferrersResult, ReferrersService } from '../stores.js';
import { listReferrers } from './referrers.js';
import { UploadPurger } from './upload-purger.js';

/** True when `name` lies under one of `prefixes` (each ending with `/`; `internal/` also names `internal`). */
export function isHostedName(prefixes: readonly string[], name: string): boolean {
  return prefixes.some((p) => name.startsWith(p) || name === p.slice(0, -1));
}

/** What hosted repositories are built from. */
interface HostedOptions {
  /** `proxy.hosted`: the name prefixes, each ending with `/`. */
  readonly prefixes: readonly string[];
  readonly driver: StorageDriver;
  readonly blobs: BlobStore;
  readonly repository: (name: string) => RepositoryStore;
  /** `storage.maintenance.uploadpurging`; undefined: abandoned uploads are kept. */
  readonly purging?: { readonly agems: number; readonly intervalms: number; readonly dryrun: boolean };
  /** `validation:` of pushes: which children of an index must be present, which URLs a layer may carry. */
  readonly validation: PushValidation;
  readonly logger: Logger;
}

/** The hosted side of the registry: its stores, stored under the names clients use. */
export class HostedRepositories {
  readonly prefixes: readonly string[];
  readonly blobs: HostedBlobStore;
  readonly manifests: HostedManifestStore;
  readonly tags: HostedTagService;
  readonly uploads: UploadStore;
  private readonly purger?: UploadPurger;

  constructor(private readonly options: HostedOptions) {
    this.prefixes = options.prefixes;
    this.blobs = new HostedBlobStore(options.blobs, options.repository);
    this.manifests = new HostedManifestStore(options.blobs, options.repository, options.validation);
    this.tags = new HostedTagService(options.repository);
    this.uploads = new UploadStore(options.driver, options.blobs, options.repository);
    if (options.purging) this.purger = new UploadPurger({ driver: options.driver, ...options.purging, logger: options.logger });
  }

  /** True for names hosted here. */
  owns(name: string): boolean {
    return isHostedName(this.prefixes, name);
  }

  /** The referrers API of hosted repositories: computed from each repository's revisions. */
  readonly referrers: ReferrersService = {
    list: (name: string, subject: Digest, artifactType: string | undefined): Promise<ReferrersResult> =>
      listReferrers(this.options.blobs, this.options.repository(name), subject, artifactType),
  };

  /** Starts the upload purger. */
  start(): void {
    this.purger?.start();
  }

  /** Stops the upload purger. */
  async stop(): Promise<void> {
    await this.purger?.stop();
  }
}
