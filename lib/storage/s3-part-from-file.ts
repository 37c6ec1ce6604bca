/**
 * One multipart part sent from a local file (a blob fetch's spool) without a buffer of its own: its
 * bytes are read once to compute the SigV4 payload hash (`x-amz-content-sha256`, what the SDK
 * computes itself over a buffer), then streamed from the file as the request body. The store
 * checks the body against that hash, so the part it keeps is the bytes read, as with a signed
 * buffer. Why: a 10 MiB buffer per part is fresh memory the kernel maps page by page on first
 * touch; in a cold pull on S3 filling them cost more CPU than anything else the upload did.
 *
 * The SDK does not retry a request with a streamed body (it cannot rewind it): a failure that a
 * retry may cure (no answer, 5xx, throttling) is retried here with a new stream, as often as the
 * SDK would have.
 */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { UploadPartCommand, type S3Client } from '@aws-sdk/client-s3';
import { StorageOperationError, type PositionalReader } from './driver.js';

/** Bytes read at a time (small enough to come from the heap, not from fresh mappings). */
const READ_CHUNK = 256 * 1024;
/** Attempts at most, as the SDK's default retry strategy. */
const ATTEMPTS = 3;

/** Where the part goes. */
export interface PartTarget {
  readonly client: S3Client;
  readonly bucket: string;
  readonly key: string;
  readonly uploadId: string;
  readonly partNumber: number;
}

/** Uploads bytes `[position, position + length)` of `source` as the part; resolves with its ETag. */
export async function uploadPartFrom(t: PartTarget, source: PositionalReader, position: number, length: number): Promise<string> {
  const sha256 = await hashRange(source, position, length);
  for (let attempt = 1; ; attempt++) {
    const command = new UploadPartCommand({
      Bucket: t.bucket,
      Key: t.key,
      UploadId: t.uploadId,
      PartNumber: t.partNumber,
      Body: Readable.from(chunks(source, position, length), { objectMode: false }),
      ContentLength: length,
    });
    // The signer takes a payload hash given in the request instead of hashing the body itself.
    command.middlewareStack.add(
      (next) => (args) => {
        (args.request as { headers: Record<string, string> }).headers['x-amz-content-sha256'] = sha256;
        return next(args);
      },
      { step: 'build', name: 'partPayloadHash' },
    );
    try {
      return (await t.client.send(command)).ETag!;
    } catch (err) {
      if (attempt >= ATTEMPTS || !retryable(err)) throw err;
    }
  }
}

/** The sha256 (hex) of the range, read with one reused buffer. */
async function hashRange(source: PositionalReader, position: number, length: number): Promise<string> {
  const hash = createHash('sha256');
  const buffer = Buffer.allocUnsafe(Math.min(length, READ_CHUNK));
  for (let done = 0; done < length;) {
    const n = await readSome(source, buffer, Math.min(buffer.length, length - done), position + done);
    hash.update(buffer.subarray(0, n));
    done += n;
  }
  return hash.digest('hex');
}

/** The range as chunks for the request body (each a buffer of its own: the socket may still hold the last ones). */
async function* chunks(source: PositionalReader, position: number, length: number): AsyncGenerator<Buffer> {
  for (let done = 0; done < length;) {
    const buffer = Buffer.allocUnsafe(Math.min(READ_CHUNK, length - done));
    const n = await readSome(source, buffer, buffer.length, position + done);
    done += n;
    yield n === buffer.length ? buffer : buffer.subarray(0, n);
  }
}

async function readSome(source: PositionalReader, buffer: Buffer, length: number, position: number): Promise<number> {
  const n = await source.read(buffer, 0, length, position);
  if (n === 0) throw new StorageOperationError(`the local file ended at ${position} while a part was read from it`);
  return n;
}

/** No answer, a 5xx or throttling: worth another attempt (a 4xx other than throttling is final). */
function retryable(err: unknown): boolean {
  const e = err as { $retryable?: unknown; $metadata?: { httpStatusCode?: number } };
  const status = e.$metadata?.httpStatusCode;
  return e.$retryable !== undefined || status === undefined || status >= 500 || status === 429;
}
