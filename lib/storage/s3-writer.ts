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
import { StorageOperationError, type FileWriter } from './driver.js';

/** S3's smallest part but the last. */
const MIN_PART = 5 * 1024 * 1024;
/** Parts uploaded at once by one writer: the upload keeps pace with a fast download. */
const PARTS_IN_FLIGHT = 3;

/** What a writer needs of its driver. */
export interface S3WriteTarget {
  readonly client: S3Client;
  readonly bucket: string;
  readonly chunkSize: number;
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
  private buffered: Buffer[] = [];
  private bufferedBytes = 0;
  private flushed: number;
  private done?: 'closed' | 'committed' | 'cancelled';
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
    return this.flushed + this.bufferedBytes;
  }

  async write(chunk: Buffer): Promise<void> {
    this.check();
    // A resumed upload whose last part is too small to stay a middle part is restarted with the
    // bytes so far as its first part (or in the buffer when they are fewer than a part), as
    // distribution does.
    const last = this.parts[this.parts.length - 1];
    if (last && last.Size < MIN_PART) await this.restart();
    this.buffered.push(chunk);
    this.bufferedBytes += chunk.length;
    while (this.bufferedBytes >= this.t.chunkSize) await this.flush();
  }

  async close(): Promise<void> {
    this.check();
    this.done = 'closed';
    // The pending upload is what a later append writer (ours or registry:2's) finds.
    await this.ensureUpload();
    await this.flush();
    await this.settle();
  }

  async commit(): Promise<void> {
    this.check();
    this.done = 'committed';
    if (!this.uploadId) {
      await this.t.client.send(
        new PutObjectCommand({ Bucket: this.t.bucket, Key: this.key, Body: this.take(this.bufferedBytes), ...this.t.objectParams() } as never),
      );
      return;
    }
    try {
      await this.flush();
      // An empty write still needs one part to complete.
      if (this.parts.length === 0) await this.uploadPart(Buffer.alloc(0));
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
    this.buffered = [];
    this.bufferedBytes = 0;
    await Promise.allSettled(this.inFlight);
    await this.abort();
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

  /** Sends at most one chunk of the buffer as the next part. */
  private async flush(): Promise<void> {
    if (this.bufferedBytes === 0) return;
    await this.uploadPart(this.take(Math.min(this.bufferedBytes, this.t.chunkSize)));
  }

  /** Starts the next part's upload; waits while too many are under way. */
  private async uploadPart(body: Buffer): Promise<void> {
    const uploadId = await this.ensureUpload();
    const part: Part = { PartNumber: this.parts.length + 1, ETag: '', Size: body.length };
    this.parts.push(part);
    this.flushed += body.length;
    const sending = this.t.client
      .send(
        new UploadPartCommand({
          Bucket: this.t.bucket,
          Key: this.key,
          UploadId: uploadId,
          PartNumber: part.PartNumber,
          Body: body,
          ContentLength: body.length,
        }),
      )
      .then((sent) => {
        part.ETag = sent.ETag!;
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

  /** The first `n` buffered bytes, removed from the buffer. */
  private take(n: number): Buffer {
    const all = this.buffered.length === 1 ? this.buffered[0]! : Buffer.concat(this.buffered, this.bufferedBytes);
    const out = all.subarray(0, n);
    const rest = all.subarray(n);
    this.buffered = rest.length > 0 ? [rest] : [];
    this.bufferedBytes = rest.length;
    return out;
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
      const bytes = Buffer.from(await got.Body!.transformToByteArray());
      this.buffered.unshift(bytes);
      this.bufferedBytes += bytes.length;
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
