/**
 * The storage driver contract, after distribution's `storagedriver.StorageDriver` but still shaped
 * by the filesystem: `openFile` and `FileWriter.tempPath` hand out local files, which an object
 * store has not (issue 16 makes the contract one it can honour). Paths are logical, absolute and
 * slash-separated (`/docker/registry/v2/...`), built by `paths.ts` from validated values; a driver
 * maps them onto its medium.
 */
import type { Readable } from 'node:stream';
import type { FileHandle } from 'node:fs/promises';
import { MirrorError } from '../errors.js';

/** What `stat` reports of a path. */
export interface FileInfo {
  readonly path: string;
  readonly size: number;
  readonly modTime: Date;
  readonly isDir: boolean;
}

/** A write in progress to a temporary location, committed by `commit` (an atomic rename). */
export interface FileWriter {
  /** Appends bytes; resolves when the bytes are accepted (honours backpressure). */
  write(chunk: Buffer): Promise<void>;
  /** Bytes written so far. */
  readonly size: number;
  /** A local file path that readers may open to follow the write as it grows (filesystem only). */
  readonly tempPath: string;
  /** Flushes and atomically moves the data to `path`; replaces any file there. */
  commit(path: string): Promise<void>;
  /** Discards the temporary data. Safe to call more than once and after commit. */
  cancel(): Promise<void>;
}

/** A storage backend. */
export interface StorageDriver {
  readonly name: string;
  /** File or directory info, or undefined when nothing is at `path`. */
  stat(path: string): Promise<FileInfo | undefined>;
  /** The whole content of a (small) file; throws `PathNotFoundError`. */
  getContent(path: string): Promise<Buffer>;
  /** Writes a whole (small) file atomically: readers see the old content or the new, never a part. */
  putContent(path: string, content: Buffer | string): Promise<void>;
  /** Streams `[start, end]` (inclusive, as HTTP ranges) of a file; throws `PathNotFoundError`. */
  reader(path: string, range?: { start: number; end: number }): Promise<Readable>;
  /** A handle for positional reads of a stored file (local media only); throws `PathNotFoundError`. */
  openFile?(path: string): Promise<FileHandle>;
  /** Starts a write to a temporary file on the same medium. */
  writer(): Promise<FileWriter>;
  /** The names (not paths) of the entries of a directory; throws `PathNotFoundError`. */
  list(path: string): Promise<string[]>;
  /** Removes a file or a directory tree; a missing path is not an error. */
  delete(path: string): Promise<void>;
}

/** Raised when a path does not exist. */
export class PathNotFoundError extends MirrorError {
  readonly path: string;
  constructor(path: string, cause?: unknown) {
    super('ERR_PATH_NOT_FOUND', `path not found: ${path}`, { cause });
    this.path = path;
  }
}
