/**
 * The global blob store: content-addressed data under `blobs/`. Nothing is written here that does
 * not hash to its name.
 *
 * A blob's write is one that followers read back while it is under way (`spooledWrite`): one
 * upstream fetch streams a blob to every waiting client at once and into the store. On a driver
 * whose writer is a local file (filesystem) the followers read that file. On any other (S3) the
 * bytes go first to a local spool file, unlinked at once so that a crash leaves nothing, which
 * followers read; a feeder hands the spool to the driver's writer behind them (S3: each part
 * streamed from the spool once it is full, `writeFrom`), so the upstream is read at the local
 * disk's pace whatever the store's. Commit waits for the feeder, then commits the driver's write;
 * cancel aborts it.
 */
import type { Readable } from 'node:stream';
import { open, unlink, type FileHandle } from 'node:fs/promises';
import { randomUUID } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DigestMismatchError } from '../errors.js';
import { digestOf, parseDigest, type Digest } from '../distribution/digest.js';
import type { FileWriter, PositionalReader, StorageDriver } from './driver.js';
import { PathNotFoundError, readSomeAt, writeAllAt } from './driver.js';
import { blobDataPath, blobDir, blobsDir, blobsRoot, isBlobPrefix, isDigestAlgorithm } from './paths.js';
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
    const path = blobDataPath(digest);
    // `data` is never a directory: a driver that can skip looking for one (S3: no listing) does.
    const info = await (this.driver.statFile ? this.driver.statFile(path) : this.driver.stat(path));
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

/** A write and the reader of what it has written so far. */
export interface SpooledWrite {
  readonly writer: FileWriter;
  /** Stays readable after commit or cancel, until closed. */
  readonly reader: PositionalReader;
  /**
   * The commit publishes to a remote store behind the spool (S3: the parts still under way, the
   * last one, CompleteMultipartUpload): followers need not wait for it once the bytes are verified.
   * False for a local file renamed into place.
   */
  readonly remote: boolean;
}

/** Bytes the feeder hands to the driver's writer at a time. */
const FEED_CHUNK = 1024 * 1024;

/** Starts a new write to `path` whose bytes can be read back at once. */
export async function spooledWrite(driver: StorageDriver, path: string, spoolDir = tmpdir()): Promise<SpooledWrite> {
  const writer = await driver.writer(path);
  if (writer.readBack) {
    try {
      return { writer, reader: await writer.readBack(), remote: false };
    } catch (err) {
      await writer.cancel();
      throw err;
    }
  }
  const file = join(spoolDir, `registry-spool-${randomUUID()}`);
  let handle: FileHandle;
  try {
    handle = await open(file, 'wx+');
    await unlink(file);
  } catch (err) {
    await writer.cancel();
    throw err;
  }
  return feeding(writer, handle);
}

function feeding(inner: FileWriter, handle: FileHandle): SpooledWrite {
  let spooled = 0;
  let fed = 0;
  let failure: unknown;
  let stopped = false;
  /** Set by close and commit: the rest is fed even when it is less than a block. */
  let ending = false;
  let feeder: Promise<void> | undefined;
  const source: PositionalReader = {
    read: async (buffer, offset, length, position) => (await handle.read(buffer, offset, length, position)).bytesRead,
    // Closed with the spool, below.
    close: async () => undefined,
  };
  // A writer that reads the spool itself (S3: each part streamed from it) is handed whole blocks;
  // any other gets the bytes read into one buffer, reused from read to read (the writer keeps no
  // reference to a chunk once its write resolves, `FileWriter.write`). Either way no fresh memory
  // per chunk: on a virtual machine its page faults were a sixth of the process's CPU in a cold pull.
  const block = inner.writeFrom && inner.blockSize ? inner.blockSize : undefined;
  let feedBuffer: Buffer | undefined;
  // The handle is shared by the writer and the reader: closed when both are done with it.
  let users = 2;
  const release = async (): Promise<void> => {
    if (--users === 0) await handle.close().catch(() => undefined);
  };
  let writerDone = false;
  let readerDone = false;
  const finishWriter = async (): Promise<void> => {
    if (writerDone) return;
    writerDone = true;
    await release();
  };
  /** Bytes to hand over now: up to a block when one is full or the write ends, else none. */
  const due = (): number => {
    const n = spooled - fed;
    if (stopped || failure !== undefined || n === 0) return 0;
    if (block === undefined) return Math.min(FEED_CHUNK, n);
    return n >= block ? block : ending ? n : 0;
  };
  const feed = async (): Promise<void> => {
    for (let n = due(); n > 0; n = due()) {
      if (block !== undefined) {
        await inner.writeFrom!(source, fed, n);
        fed += n;
        continue;
      }
      feedBuffer ??= Buffer.allocUnsafe(FEED_CHUNK);
      const read = await readSomeAt(source, feedBuffer, n, fed);
      await inner.write(feedBuffer.subarray(0, read));
      fed += read;
    }
  };
  const kick = (): void => {
    feeder ??= feed()
      .catch((err: unknown) => {
        failure ??= err;
      })
      .finally(() => {
        feeder = undefined;
        if (due() > 0) kick();
      });
  };
  const drained = async (): Promise<void> => {
    ending = true;
    kick();
    while (feeder) await feeder;
    if (failure !== undefined) throw failure;
  };
  const finish = async (how: 'close' | 'commit'): Promise<void> => {
    try {
      await drained();
      await inner[how]();
    } catch (err) {
      await inner.cancel().catch(() => undefined);
      throw err;
    } finally {
      await finishWriter();
    }
  };
  const writer: FileWriter = {
    get size() {
      return spooled;
    },
    write: async (chunk) => {
      // The store failing behind the spool fails the write: the cache write is abandoned.
      if (failure !== undefined) throw failure;
      spooled += await writeAllAt(handle, [chunk], spooled);
      if (due() > 0) kick();
    },
    writev: async (chunks) => {
      if (failure !== undefined) throw failure;
      spooled += await writeAllAt(handle, chunks, spooled);
      if (due() > 0) kick();
    },
    close: () => finish('close'),
    commit: () => finish('commit'),
    cancel: async () => {
      stopped = true;
      await feeder?.catch(() => undefined);
      await inner.cancel().catch(() => undefined);
      await finishWriter();
    },
  };
  return {
    writer,
    remote: true,
    reader: {
      read: source.read,
      close: async () => {
        if (readerDone) return;
        readerDone = true;
        await release();
      },
    },
  };
}
