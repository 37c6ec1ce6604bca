/**
 * S3 writes whose body is a range of a local file (a blob fetch's spool), with no buffer of its
 * own: a multipart part, or the whole object of a blob smaller than a part. The range is read once
 * to compute the SigV4 payload hash (`x-amz-content-sha256`, what the SDK computes itself over a
 * buffer), then streamed from the file as the request body. The store checks the body against
 * that hash, so what it keeps is the bytes read, as with a signed buffer. Why: a part-sized buffer
 * is fresh memory the kernel maps page by page on first touch; in a cold pull on S3 filling them
 * cost more CPU than anything else the upload did.
 *
 * The SDK does not retry a request with a streamed body (it cannot rewind it): a failure that a
 * retry may cure (no answer, 5xx, throttling) is retried here with a new stream, as often as the
 * SDK would have.
 */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { PutObjectCommand, UploadPartCommand, type PutObjectCommandInput, type S3Client } from '@aws-sdk/client-s3';
import { readSomeAt, type PositionalReader } from './driver.js';

/** Bytes read at a time (small enough to come from the heap, not from fresh mappings). */
const READ_CHUNK = 256 * 1024;
/** Attempts at most, as the SDK's default retry strategy. */
const ATTEMPTS = 3;

/** Where a part goes. */
export interface PartTarget {
  readonly client: S3Client;
  readonly bucket: string;
  readonly key: string;
  readonly uploadId: string;
  readonly partNumber: number;
}

/** Uploads bytes `[position, position + length)` of `source` as the part; resolves with its ETag. */
export async function uploadPartFrom(t: PartTarget, source: PositionalReader, position: number, length: number): Promise<string> {
  const input = { Bucket: t.bucket, Key: t.key, UploadId: t.uploadId, PartNumber: t.partNumber, ContentLength: length };
  const sent = await sendFrom(t.client, (Body) => new UploadPartCommand({ ...input, Body }), source, position, length);
  return sent.ETag!;
}

/** Stores bytes `[position, position + length)` of `source` as the object `input.Key` (one PutObject). */
export async function putObjectFrom(
  client: S3Client,
  input: Omit<PutObjectCommandInput, 'Body' | 'ContentLength'>,
  source: PositionalReader,
  position: number,
  length: number,
): Promise<void> {
  await sendFrom(client, (Body) => new PutObjectCommand({ ...input, Body, ContentLength: length }), source, position, length);
}

/** Sends the command `make` builds around a stream of the range, retried with a new stream. */
async function sendFrom(
  client: S3Client,
  make: (body: Readable) => UploadPartCommand | PutObjectCommand,
  source: PositionalReader,
  position: number,
  length: number,
): Promise<{ ETag?: string }> {
  const sha256 = await hashRange(source, position, length);
  for (let attempt = 1; ; attempt++) {
    const command = make(Readable.from(chunks(source, position, length), { objectMode: false }));
    // The signer takes a payload hash given in the request instead of hashing the body itself.
    (command.middlewareStack as UploadPartCommand['middlewareStack']).add(
      (next) => (args) => {
        (args.request as { headers: Record<string, string> }).headers['x-amz-content-sha256'] = sha256;
        return next(args);
      },
      { step: 'build', name: 'payloadHashOfFile' },
    );
    try {
      return (await client.send(command as UploadPartCommand)) as { ETag?: string };
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
    const n = await readSomeAt(source, buffer, Math.min(buffer.length, length - done), position + done);
    hash.update(buffer.subarray(0, n));
    done += n;
  }
  return hash.digest('hex');
}

/** The range as chunks for the request body (each a buffer of its own: the socket may still hold the last ones). */
async function* chunks(source: PositionalReader, position: number, length: number): AsyncGenerator<Buffer> {
  for (let done = 0; done < length;) {
    const buffer = Buffer.allocUnsafe(Math.min(READ_CHUNK, length - done));
    const n = await readSomeAt(source, buffer, buffer.length, position + done);
    done += n;
    yield n === buffer.length ? buffer : buffer.subarray(0, n);
  }
}

/** No answer, a 5xx or throttling: worth another attempt (a 4xx other than throttling is final). */
function retryable(err: unknown): boolean {
  const e = err as { $retryable?: unknown; $metadata?: { httpStatusCode?: number } };
  const status = e.$metadata?.httpStatusCode;
  return e.$retryable !== undefined || status === undefined || status >= 500 || status === 429;
}
