/**
 * Part-sized buffers reused from one S3 part to the next (`s3-writer.ts`), for the writes that come
 * from memory (hosted uploads; a blob fetch's parts are streamed from its spool instead,
 * `s3-from-file.ts`). Why: a fresh buffer of 10 MiB is memory the kernel maps page by page on first
 * touch, which on the development machine (a virtual machine) cost about 45 ms per part, against
 * about 1.5 ms for the same copy into a reused buffer. A few free buffers are kept, dropped once the
 * pool has been idle for a while, so an idle registry does not hold them.
 */

/** Free buffers kept at most: the parts one writer has in flight and the one it fills. */
const MAX_FREE = 4;
/** Free buffers are dropped after this long without a take or a give. */
const IDLE_MS = 10_000;

/** A pool of buffers of one size at a time (a driver's part size). */
export class PartBuffers {
  private free: Buffer[] = [];
  private idle?: NodeJS.Timeout;

  /** A buffer of `size` bytes (its content is whatever was there: fill it before use). */
  take(size: number): Buffer {
    this.touch();
    const i = this.free.findIndex((b) => b.length === size);
    if (i < 0) return Buffer.allocUnsafeSlow(size);
    return this.free.splice(i, 1)[0]!;
  }

  /**
   * Gives back a buffer nothing reads any more (a part whose upload succeeded: the store answered
   * after reading all of it). A buffer of a failed request is not given back: its socket may still
   * be sending it.
   */
  give(buffer: Buffer): void {
    this.touch();
    if (this.free.length < MAX_FREE) this.free.push(buffer);
  }

  /** Free buffers held now (for tests). */
  get held(): number {
    return this.free.length;
  }

  private touch(): void {
    if (this.idle) {
      this.idle.refresh();
      return;
    }
    this.idle = setTimeout(() => {
      this.free = [];
    }, IDLE_MS);
    // The pool alone must not keep the process alive.
    this.idle.unref();
  }
}

/** The process's pool: every S3 driver of the process shares it, so the free buffers are bounded once. */
export const sharedPartBuffers = new PartBuffers();
