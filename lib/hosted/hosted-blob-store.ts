/**
 * Blobs of hosted repositories, served from local storage only (distribution's `linkedBlobStore`
 * in its non-proxy mode): a repository has a blob only through its `_layers` link. No upstream is
 * ever asked and nothing is scheduled for expiry.
 */
import type { Digest } from '../distribution/digest.js';
import { BlobUnknownError } from '../errors.js';
import type { BlobHandle, BlobInfo, BlobService } from '../stores.js';
import type { BlobStore } from '../storage/blob-store.js';
import type { RepositoryStore } from '../storage/repository-store.js';

/** The blob side of hosted repositories. */
export class HostedBlobStore implements BlobService {
  constructor(
    private readonly blobs: BlobStore,
    private readonly repository: (name: string) => RepositoryStore,
  ) {}

  /** The blob for a `GET`; `BLOB_UNKNOWN` unless `name` links it and its data is there. */
  async get(name: string, digest: Digest): Promise<BlobHandle> {
    const { size } = await this.stat(name, digest);
    return { size, source: 'cache', open: (range) => this.blobs.reader(digest, range), redirect: (method) => this.blobs.redirectURL(method, digest) };
  }

  /** The blob's size for a `HEAD`. */
  async stat(name: string, digest: Digest): Promise<BlobInfo & { size: number }> {
    const size = await this.linkedSize(name, digest);
    if (size === undefined) throw new BlobUnknownError(digest);
    return { size, source: 'cache', redirect: (method) => this.blobs.redirectURL(method, digest) };
  }

  /** The size of a blob `name` links, or undefined. */
  async linkedSize(name: string, digest: Digest): Promise<number | undefined> {
    if (!(await this.repository(name).hasLayer(digest))) return undefined;
    return (await this.blobs.stat(digest))?.size;
  }

  /**
   * Cross-repository mount: links the blob into `name` when the repository stored as `from` links
   * it; returns its size, or undefined when there is nothing to mount (the client then uploads).
   */
  async mount(name: string, from: string, digest: Digest): Promise<number | undefined> {
    const size = await this.linkedSize(from, digest);
    if (size === undefined) return undefined;
    await this.repository(name).linkLayer(digest);
    return size;
  }

  /** Removes `name`'s link to the blob (the data stays for `garbage-collect`); `BLOB_UNKNOWN` without one. */
  async delete(name: string, digest: Digest): Promise<void> {
    const repo = this.repository(name);
    if (!(await repo.hasLayer(digest))) throw new BlobUnknownError(digest);
    await repo.unlinkLayer(digest);
  }
}
