/**
 * The storage driver contract, after distribution's `storagedriver.StorageDriver`: what an object
 * store can honour. Paths are logical, absolute and slash-separated (`/docker/registry/v2/...`),
 * always built by `paths.ts` from validated values; a driver maps them onto its medium (files under
 * a root directory, keys under a bucket's root prefix). Nothing above `lib/storage/` sees where the
 * bytes live: local files are reached only through the optional capabilities at the end.
 */
import type { Readable } from 'node:stream';
import type { FileHandle } from 'node:fs/promises';
import { InvalidPathError, MirrorError } from '../errors.js';

/** What `stat` reports of a path. Directories exist only as prefixes of files on object stores. */
export interface FileInfo {
  readonly path: string;
  readonly size: number;
  /** The last write (for a directory on an object store: the epoch, it has none). */
  readonly modTime: Date;
  readonly isDir: boolean;
}

/** Bytes `[start, end]` of a file (inclusive, as HTTP ranges); `end` defaults to the last byte. */
export interface ByteRange {
  readonly start: number;
  readonly end?: number;
}

/**
 * A write to `path`, started by `StorageDriver.writer`. Nothing of a new write is visible at `path`
 * before `commit`; an append writer resumes a write that an earlier writer `close`d (a hosted
 * upload between its PATCH requests), which may already be visible (filesystem: appended in place,
 * as distribution) or not (S3: parts of a pending multipart upload).
 */
export interface FileWriter {
  /**
   * Appends bytes; resolves when they are accepted (honours backpressure). The writer keeps no
   * reference to `chunk` once this resolves: the caller may fill it again.
   */
  write(chunk: Buffer): Promise<void>;
  /** Capability: appends several buffers in one gathered write (filesystem: `pwritev`), with no copy into one. */
  writev?(chunks: readonly Buffer[]): Promise<void>;
  /**
   * Capability: appends `length` bytes that `source` holds at `position`, read by the writer when
   * it sends them (S3: a part streamed from the file, with no buffer of its own). Ranges of
   * `blockSize` bytes, and a shorter last one, take that way; `source` must stay readable until the
   * writer has committed or been cancelled.
   */
  writeFrom?(source: PositionalReader, position: number, length: number): Promise<void>;
  /** With `writeFrom`: the size of the ranges it sends as they are (S3: `chunksize`). */
  readonly blockSize?: number;
  /** Bytes written so far, by this writer and the ones it resumes. */
  readonly size: number;
  /** Ends this writer and keeps what was written for a later `writer(path, { append: true })`. */
  close(): Promise<void>;
  /** Makes everything written visible at `path`, replacing any file there. */
  commit(): Promise<void>;
  /** Discards what was written (also what earlier writers of an append chain left). Idempotent. */
  cancel(): Promise<void>;
  /**
   * Capability: positional reads of the bytes written so far, for followers of a write in progress
   * (filesystem: its temporary file). Drivers without it get a local spool (`spooledWrite` in `blob-store.ts`).
   */
  readBack?(): Promise<PositionalReader>;
}

/** Positional reads of a local file; stays readable after the file is renamed or removed, until `close`. */
export interface PositionalReader {
  read(buffer: Buffer, offset: number, length: number, position: number): Promise<number>;
  close(): Promise<void>;
}

/** What a walk callback answers: nothing to go on, `skip` to leave out a directory's contents, `stop` to end the walk. */
export type WalkStep = void | 'skip' | 'stop';

/** A storage backend. */
export interface StorageDriver {
  /** distribution's driver name (`filesystem`, `s3aws`): health check names use it. */
  readonly name: string;
  /** File or directory info, or undefined when nothing is at `path`. */
  stat(path: string): Promise<FileInfo | undefined>;
  /**
   * Capability: `stat` of a path that is a file whenever it exists (a blob's data): undefined when
   * no file is there, without looking for a directory (S3: one `HEAD`, no listing after a miss).
   */
  statFile?(path: string): Promise<FileInfo | undefined>;
  /** The whole content of a (small) file; throws `PathNotFoundError`. */
  getContent(path: string): Promise<Buffer>;
  /** Writes a whole (small) file atomically: readers see the old content or the new, never a part. */
  putContent(path: string, content: Buffer | string): Promise<void>;
  /** Streams a file from `range.start` (default 0) to `range.end`; throws `PathNotFoundError`. */
  reader(path: string, range?: ByteRange): Promise<Readable>;
  /**
   * Starts a write to `path` (see `FileWriter`). With `append`, resumes the write an earlier writer
   * closed; throws `PathNotFoundError` when there is none.
   */
  writer(path: string, options?: { append?: boolean }): Promise<FileWriter>;
  /** The names (not paths) of the entries of a directory; throws `PathNotFoundError`. */
  list(path: string): Promise<string[]>;
  /** Moves a file to `to`, replacing what is there; throws `PathNotFoundError`. */
  move(from: string, to: string): Promise<void>;
  /** Removes a file or a directory tree; a missing path is not an error. */
  delete(path: string): Promise<void>;
  /**
   * Visits every file and directory below `path` in lexical order of path, directories before their
   * contents. A missing `path` visits nothing.
   */
  walk(path: string, visit: (info: FileInfo) => WalkStep | Promise<WalkStep>): Promise<void>;
  /**
   * A URL from which a client may fetch the file itself (`GET` or `HEAD`), or undefined when the
   * driver cannot hand out one (filesystem): the registry then serves the bytes.
   */
  redirectURL(method: string, path: string): Promise<string | undefined>;
  /** Rejects with the reason when the storage cannot be used (distribution's `storagedriver` health check). */
  healthCheck(): Promise<void>;
  /** Capability: positional reads of stored files on a local medium (the hot path's reused-buffer sender). */
  readonly local?: LocalFiles;
  /** Capability: the size and free space of the medium (the cache page). */
  diskUsage?(): Promise<{ readonly totalBytes: number; readonly freeBytes: number } | undefined>;
  /** Capability: the object key of a path in its bucket (S3), which a CloudFront distribution serves. */
  objectKey?(path: string): string;
  /** Capability: removes what dead processes left (temporary files, S3: stale multipart uploads of blobs); returns how many. */
  cleanup?(): Promise<number>;
}

/** Stored files on a local medium. */
export interface LocalFiles {
  /** A handle for positional reads of a stored file; throws `PathNotFoundError`. */
  openFile(path: string): Promise<FileHandle>;
}

/** Raised when a path does not exist. */
export class PathNotFoundError extends MirrorError {
  readonly path: string;
  constructor(path: string, cause?: unknown) {
    super('ERR_PATH_NOT_FOUND', `path not found: ${path}`, { cause });
    this.path = path;
  }
}

/** A storage operation the medium cannot perform as asked (an append to a committed object, a refused delete). */
export class StorageOperationError extends MirrorError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_STORAGE_OPERATION', message, options);
  }
}

/**
 * Reads up to `length` bytes of `source` at `position` into the start of `buffer`; returns how many.
 * A read of none throws: the local file ended before bytes known to be written to it.
 */
export async function readSomeAt(source: PositionalReader, buffer: Buffer, length: number, position: number): Promise<number> {
  const n = await source.read(buffer, 0, length, position);
  if (n === 0) throw new StorageOperationError(`the local file ended at byte ${position}, before bytes written to it`);
  return n;
}

/**
 * Bytes a client of a local file takes before its rate decides its chunk size (`chunkFor`): the
 * kernel's socket buffers take several MiB from any client at once, so the first few MiB say
 * nothing of its speed.
 */
export const GROW_AFTER = 16 * 1024 * 1024;

/** Bytes per second from which a client gets large chunks (a 1 Gbit/s client does; a few dozen such fill a 10 Gbit/s link). */
export const FAST_CLIENT = 32 * 1024 * 1024;

/**
 * How much of a local file a client is handed at a time, once it has taken `taken` bytes in
 * `elapsedMs`: `small` at first and whenever its average rate is below `FAST_CLIENT` (many slow
 * clients then hold little memory), `large` once it has taken `GROW_AFTER` bytes at that rate or
 * more. Most of what a chunk costs besides copying its bytes is fixed (a thread-pool round trip for
 * the read, a socket write, an event-loop turn), so a fast client is served with a fraction of the
 * chunks. The sender of cached blobs (`api/send-file.ts`) and the readers of a blob being fetched
 * that are too far behind the download to be handed its bytes from memory (`proxy/blob-fetch.ts`)
 * follow it.
 */
export function chunkFor(taken: number, elapsedMs: number, small: number, large: number): number {
  if (taken < GROW_AFTER) return small;
  return taken >= (elapsedMs / 1000) * FAST_CLIENT ? large : small;
}

/**
 * Writes every byte of `chunks` to `handle` from `position` on, gathered (a short write continues
 * where it stopped); returns the bytes written.
 */
export async function writeAllAt(handle: FileHandle, chunks: readonly Buffer[], position: number): Promise<number> {
  let total = 0;
  for (const c of chunks) total += c.length;
  let done = 0;
  let rest = chunks;
  while (done < total) {
    const { bytesWritten } = await (rest.length === 1 ? handle.write(rest[0]!, 0, rest[0]!.length, position + done) : handle.writev(rest, position + done));
    done += bytesWritten;
    rest = remainder(rest, bytesWritten);
  }
  return total;
}

/** What is left of `chunks` after their first `n` bytes. */
function remainder(chunks: readonly Buffer[], n: number): readonly Buffer[] {
  let i = 0;
  while (i < chunks.length && n >= chunks[i]!.length) n -= chunks[i++]!.length;
  if (i === chunks.length) return [];
  return [chunks[i]!.subarray(n), ...chunks.slice(i + 1)];
}

/** distribution's `PathRegexp`, without `.` and `..` components. */
const PATH = /^(\/[A-Za-z0-9._-]+)+$/;

/** Checks a logical path (`/` is the root); returns it. */
export function checkPath(path: string): string {
  if (path !== '/' && (!PATH.test(path) || path.split('/').some((s) => s === '.' || s === '..')))
    throw new InvalidPathError(`invalid storage path: ${JSON.stringify(path)}`);
  return path;
}

/**
 * `driver` with some of its methods replaced by `overrides`; every other member is the driver's
 * own, its methods bound to it (so that a wrapper never changes what `this` is inside them).
 */
export function withOverrides<D extends StorageDriver>(driver: D, overrides: Partial<StorageDriver>): D {
  const bound = new Map<PropertyKey, unknown>();
  return new Proxy(driver, {
    get(target, key) {
      if (Object.hasOwn(overrides, key)) return overrides[key as keyof StorageDriver];
      const value: unknown = Reflect.get(target, key, target);
      if (typeof value !== 'function') return value;
      let fn = bound.get(key);
      if (fn === undefined) bound.set(key, (fn = (value as (...a: unknown[]) => unknown).bind(target)));
      return fn;
    },
  });
}
