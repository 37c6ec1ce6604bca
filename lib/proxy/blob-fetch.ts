/**
 * One upstream download of a blob, written to a temporary file and followed by any number of
 * readers. The upstream is read at the disk's pace, not at the slowest client's; every client reads
 * the growing file at its own pace, so a slow client costs no memory. The blob is committed only
 * after its digest and size are verified, and no reader ever sees the end of a body before that:
 * a reader holds back the last byte until the commit, so wrong or truncated content always ends in
 * an aborted transfer, never in a clean end.
 */
import { EventEmitter } from 'node:events';
import { open, type FileHandle } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { MirrorError } from '../errors.js';
import { hasherFor, type Digest } from '../distribution/digest.js';
import type { FileWriter } from '../storage/driver.js';

/** Raised to readers when the fetched bytes do not hash to the digest or have the wrong length. */
export class BlobVerificationError extends MirrorError {
  constructor(message: string) {
    super('ERR_DIGEST_MISMATCH', message);
  }
}

type State = 'streaming' | 'committed' | 'failed';

/** A blob being fetched. Create with `BlobFetch.start`. */
export class BlobFetch {
  readonly digest: Digest;
  /** The size the upstream announced (`Content-Length`), if it did. */
  readonly size: number | undefined;
  private state: State = 'streaming';
  private error?: Error;
  private written = 0;
  private readers = 0;
  private readonly events = new EventEmitter();
  private readonly fd: Promise<FileHandle>;
  /** Settles when the blob is committed (resolves) or abandoned (rejects). */
  readonly done: Promise<void>;

  private constructor(digest: Digest, size: number | undefined, writer: FileWriter, body: Readable, commit: (w: FileWriter) => Promise<void>) {
    this.digest = digest;
    this.size = size;
    this.events.setMaxListeners(0);
    // One shared read descriptor, opened before the temp file can be renamed away: positional reads
    // keep working through the rename at commit.
    this.fd = open(writer.tempPath, 'r');
    this.done = this.pump(writer, body, commit);
    // `done` is awaited by whoever cares; an unobserved failure must not crash the process.
    this.done.catch(() => undefined);
  }

  /**
   * Starts copying `body` into `writer`. `commit` moves the verified file into the store and links it;
   * it runs only when the digest and size matched.
   */
  static start(digest: Digest, size: number | undefined, writer: FileWriter, body: Readable, commit: (w: FileWriter) => Promise<void>): BlobFetch {
    return new BlobFetch(digest, size, writer, body, commit);
  }

  /** Bytes on disk so far. */
  get bytesWritten(): number {
    return this.written;
  }

  /** True until the blob is committed or abandoned; readers may be created only meanwhile. */
  get streaming(): boolean {
    return this.state === 'streaming';
  }

  get failed(): boolean {
    return this.state === 'failed';
  }

  private async pump(writer: FileWriter, body: Readable, commit: (w: FileWriter) => Promise<void>): Promise<void> {
    const hash = hasherFor(this.digest);
    try {
      for await (const chunk of body as AsyncIterable<Buffer>) {
        hash.update(chunk);
        await writer.write(chunk);
        this.written += chunk.length;
        this.events.emit('change');
      }
      if (this.size !== undefined && this.written !== this.size) {
        throw new BlobVerificationError(`upstream sent ${this.written} bytes for ${this.digest.value}, announced ${this.size}`);
      }
      const actual = `${this.digest.algorithm}:${hash.digest('hex')}`;
      if (actual !== this.digest.value) {
        throw new BlobVerificationError(`upstream bytes hash to ${actual}, not ${this.digest.value}`);
      }
      await commit(writer);
      this.state = 'committed';
    } catch (err) {
      this.state = 'failed';
      this.error = err instanceof Error ? err : new Error(String(err));
      body.destroy();
      await writer.cancel().catch(() => undefined);
      throw this.error;
    } finally {
      this.events.emit('change');
      if (this.readers === 0) await this.closeFd();
    }
  }

  /**
   * A stream of bytes `[start, end]` of the blob (inclusive; `end` defaults to the last byte). It
   * errors if the fetch fails, and ends only after the blob was committed.
   */
  createReader(start = 0, end?: number): Readable {
    this.readers++;
    let position = start;
    const last = end ?? (this.size !== undefined ? this.size - 1 : Number.MAX_SAFE_INTEGER);
    let finished = false;
    const release = async (): Promise<void> => {
      if (finished) return;
      finished = true;
      this.readers--;
      if (this.readers === 0 && this.state !== 'streaming') await this.closeFd();
    };
    const fetch = this;
    const readable = new Readable({
      highWaterMark: 1024 * 1024,
      read(size) {
        fetch.readChunk(position, last, size).then(
          (chunk) => {
            if (chunk === null) {
              void release();
              this.push(null);
            } else {
              position += chunk.length;
              this.push(chunk);
            }
          },
          (err: Error) => {
            void release();
            this.destroy(err);
          },
        );
      },
      destroy(err, callback) {
        void release().finally(() => callback(err));
      },
    });
    return readable;
  }

  /** The next chunk at `position`, waiting for the writer when needed; null at the end. */
  private async readChunk(position: number, last: number, want: number): Promise<Buffer | null> {
    for (;;) {
      if (this.state === 'failed') throw this.error!;
      const committed = this.state === 'committed';
      const end = committed ? Math.min(last + 1, this.written) : Math.min(last + 1, this.written - 1);
      if (position >= end) {
        if (committed) return null;
        await new Promise<void>((resolve) => this.events.once('change', resolve));
        continue;
      }
      const length = Math.min(end - position, Math.max(want, 64 * 1024), 1024 * 1024);
      const buffer = Buffer.allocUnsafe(length);
      const { bytesRead } = await (await this.fd).read(buffer, 0, length, position);
      return buffer.subarray(0, bytesRead);
    }
  }

  private async closeFd(): Promise<void> {
    const fd = await this.fd.catch(() => undefined);
    await fd?.close().catch(() => undefined);
  }
}
