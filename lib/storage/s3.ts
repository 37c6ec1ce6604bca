/**
 * The S3 storage driver (`storage.s3`), after distribution's `s3-aws` driver: the same keys
 * (`<rootdirectory>/docker/registry/v2/...`), the same multipart writes (`s3-writer.ts`), copies
 * (CopyObject up to `multipartcopythresholdsize`, UploadPartCopy in `multipartcopychunksize` parts
 * above), deletes (a listing, then DeleteObjects) and presigned redirect URLs, so that a registry:2
 * on the same bucket reads what we write and the other way round.
 *
 * The AWS SDK v3 does the signing, retries and connection pooling. Its default request checksums
 * are turned off to `WHEN_REQUIRED`: a streaming PutObject with a trailing checksum fails on
 * S3-compatible stores such as Ceph Pacific (`411 MissingContentLength`).
 */
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  UploadPartCopyCommand,
  type GetObjectCommandOutput,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import type { S3StorageConfig } from '../config/types.js';
import {
  checkPath,
  PathNotFoundError,
  StorageOperationError,
  type ByteRange,
  type FileInfo,
  type FileWriter,
  type StorageDriver,
  type WalkStep,
} from './driver.js';
import { newS3Writer, resumeS3Writer, type S3WriteTarget } from './s3-writer.js';
import { blobsRoot } from './paths.js';
import { sharedPartBuffers } from './part-buffers.js';

/** The most keys one listing or one DeleteObjects returns or takes. */
const LIST_MAX = 1000;
/** Connections to the store at most (per protocol). */
const MAX_SOCKETS = 1024;
/** How long a presigned redirect URL is valid (distribution: 20 minutes). */
const REDIRECT_EXPIRY_S = 20 * 60;

/** Storage in an S3 bucket. */
export class S3Driver implements StorageDriver, S3WriteTarget {
  readonly name = 's3aws';
  readonly client: S3Client;
  readonly bucket: string;
  readonly chunkSize: number;
  readonly partBuffers = sharedPartBuffers;
  /** `rootdirectory` without leading and trailing slashes ('' for none). */
  private readonly rootKey: string;

  constructor(private readonly c: S3StorageConfig) {
    this.client = new S3Client(clientConfig(c));
    this.bucket = c.bucket;
    this.chunkSize = c.chunksize;
    this.rootKey = c.rootdirectory.replace(/^\/+|\/+$/g, '');
  }

  /** distribution's `s3Path`: the key of a logical path. */
  objectKey(path: string): string {
    checkPath(path);
    return `${this.rootKey}${path}`.replace(/^\/+/, '');
  }

  /** The logical path of a key under the root. */
  private pathOf(key: string): string {
    return this.rootKey ? key.slice(this.rootKey.length) : `/${key}`;
  }

  objectParams(): ReturnType<S3WriteTarget['objectParams']> {
    const c = this.c;
    return {
      ContentType: 'application/octet-stream',
      ACL: c.objectacl,
      ServerSideEncryption: c.encrypt ? (c.keyid ? 'aws:kms' : 'AES256') : undefined,
      SSEKMSKeyId: c.encrypt && c.keyid ? c.keyid : undefined,
      StorageClass: c.storageclass === 'NONE' ? undefined : c.storageclass,
    };
  }

  async stat(path: string): Promise<FileInfo | undefined> {
    const key = this.objectKey(path);
    if (path !== '/') {
      const file = await this.statFile(path);
      if (file) return file;
    }
    // No object: a directory when any key lies below it.
    const below = await this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: dirPrefix(key), MaxKeys: 1 }));
    return (below.KeyCount ?? below.Contents?.length ?? 0) > 0 ? { path, size: 0, modTime: new Date(0), isDir: true } : undefined;
  }

  /** One `HEAD`: a missing object is a missing file (a miss of a blob costs no listing). */
  async statFile(path: string): Promise<FileInfo | undefined> {
    try {
      const head = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.objectKey(path) }));
      return { path, size: head.ContentLength ?? 0, modTime: head.LastModified ?? new Date(0), isDir: false };
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  async getContent(path: string): Promise<Buffer> {
    const got = await this.get(path);
    return Buffer.from(await got.Body!.transformToByteArray());
  }

  async putContent(path: string, content: Buffer | string): Promise<void> {
    const body = typeof content === 'string' ? Buffer.from(content) : content;
    await this.client.send(
      new PutObjectCommand({ Bucket: this.bucket, Key: this.objectKey(path), Body: body, ContentLength: body.length, ...this.objectParams() } as never),
    );
  }

  async reader(path: string, range?: ByteRange): Promise<Readable> {
    const start = range?.start ?? 0;
    if (start === 0 && range?.end === undefined) return (await this.get(path)).Body as unknown as Readable;
    try {
      return (await this.get(path, `bytes=${start}-${range?.end ?? ''}`)).Body as unknown as Readable;
    } catch (err) {
      // At or past the end: nothing to read (distribution).
      if ((err as { name?: string }).name === 'InvalidRange') return Readable.from([]);
      throw err;
    }
  }

  private async get(path: string, range?: string): Promise<GetObjectCommandOutput> {
    try {
      return await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.objectKey(path), Range: range }));
    } catch (err) {
      if (isNotFound(err)) throw new PathNotFoundError(path, err);
      throw err;
    }
  }

  async writer(path: string, options: { append?: boolean } = {}): Promise<FileWriter> {
    const key = this.objectKey(path);
    if (!options.append) return newS3Writer(this, key);
    const resumed = await resumeS3Writer(this, key);
    if (resumed) return resumed;
    const info = await this.stat(path);
    if (!info || info.isDir) throw new PathNotFoundError(path);
    if (info.size === 0) return newS3Writer(this, key);
    throw new StorageOperationError(`s3aws: cannot append to ${path}: it is committed and not empty`);
  }

  async list(path: string): Promise<string[]> {
    const prefix = dirPrefix(this.objectKey(path));
    const names: string[] = [];
    for await (const page of this.pages({ Prefix: prefix, Delimiter: '/' })) {
      for (const o of page.Contents ?? []) if (o.Key && o.Key !== prefix) names.push(o.Key.slice(prefix.length));
      for (const p of page.CommonPrefixes ?? []) if (p.Prefix) names.push(p.Prefix.slice(prefix.length, -1));
    }
    // Object stores have no empty directories: nothing below means no directory.
    if (names.length === 0 && path !== '/') throw new PathNotFoundError(path);
    return names;
  }

  async move(from: string, to: string): Promise<void> {
    const info = await this.stat(from);
    if (!info || info.isDir) throw new PathNotFoundError(from);
    await this.copy(this.objectKey(from), this.objectKey(to), info.size);
    await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.objectKey(from) }));
  }

  /** CopyObject up to the threshold, a multipart copy above it (distribution: faster for large objects). */
  private async copy(from: string, to: string, size: number): Promise<void> {
    const CopySource = `${this.bucket}/${from}`;
    if (size <= this.c.multipartcopythresholdsize) {
      await this.client.send(new CopyObjectCommand({ Bucket: this.bucket, Key: to, CopySource, ...this.objectParams() } as never));
      return;
    }
    const { UploadId } = await this.client.send(new CreateMultipartUploadCommand({ Bucket: this.bucket, Key: to, ...this.objectParams() } as never));
    const partSize = this.c.multipartcopychunksize;
    const count = Math.ceil(size / partSize);
    const etags: string[] = new Array<string>(count);
    let next = 0;
    const worker = async (): Promise<void> => {
      for (let i = next++; i < count; i = next++) {
        const first = i * partSize;
        const last = Math.min(first + partSize, size) - 1;
        const part = await this.client.send(
          new UploadPartCopyCommand({ Bucket: this.bucket, Key: to, UploadId, PartNumber: i + 1, CopySource, CopySourceRange: `bytes=${first}-${last}` }),
        );
        etags[i] = part.CopyPartResult!.ETag!;
      }
    };
    try {
      await Promise.all(Array.from({ length: Math.min(count, this.c.multipartcopymaxconcurrency) }, worker));
      await this.client.send(
        new CompleteMultipartUploadCommand({
          Bucket: this.bucket,
          Key: to,
          UploadId,
          MultipartUpload: { Parts: etags.map((ETag, i) => ({ ETag, PartNumber: i + 1 })) },
        }),
      );
    } catch (err) {
      await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: to, UploadId })).catch(() => undefined);
      throw err;
    }
  }

  async delete(path: string): Promise<void> {
    const key = this.objectKey(path);
    // The object itself (if any) and everything below it; `/a` never takes `/ab` with it.
    let batch: string[] = path === '/' ? [] : [key];
    const send = async (): Promise<void> => {
      if (batch.length === 0) return;
      const keys = batch;
      batch = [];
      const out = await this.client.send(new DeleteObjectsCommand({ Bucket: this.bucket, Delete: { Objects: keys.map((Key) => ({ Key })), Quiet: true } }));
      const failed = (out.Errors ?? []).filter((e) => e.Code !== 'NoSuchKey');
      if (failed.length > 0)
        throw new StorageOperationError(`s3aws: deleting ${path}: ${failed.map((e) => `${e.Key}: ${e.Code} ${e.Message ?? ''}`).join('; ')}`);
    };
    for await (const page of this.pages({ Prefix: dirPrefix(key) })) {
      for (const o of page.Contents ?? []) {
        batch.push(o.Key!);
        if (batch.length >= LIST_MAX) await send();
      }
    }
    await send();
  }

  async walk(path: string, visit: (info: FileInfo) => WalkStep | Promise<WalkStep>): Promise<void> {
    const from = checkPath(path);
    // Keys come sorted: directories are inferred between one key and the next (distribution's `doWalk`).
    let prevDir = from;
    let skipped: string | undefined;
    for await (const page of this.pages({ Prefix: dirPrefix(this.objectKey(from)) })) {
      for (const o of page.Contents ?? []) {
        const file = this.pathOf(o.Key!);
        if (file.endsWith('/')) continue;
        const infos: FileInfo[] = directoriesBetween(prevDir, file).map((d) => ({ path: d, size: 0, modTime: new Date(0), isDir: true }));
        if (infos.length > 0) prevDir = infos[infos.length - 1]!.path;
        infos.push({ path: file, size: o.Size ?? 0, modTime: o.LastModified ?? new Date(0), isDir: false });
        for (const info of infos) {
          if (skipped && isBelow(info.path, skipped)) continue;
          const step = await visit(info);
          if (step === 'stop') return;
          if (step === 'skip' && info.isDir) skipped = info.path;
        }
      }
    }
  }

  async redirectURL(method: string, path: string): Promise<string | undefined> {
    const input = { Bucket: this.bucket, Key: this.objectKey(path) };
    const command = method === 'GET' ? new GetObjectCommand(input) : method === 'HEAD' ? new HeadObjectCommand(input) : undefined;
    return command && getSignedUrl(this.client, command, { expiresIn: REDIRECT_EXPIRY_S });
  }

  /**
   * Aborts the multipart uploads of blob fetches that a dead process left (older than
   * `olderThanMs`, default a day: a live fetch is never that old); they are invisible but cost
   * storage. Hosted uploads (`_uploads`) are left to upload purging.
   */
  async cleanup(olderThanMs = 24 * 3600_000): Promise<number> {
    const Prefix = this.objectKey(blobsRoot());
    let removed = 0;
    let KeyMarker: string | undefined;
    let UploadIdMarker: string | undefined;
    do {
      const page = await this.client.send(new ListMultipartUploadsCommand({ Bucket: this.bucket, Prefix, KeyMarker, UploadIdMarker }));
      for (const u of page.Uploads ?? []) {
        if (!u.Key || !u.UploadId || (u.Initiated && Date.now() - u.Initiated.getTime() < olderThanMs)) continue;
        await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: u.Key, UploadId: u.UploadId })).catch(() => undefined);
        removed++;
      }
      [KeyMarker, UploadIdMarker] = page.IsTruncated ? [page.NextKeyMarker, page.NextUploadIdMarker] : [undefined, undefined];
    } while (KeyMarker);
    return removed;
  }

  /** distribution stats the root: the bucket answers a listing. */
  async healthCheck(): Promise<void> {
    await this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: this.rootKey, MaxKeys: 1 }));
  }

  private async *pages(input: { Prefix: string; Delimiter?: string }) {
    let ContinuationToken: string | undefined;
    do {
      const page = await this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, MaxKeys: LIST_MAX, ContinuationToken, ...input }));
      yield page;
      ContinuationToken = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (ContinuationToken);
  }
}

/** A logger that drops everything (the SDK's own default, without its console fallback). */
const SILENT = { trace() {}, debug() {}, info() {}, warn() {}, error() {} };

/** The SDK client for `c`: distribution's settings in the SDK's words. */
function clientConfig(c: S3StorageConfig): S3ClientConfig {
  const endpoint = c.regionendpoint
    ? /^https?:\/\//.test(c.regionendpoint)
      ? c.regionendpoint
      : `${c.secure ? 'https' : 'http'}://${c.regionendpoint}`
    : undefined;
  return {
    region: c.region,
    endpoint,
    tls: c.secure,
    forcePathStyle: c.forcepathstyle,
    useDualstackEndpoint: c.usedualstack,
    useAccelerateEndpoint: c.accelerate,
    useFipsEndpoint: c.usefipsendpoint,
    customUserAgent: c.useragent,
    // Static keys when given, else the SDK's chain (environment, shared files, instance roles), as distribution.
    credentials: c.accesskey && c.secretkey ? { accessKeyId: c.accesskey, secretAccessKey: c.secretkey, sessionToken: c.sessiontoken } : undefined,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    // The SDK's default logger is silent but for one case it writes to the console: a failed request
    // whose body was a stream (a part sent from the spool, retried by s3-from-file.ts itself).
    logger: SILENT,
    // The SDK's default pool is 50 sockets per host: 50 slow clients streaming blobs from the bucket
    // would hold them all and stall every other request (stats, links). Go's client, which
    // distribution uses, has no such limit.
    requestHandler: {
      httpAgent: new HttpAgent({ keepAlive: true, maxSockets: MAX_SOCKETS }),
      httpsAgent: new HttpsAgent({ keepAlive: true, maxSockets: MAX_SOCKETS, rejectUnauthorized: !c.skipverify }),
    },
  };
}

/** The prefix of every key below `key` ('' at the bucket's root). */
function dirPrefix(key: string): string {
  return key === '' || key.endsWith('/') ? key : `${key}/`;
}

/** The directories between the last directory walked and `file`'s parent, outermost first. */
function directoriesBetween(prev: string, file: string): string[] {
  const dirs: string[] = [];
  for (let parent = file.slice(0, file.lastIndexOf('/')); parent !== '' && parent !== prev && !`${prev}/`.startsWith(`${parent}/`);) {
    dirs.unshift(parent);
    parent = parent.slice(0, parent.lastIndexOf('/'));
  }
  return dirs;
}

function isBelow(path: string, dir: string): boolean {
  return path === dir || path.startsWith(`${dir}/`);
}

function isNotFound(err: unknown): boolean {
  const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
  return e.name === 'NoSuchKey' || e.name === 'NotFound' || e.$metadata?.httpStatusCode === 404;
}
