/**
 * The global blob store: content-addressed data under `blobs/`. Nothing is written here that does
 * not hash to its name.
 */
import type { Readable } from 'node:stream';
import type { FileHandle } from 'node:fs/promises';
import { DigestMismatchError } from '../errors.js';
import { digestOf, parseDigest, type Digest } from '../distribution/digest.js';
import type { FileWriter, StorageDriver } from './driver.js';
import { PathNotFoundError } from './driver.js';
import { blobDataPath, blobDir, blobsDir, blobsRoot, isBlobPrefix, isDigestAlgorithm } from './paths.js';
import { spooledWrite, type SpooledWrite } from './spool.js';
import { inSpan } from '../tracing/tracing.js';

/** Content-addressed blob data. */
export class BlobStore {
  constructor(
    private readonly driver: StorageDriver,
    /** `storage.redirect.disable` decided once: false streams every blob through the registry. */
    private readonly options: { readonly redirect?: boolean } = {},
  ) {}

  /** The size of the blob's data, or undefined when it is not stored. */
  async stat(digest: Digest): Promise<{ size: number } | undefined> {
    const info = await this.driver.stat(blobDataPath(digest));
    return info && !info.isDir ? { size: info.size } : undefined;
  }

  /** The whole blob (manifests and configs: small). */
  get(digest: Digest): Promise<Buffer> {
    return this.driver.getContent(blobDataPath(digest));
  }

  /** Streams the blob, or `[start, end]` of it. */
  reader(digest: Digest, range?: { start: number; end: number }): Promise<Readable> {
    return this.driver.reader(blobDataPath(digest), range);
  }

  /** A handle for positional reads of the blob's data, when the driver stores files locally. */
  openFile(digest: Digest): Promise<FileHandle> | undefined {
    return this.driver.local?.openFile(blobDataPath(digest));
  }

  /**
   * A URL where a client fetches the blob itself (`GET`, `HEAD`), when redirects are on and the
   * driver hands out such URLs (S3: presigned); undefined otherwise, without any I/O.
   */
  async redirectURL(method: string, digest: Digest): Promise<string | undefined> {
    if (!this.options.redirect) return undefined;
    return this.driver.redirectURL(method, blobDataPath(digest));
  }

  /** Starts writing the blob's data, readable back while it is written; committed by `commit`. */
  writer(digest: Digest): Promise<SpooledWrite> {
    return spooledWrite(this.driver, blobDataPath(digest));
  }

  /** Stores `content` after checking that it hashes to `digest`. */
  async put(digest: Digest, content: Buffer): Promise<void> {
    const actual = digestOf(content, digest.algorithm);
    if (actual !== digest.value) throw new DigestMismatchError(`content hashes to ${actual}, not ${digest.value}`);
    await inSpan('storage commit', { 'registry.digest': digest.value, 'registry.size': content.length }, async () => {
      if (await this.stat(digest)) return;
      await this.driver.putContent(blobDataPath(digest), content);
    });
  }

  /** Commits a verified write of `writer(digest)` (the caller hashed it while writing). */
  commit(writer: FileWriter, digest: Digest): Promise<void> {
    return inSpan('storage commit', { 'registry.digest': digest.value, 'registry.size': writer.size }, async () => {
      if (await this.stat(digest)) {
        await writer.cancel();
        return;
      }
      await writer.commit();
    });
  }

  /** Deletes the blob's directory. */
  async delete(digest: Digest): Promise<void> {
    await this.driver.delete(blobDir(digest));
  }

  /** Every stored blob (walks `blobs/<alg>/<xx>/<hex>/data`). */
  async list(): Promise<Digest[]> {
    const found: Digest[] = [];
    // Entries of other names hold no blob of the layout.
    for (const algorithm of (await listOrEmpty(this.driver, blobsRoot())).filter(isDigestAlgorithm)) {
      for (const prefix of (await listOrEmpty(this.driver, blobsDir(algorithm))).filter(isBlobPrefix)) {
        for (const hex of await listOrEmpty(this.driver, blobsDir(algorithm, prefix))) {
          const d = parseDigest(`${algorithm}:${hex}`);
          if (d && hex.startsWith(prefix) && (await this.stat(d))) found.push(d);
        }
      }
    }
    return found;
  }
}

/** A directory's entries, or none when it does not exist. */
export async function listOrEmpty(driver: StorageDriver, path: string): Promise<string[]> {
  try {
    return await driver.list(path);
  } catch (err) {
    if (err instanceof PathNotFoundError) return [];
    throw err;
  }
}
