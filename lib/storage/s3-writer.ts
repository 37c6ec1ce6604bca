/**
 * Writes to S3 as distribution's `s3-aws` driver does (`writer` in `s3.go`): the bytes are buffered
 * and sent as parts of exactly `chunksize` bytes (the last may be smaller) of a multipart upload
 * at the file's key, completed at commit; a write that fits in one chunk and was never closed is
 * one PutObject. `close` leaves the multipart upload pending with what was written, and an append
 * writer resumes it: it finds the upload by key and lists its parts, so a registry:2 on the same
 * bucket resumes our hosted uploads and we resume its.
 */
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  ListMultipartUploadsCommand,
  ListPartsCommand,
  PutObjectCommand,
  UploadPartCommand,
  UploadPartCopyCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { readSomeAt, StorageOperationError, type FileWriter, type PositionalReader } from './driver.js';
import { putObjectFrom, uploadPartFrom } from './s3-from-file.js';
import type { PartBuffers } from './part-buffers.js';

/** S3's smallest part but the last. */
const MIN_PART = 5 * 1024 * 1024;
/** Parts uploaded at once by one writer: the upload keeps pace with a fast download. */
const PARTS_IN_FLIGHT = 3;

/** What a writer needs of its driver. */
export interface S3WriteTarget {
  readonly client: S3Client;
  readonly bucket: string;
  readonly chunkSize: number;
  /** Where part buffers come from and go back to once their upload succeeded. */
  readonly partBuffers: PartBuffers;
  /** Content type, ACL, encryption and storage class of new objects (the driver's settings). */
  objectParams(): {
    ContentType: string;
    ACL?: string;
    ServerSideEncryption?: string;
    SSEKMSKeyId?: string;
    StorageClass?: string;
  };
}

interface Part {
  readonly PartNumber: number;
  ETag: string;
  readonly Size: number;
}

/** A new write to `key` (nothing is sent before the first full chunk, `close` or `commit`). */
export function newS3Writer(t: S3WriteTarget, key: string): FileWriter {
  return new S3Writer(t, key, undefined, []);
}

/**
 * Resumes the pending multipart upload at `key`; undefined when there is none. Like distribution,
 * the first pending upload with exactly this key is taken.
 */
export async function resumeS3Writer(t: S3WriteTarget, key: string): Promise<FileWriter | undefined> {
  let keyMarker: string | undefined;
  let uploadIdMarker: string | undefined;
  for (;;) {
    const page = await t.client.send(new ListMultipartUploadsCommand({ Bucket: t.bucket, Prefix: key, KeyMarker: keyMarker, UploadIdMarker: uploadIdMarker }));
    const upload = (page.Uploads ?? []).find((u) => u.Key === key && u.UploadId);
    if (upload) return new S3Writer(t, key, upload.UploadId, await listParts(t, key, upload.UploadId!));
    if (!page.IsTruncated) return undefined;
    keyMarker = page.NextKeyMarker;
    uploadIdMarker = page.NextUploadIdMarker;
  }
}

async function listParts(t: S3WriteTarget, key: string, uploadId: string): Promise<Part[]> {
  const parts: Part[] = [];
  let marker: string | undefined;
  for (;;) {
    const page = await t.client.send(new ListPartsCommand({ Bucket: t.bucket, Key: key, UploadId: uploadId, PartNumberMarker: marker }));
    for (const p of page.Parts ?? []) parts.push({ PartNumber: p.PartNumber!, ETag: p.ETag!, Size: p.Size ?? 0 });
    if (!page.IsTruncated) return parts.sort((a, b) => a.PartNumber - b.PartNumber);
    marker = page.NextPartNumberMarker;
  }
}

class S3Writer implements FileWriter {
  /** The part being filled (from `partBuffers`, `chunkSize` bytes), and how much of it is. */
  private part: Buffer | undefined;
  private bufferedBytes = 0;
  private flushed: number;
  private done?: 'closed' | 'committed' | 'cancelled';
  /** A part shorter than a chunk was sent from a file: it is the last one, nothing may follow. */
  private sealed = false;
  /** The whole write, smaller than a chunk, left in a file: sent from it by commit (PutObject) or close (a part). */
  private fromFile?: { readonly source: PositionalReader; readonly position: number; readonly length: number };
  /** Part uploads under way, oldest first; their failure fails the next write or the commit. */
  private inFlight: Promise<void>[] = [];

  constructor(
    private readonly t: S3WriteTarget,
    private readonly key: string,
    private uploadId: string | undefined,
    private parts: Part[],
  ) {
    this.flushed = parts.reduce((sum, p) => sum + p.Size, 0);
  }

  get size(): number {
    return this.flushed + this.bufferedBytes + (this.fromFile?.length ?? 0);
  }

  /** A part: `writeFrom` sends ranges of this size (and a shorter last one) as parts of their own. */
  get blockSize(): number {
    return this.t.chunkSize;
  }

  async write(chunk: Buffer): Promise<void> {
    this.checkWritable();
    // A resumed upload whose last part is too small to stay a middle part is restarted with the
    // bytes so far as its first part (or in the buffer when they are fewer than a part), as
    // distribution does.
    const last = this.parts[this.parts.length - 1];
    if (last && last.Size < MIN_PART) await this.restart();
    // Copied before any wait: the caller may reuse `chunk` once this resolves.
    for (let at = 0; at < chunk.length;) {
      at += this.buffer(chunk.subarray(at));
      if (this.bufferedBytes === this.t.chunkSize) await this.flush();
    }
  }

  /**
   * Appends bytes a local file holds, sent from it (`s3-from-file.ts`): a whole chunk, or the last
   * bytes after at least one part, becomes a part; a first write smaller than a chunk is the whole
   * object, sent by `commit`. Anything else (bytes already buffered, a resumed upload to restart,
   * a longer range) is read into the buffer, as `write`.
   */
  async writeFrom(source: PositionalReader, position: number, length: number): Promise<void> {
    this.checkWritable();
    const last = this.parts[this.parts.length - 1];
    if (length > 0 && length < this.t.chunkSize && !this.uploadId && this.parts.length === 0 && this.bufferedBytes === 0) {
      this.fromFile = { source, position, length };
      this.sealed = true;
      return;
    }
    const whole = length === this.t.chunkSize || (length > 0 && length < this.t.chunkSize && this.parts.length > 0);
    if (!whole || this.bufferedBytes > 0 || (last && last.Size < MIN_PART)) {
      const chunk = Buffer.allocUnsafe(Math.min(length, 1024 * 1024));
      for (let done = 0; done < length;) {
        const n = await readSomeAt(source, chunk, Math.min(chunk.length, length - done), position + done);
        await this.write(chunk.subarray(0, n));
        done += n;
      }
      return;
    }
    if (length < this.t.chunkSize) this.sealed = true;
    await this.uploadFrom(source, position, length);
  }

  /** Sends bytes of a file as the next part. */
  private uploadFrom(source: PositionalReader, position: number, length: number): Promise<void> {
    return this.uploadPart(length, (uploadId, PartNumber) =>
      uploadPartFrom({ client: this.t.client, bucket: this.t.bucket, key: this.key, uploadId, partNumber: PartNumber }, source, position, length),
    );
  }

  async close(): Promise<void> {
    this.check();
    this.done = 'closed';
    // The pending upload is what a later append writer (ours or registry:2's) finds.
    await this.ensureUpload();
    const file = this.fromFile;
    this.fromFile = undefined;
    if (file) await this.uploadFrom(file.source, file.position, file.length);
    await this.flush();
    await this.settle();
  }

  async commit(): Promise<void> {
    this.check();
    this.done = 'committed';
    if (this.fromFile && !this.uploadId) {
      const { source, position, length } = this.fromFile;
      this.fromFile = undefined;
      await putObjectFrom(this.t.client, { Bucket: this.t.bucket, Key: this.key, ...this.t.objectParams() } as never, source, position, length);
      return;
    }
    if (!this.uploadId) {
      const part = this.part;
      const Body = part ? part.subarray(0, this.bufferedBytes) : Buffer.alloc(0);
      this.part = undefined;
      this.bufferedBytes = 0;
      await this.t.client.send(new PutObjectCommand({ Bucket: this.t.bucket, Key: this.key, Body, ...this.t.objectParams() } as never));
      if (part) this.t.partBuffers.give(part);
      return;
    }
    try {
      await this.flush();
      // An empty write still needs one part to complete.
      if (this.parts.length === 0) await this.uploadBuffer(Buffer.alloc(0));
      await this.settle();
      await this.complete();
    } catch (err) {
      await this.abort().catch(() => undefined);
      throw err;
    }
  }

  async cancel(): Promise<void> {
    if (this.done === 'cancelled' || this.done === 'committed') return;
    this.done = 'cancelled';
    this.fromFile = undefined;
    if (this.part) this.t.partBuffers.give(this.part);
    this.part = undefined;
    this.bufferedBytes = 0;
    await Promise.allSettled(this.inFlight);
    await this.abort();
  }

  private checkWritable(): void {
    this.check();
    if (this.sealed) throw new StorageOperationError(`writer of ${this.key} sent its last part already`);
  }

  private check(): void {
    if (this.done) throw new StorageOperationError(`writer of ${this.key} already ${this.done}`);
  }

  private async ensureUpload(): Promise<string> {
    if (!this.uploadId) {
      const created = await this.t.client.send(new CreateMultipartUploadCommand({ Bucket: this.t.bucket, Key: this.key, ...this.t.objectParams() } as never));
      this.uploadId = created.UploadId!;
    }
    return this.uploadId;
  }

  /** Copies what fits of `bytes` into the part being filled; returns how many bytes it took. */
  private buffer(bytes: Buffer): number {
    this.part ??= this.t.partBuffers.take(this.t.chunkSize);
    const n = bytes.copy(this.part, this.bufferedBytes);
    this.bufferedBytes += n;
    return n;
  }

  /** Sends the part being filled (if any bytes are in it) as the next part. */
  private async flush(): Promise<void> {
    const part = this.part;
    if (!part || this.bufferedBytes === 0) return;
    const size = this.bufferedBytes;
    this.part = undefined;
    this.bufferedBytes = 0;
    await this.uploadBuffer(part.subarray(0, size), part);
  }

  /** Sends `body` as the next part; `pooled`, the buffer it lies in, goes back to the pool once the part is stored. */
  private uploadBuffer(body: Buffer, pooled?: Buffer): Promise<void> {
    return this.uploadPart(body.length, async (UploadId, PartNumber) => {
      const sent = await this.t.client.send(
        new UploadPartCommand({ Bucket: this.t.bucket, Key: this.key, UploadId, PartNumber, Body: body, ContentLength: body.length }),
      );
      if (pooled) this.t.partBuffers.give(pooled);
      return sent.ETag!;
    });
  }

  /** Starts the next part's upload (`send` resolves with its ETag); waits while too many are under way. */
  private async uploadPart(size: number, send: (uploadId: string, partNumber: number) => Promise<string>): Promise<void> {
    const uploadId = await this.ensureUpload();
    const part: Part = { PartNumber: this.parts.length + 1, ETag: '', Size: size };
    this.parts.push(part);
    this.flushed += size;
    const sending = send(uploadId, part.PartNumber).then((etag) => {
      part.ETag = etag;
    });
    sending.catch(() => undefined);
    this.inFlight.push(sending);
    if (this.inFlight.length >= PARTS_IN_FLIGHT) await this.inFlight.shift();
  }

  /** Waits for every part under way; rejects with the first failure. */
  private async settle(): Promise<void> {
    const all = this.inFlight;
    this.inFlight = [];
    await Promise.all(all);
  }

  private async complete(): Promise<void> {
    await this.t.client.send(
      new CompleteMultipartUploadCommand({
        Bucket: this.t.bucket,
        Key: this.key,
        UploadId: this.uploadId,
        MultipartUpload: { Parts: this.parts.map((p) => ({ PartNumber: p.PartNumber, ETag: p.ETag })) },
      }),
    );
  }

  private async abort(): Promise<void> {
    if (!this.uploadId) return;
    const uploadId = this.uploadId;
    this.uploadId = undefined;
    await this.t.client.send(new AbortMultipartUploadCommand({ Bucket: this.t.bucket, Key: this.key, UploadId: uploadId })).catch((err: unknown) => {
      if ((err as { name?: string }).name !== 'NoSuchUpload') throw err;
    });
  }

  private async restart(): Promise<void> {
    await this.settle();
    const total = this.flushed;
    await this.complete();
    this.uploadId = undefined;
    this.parts = [];
    this.flushed = 0;
    if (total < MIN_PART) {
      const got = await this.t.client.send(new GetObjectCommand({ Bucket: this.t.bucket, Key: this.key }));
      // Nothing is buffered yet (a restart comes before the first write) and `total` fits in a part.
      this.buffer(Buffer.from(await got.Body!.transformToByteArray()));
      return;
    }
    const uploadId = await this.ensureUpload();
    const copied = await this.t.client.send(
      new UploadPartCopyCommand({ Bucket: this.t.bucket, Key: this.key, UploadId: uploadId, PartNumber: 1, CopySource: `${this.t.bucket}/${this.key}` }),
    );
    this.parts = [{ PartNumber: 1, ETag: copied.CopyPartResult!.ETag!, Size: total }];
    this.flushed = total;
  }
}
