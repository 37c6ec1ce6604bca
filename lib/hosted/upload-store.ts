/**
 * Blob uploads of hosted repositories in distribution's layout (`registry/storage/linkedblobstore.go`,
 * `blobwriter.go`): `repositories/<name>/_uploads/<uuid>/startedat` (RFC 3339, the upload exists
 * while it does) and `.../data` (the bytes received so far). A finished upload's data is verified
 * against the client's digest and renamed into `blobs/`, then linked into the repository, exactly as
 * the official registry leaves it. The running hash lives in memory; after a restart (or for an
 * upload another process started) it is rebuilt from `data`, which is what distribution does when
 * it finds no `hashstates` entry for the current offset.
 */
import { createReadStream } from 'node:fs';
import { mkdir, open, rename, stat } from 'node:fs/promises';
import { createHash, randomUUID, type Hash } from 'node:crypto';
import { dirname } from 'node:path';
import type { Readable } from 'node:stream';
import type { Digest } from '../distribution/digest.js';
import { DigestInvalidError, InvalidPathError, UploadUnknownError } from '../errors.js';
import type { FilesystemDriver } from '../storage/filesystem.js';
import type { BlobStore } from '../storage/blob-store.js';
import type { RepositoryStore } from '../storage/repository-store.js';
import { PathNotFoundError } from '../storage/driver.js';
import { blobDataPath, uploadDataPath, uploadDir, uploadStartedAtPath } from '../storage/paths.js';

/** An upload session as the API reports it. */
export interface UploadInfo {
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
    private readonly driver: FilesystemDriver,
    private readonly blobs: BlobStore,
    private readonly repository: (name: string) => RepositoryStore,
  ) {}

  /** Starts an upload: writes `startedat` and an empty `data`. */
  async create(repo: string): Promise<UploadInfo> {
    const uuid = randomUUID();
    const startedAt = new Date();
    await this.driver.putContent(uploadStartedAtPath(repo, uuid), formatStartedAt(startedAt));
    const handle = await open(this.driver.localPath(uploadDataPath(repo, uuid)), 'a');
    await handle.close();
    return { uuid, size: 0, startedAt };
  }

  /** The state of an upload; `BLOB_UPLOAD_UNKNOWN` when there is none (as distribution's `Resume`). */
  async info(repo: string, uuid: string): Promise<UploadInfo> {
    const { startedAtPath, dataPath } = this.paths(repo, uuid);
    let startedAt: Date;
    try {
      startedAt = new Date((await this.driver.getContent(startedAtPath)).toString('utf8').trim());
    } catch (err) {
      if (err instanceof PathNotFoundError) throw unknown(uuid);
      throw err;
    }
    const data = await this.driver.stat(dataPath);
    return { uuid, size: data && !data.isDir ? data.size : 0, startedAt };
  }

  /**
   * Appends a request body; `start`, when given (from `Content-Range`), must be the current size.
   * Bytes are written before they are hashed, so a failed write only costs a rehash.
   */
  append(repo: string, uuid: string, body: Readable, check?: (current: UploadInfo) => void): Promise<UploadInfo> {
    return this.locked(repo, uuid, async () => {
      const current = await this.info(repo, uuid);
      check?.(current);
      await this.write(repo, uuid, current.size, body);
      return this.info(repo, uuid);
    });
  }

  /**
   * Finishes an upload: appends the last body, checks the digest, moves the data into `blobs/` and
   * links it into the repository. On a digest mismatch the upload is cancelled (as distribution).
   */
  commit(repo: string, uuid: string, digest: Digest, body: Readable | undefined): Promise<{ size: number }> {
    return this.locked(repo, uuid, async () => {
      const current = await this.info(repo, uuid);
      if (body) await this.write(repo, uuid, current.size, body);
      const { size } = await this.info(repo, uuid);
      const actual = await this.digestOf(repo, uuid, digest.algorithm, size);
      if (actual !== digest.value) {
        await this.remove(repo, uuid);
        throw new DigestInvalidError(`invalid digest for referenced layer: ${digest.value}, content does not match digest`);
      }
      const data = this.driver.localPath(this.paths(repo, uuid).dataPath);
      if (!(await this.blobs.stat(digest))) {
        const target = this.driver.localPath(blobDataPath(digest));
        await mkdir(dirname(target), { recursive: true });
        await rename(data, target);
      }
      await this.repository(repo).linkLayer(digest);
      await this.remove(repo, uuid);
      return { size };
    });
  }

  /** Cancels an upload: its directory goes. */
  cancel(repo: string, uuid: string): Promise<void> {
    return this.locked(repo, uuid, async () => {
      await this.info(repo, uuid);
      await this.remove(repo, uuid);
    });
  }

  /** The upload's paths; `BLOB_UPLOAD_UNKNOWN` for an id that cannot name one. */
  private paths(repo: string, uuid: string): { dir: string; startedAtPath: string; dataPath: string } {
    try {
      return { dir: uploadDir(repo, uuid), startedAtPath: uploadStartedAtPath(repo, uuid), dataPath: uploadDataPath(repo, uuid) };
    } catch (err) {
      if (err instanceof InvalidPathError) throw unknown(uuid);
      throw err;
    }
  }

  private async remove(repo: string, uuid: string): Promise<void> {
    this.hashes.delete(`${repo}@${uuid}`);
    await this.driver.delete(this.paths(repo, uuid).dir);
  }

  /** Appends `body` at `offset` and keeps the running sha256 in step. */
  private async write(repo: string, uuid: string, offset: number, body: Readable): Promise<void> {
    const key = `${repo}@${uuid}`;
    let state = this.hashes.get(key);
    if (state && state.offset !== offset) state = undefined;
    if (!state) state = await this.rehash(repo, uuid, 'sha256', offset);
    this.hashes.delete(key);
    const handle = await open(this.driver.localPath(this.paths(repo, uuid).dataPath), 'a');
    try {
      for await (const chunk of body as AsyncIterable<Buffer>) {
        let done = 0;
        while (done < chunk.length) done += (await handle.write(chunk, done, chunk.length - done)).bytesWritten;
        state.hash.update(chunk);
        state.offset += chunk.length;
      }
      this.hashes.set(key, state);
      // Abandoned uploads must not grow memory without bound: the oldest state is rebuilt from disk if needed.
      if (this.hashes.size > MAX_HASH_STATES) this.hashes.delete(this.hashes.keys().next().value!);
    } finally {
      await handle.close();
    }
  }

  /** The digest of the first `size` bytes, from the running hash when it is at `size`. */
  private async digestOf(repo: string, uuid: string, algorithm: Digest['algorithm'], size: number): Promise<string> {
    const state = this.hashes.get(`${repo}@${uuid}`);
    const usable = state && state.algorithm === algorithm && state.offset === size ? state : await this.rehash(repo, uuid, algorithm, size);
    return `${algorithm}:${usable.hash.copy().digest('hex')}`;
  }

  /** Hashes `data` from the start up to `size` (distribution's fallback without a stored hash state). */
  private async rehash(repo: string, uuid: string, algorithm: Digest['algorithm'], size: number): Promise<HashState> {
    const hash = createHash(algorithm);
    const path = this.driver.localPath(this.paths(repo, uuid).dataPath);
    if (size > 0 && (await stat(path)).size >= size) {
      for await (const chunk of createReadStream(path, { start: 0, end: size - 1 }) as AsyncIterable<Buffer>) hash.update(chunk);
    }
    return { algorithm, hash, offset: size };
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
