/**
 * Blob uploads of hosted repositories in distribution's layout (`registry/storage/linkedblobstore.go`,
 * `blobwriter.go`): `repositories/<name>/_uploads/<uuid>/startedat` (RFC 3339, the upload exists
 * while it does) and `.../data`, written through the driver's append writer as distribution does
 * (filesystem: the file grows in place; S3: a pending multipart upload at that key), so either
 * registry resumes an upload the other began. A finished upload's data is committed, verified
 * against the client's digest and moved into `blobs/`, then linked into the repository, exactly as
 * the official registry leaves it. The running hash lives in memory; after a restart (or for an
 * upload another process started) it is rebuilt from the committed data, which is what
 * distribution does when it finds no `hashstates` entry for the current offset.
 */
import { createHash, randomUUID, type Hash } from 'node:crypto';
import type { Readable } from 'node:stream';
import type { Digest } from '../distribution/digest.js';
import { DigestInvalidError, InvalidPathError, UploadUnknownError } from '../errors.js';
import type { BlobStore } from '../storage/blob-store.js';
import type { RepositoryStore } from '../storage/repository-store.js';
import { PathNotFoundError, type FileWriter, type StorageDriver } from '../storage/driver.js';
import { packUploadState } from './upload-state.js';
import { blobDataPath, uploadDataPath, uploadDir, uploadStartedAtPath } from '../storage/paths.js';

/** An upload session as the API reports it. */
interface UploadInfo {
  readonly uuid: string;
  /** Bytes received so far. */
  readonly size: number;
  readonly startedAt: Date;
}

/** Running hashes kept in memory at most. */
const MAX_HASH_STATES = 1000;

interface HashState {
  readonly algorithm: Digest['algorithm'];
  readonly hash: Hash;
  offset: number;
}

/** distribution writes `time.Now().UTC().Format(time.RFC3339)`: whole seconds, `Z`. */
export function formatStartedAt(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** The upload sessions of all hosted repositories. */
export class UploadStore {
  private readonly hashes = new Map<string, HashState>();
  private readonly locks = new Map<string, Promise<unknown>>();

  constructor(
    private readonly driver: StorageDriver,
    private readonly blobs: BlobStore,
    private readonly repository: (name: string) => RepositoryStore,
  ) {}

  /** distribution's signed `_state` of an upload (`http.secret`), which registry:2 can resume. */
  packState(secret: string, repo: string, info: UploadInfo): string {
    return packUploadState(secret, repo, info.uuid, info.size, info.startedAt);
  }

  /** Starts an upload: writes `startedat` and an empty `data` write to append to. */
  async create(repo: string): Promise<UploadInfo> {
    const uuid = randomUUID();
    const startedAt = new Date();
    await this.driver.putContent(uploadStartedAtPath(repo, uuid), formatStartedAt(startedAt));
    await (await this.driver.writer(uploadDataPath(repo, uuid))).close();
    return { uuid, size: 0, startedAt };
  }

  /** The state of an upload; `BLOB_UPLOAD_UNKNOWN` when there is none (as distribution's `Resume`). */
  async info(repo: string, uuid: string): Promise<UploadInfo> {
    const startedAt = await this.startedAt(repo, uuid);
    const data = await this.resume(repo, uuid);
    await data?.close();
    return { uuid, size: data?.size ?? 0, startedAt };
  }

  /**
   * Appends a request body; `start`, when given (from `Content-Range`), must be the current size.
   * `check` sees the upload's state before anything is written and may refuse it.
   */
  append(repo: string, uuid: string, body: Readable, check?: (current: UploadInfo) => void): Promise<UploadInfo> {
    return this.locked(repo, uuid, async () => {
      const startedAt = await this.startedAt(repo, uuid);
      const data = await this.open(repo, uuid);
      try {
        check?.({ uuid, size: data.size, startedAt });
        await this.write(repo, uuid, data, body);
      } finally {
        await data.close();
      }
      return { uuid, size: data.size, startedAt };
    });
  }

  /**
   * Finishes an upload: appends the last body, commits the data, checks the digest, moves the data
   * into `blobs/` and links it into the repository. On a digest mismatch the upload is cancelled
   * (as distribution).
   */
  commit(repo: string, uuid: string, digest: Digest, body: Readable | undefined): Promise<{ size: number }> {
    return this.locked(repo, uuid, async () => {
      await this.startedAt(repo, uuid);
      const data = await this.open(repo, uuid);
      try {
        if (body) await this.write(repo, uuid, data, body);
        await data.commit();
      } catch (err) {
        await data.close().catch(() => undefined);
        throw err;
      }
      const size = data.size;
      const actual = await this.digestOf(repo, uuid, digest.algorithm, size);
      if (actual !== digest.value) {
        await this.remove(repo, uuid);
        throw new DigestInvalidError(`invalid digest for referenced layer: ${digest.value}, content does not match digest`);
      }
      if (!(await this.blobs.stat(digest))) await this.driver.move(this.dataPath(repo, uuid), blobDataPath(digest));
      await this.repository(repo).linkLayer(digest);
      await this.remove(repo, uuid);
      return { size };
    });
  }

  /** Cancels an upload: its data write is discarded and its directory goes. */
  cancel(repo: string, uuid: string): Promise<void> {
    return this.locked(repo, uuid, async () => {
      await this.startedAt(repo, uuid);
      await (await this.resume(repo, uuid))?.cancel();
      await this.remove(repo, uuid);
    });
  }

  private dir(repo: string, uuid: string): string {
    try {
      return uploadDir(repo, uuid);
    } catch (err) {
      if (err instanceof InvalidPathError) throw unknown(uuid);
      throw err;
    }
  }

  private dataPath(repo: string, uuid: string): string {
    this.dir(repo, uuid);
    return uploadDataPath(repo, uuid);
  }

  /** When the upload started; `BLOB_UPLOAD_UNKNOWN` when it does not exist. */
  private async startedAt(repo: string, uuid: string): Promise<Date> {
    try {
      this.dir(repo, uuid);
      return new Date((await this.driver.getContent(uploadStartedAtPath(repo, uuid))).toString('utf8').trim());
    } catch (err) {
      if (err instanceof PathNotFoundError) throw unknown(uuid);
      throw err;
    }
  }

  /** The upload's data write, resumed; undefined when it has none yet. */
  private async resume(repo: string, uuid: string): Promise<FileWriter | undefined> {
    return this.driver.writer(this.dataPath(repo, uuid), { append: true }).catch((err: unknown) => {
      if (err instanceof PathNotFoundError) return undefined;
      throw err;
    });
  }

  /** The upload's data write, resumed or (when its first writer never closed) begun again. */
  private async open(repo: string, uuid: string): Promise<FileWriter> {
    return (await this.resume(repo, uuid)) ?? this.driver.writer(this.dataPath(repo, uuid));
  }

  private async remove(repo: string, uuid: string): Promise<void> {
    this.hashes.delete(`${repo}@${uuid}`);
    await this.driver.delete(this.dir(repo, uuid));
  }

  /**
   * Appends `body` to `data`, keeping the running sha256 in step when it is at the data's size;
   * otherwise the hash is rebuilt from the data at commit.
   */
  private async write(repo: string, uuid: string, data: FileWriter, body: Readable): Promise<void> {
    const key = `${repo}@${uuid}`;
    let state = this.hashes.get(key);
    if (state && state.offset !== data.size) state = undefined;
    if (!state && data.size === 0) state = { algorithm: 'sha256', hash: createHash('sha256'), offset: 0 };
    this.hashes.delete(key);
    for await (const chunk of body as AsyncIterable<Buffer>) {
      // Bytes are written before they are hashed, so a failed write only costs a rehash.
      await data.write(chunk);
      if (state) {
        state.hash.update(chunk);
        state.offset += chunk.length;
      }
    }
    if (!state) return;
    this.hashes.set(key, state);
    // Abandoned uploads must not grow memory without bound: the oldest state is rebuilt from data if needed.
    if (this.hashes.size > MAX_HASH_STATES) this.hashes.delete(this.hashes.keys().next().value!);
  }

  /** The digest of the committed data, from the running hash when it is at `size`. */
  private async digestOf(repo: string, uuid: string, algorithm: Digest['algorithm'], size: number): Promise<string> {
    const state = this.hashes.get(`${repo}@${uuid}`);
    if (state && state.algorithm === algorithm && state.offset === size) return `${algorithm}:${state.hash.copy().digest('hex')}`;
    // distribution's fallback without a stored hash state: hash the data from the start.
    const hash = createHash(algorithm);
    if (size > 0)
      for await (const chunk of (await this.driver.reader(this.dataPath(repo, uuid), { start: 0, end: size - 1 })) as AsyncIterable<Buffer>) hash.update(chunk);
    return `${algorithm}:${hash.digest('hex')}`;
  }

  /** Runs `fn` after every earlier operation on the same upload (a chunk at a time). */
  private locked<T>(repo: string, uuid: string, fn: () => Promise<T>): Promise<T> {
    const key = `${repo}@${uuid}`;
    const before = this.locks.get(key) ?? Promise.resolve();
    const run = before.then(fn, fn);
    const settled = run.catch(() => undefined);
    this.locks.set(key, settled);
    void settled.then(() => {
      if (this.locks.get(key) === settled) this.locks.delete(key);
    });
    return run;
  }
}

function unknown(uuid: string): UploadUnknownError {
  return new UploadUnknownError(uuid);
}
