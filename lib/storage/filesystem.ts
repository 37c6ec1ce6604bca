/**
 * The filesystem storage driver (`storage.filesystem.rootdirectory`). Whole-file writes and new
 * writes go to a temporary directory of this process, `<root>/.tmp/<host>-<pid>-<id>/`, and are
 * renamed into place at commit, so a reader or a crash never sees a partial file. Append writers
 * (hosted uploads) append in place, as distribution's driver, so that registry:2 resumes them.
 * Several processes (replicas on a shared volume) each have their own temporary directory; at
 * start-up those of dead processes are removed.
 */
import { createReadStream } from 'node:fs';
import { mkdir, open, readFile, readdir, rename, rm, stat, statfs, type FileHandle } from 'node:fs/promises';
import { randomUUID } from 'node:crypto';
import { dirname, resolve } from 'node:path';
import type { Readable } from 'node:stream';
import {
  checkPath,
  PathNotFoundError,
  type ByteRange,
  type FileInfo,
  type FileWriter,
  type LocalFiles,
  type PositionalReader,
  type StorageDriver,
  type WalkStep,
  writeAllAt,
} from './driver.js';
import { TEMP_ROOT } from './paths.js';
import { isProvablyDead, ownerTag, parseOwnerTag, pidExists, safeHost, thisProcess } from './owner.js';

/** A temporary directory of another host, with no sign of life for this long, is an orphan. */
const FOREIGN_ORPHAN_MS = 10 * 60_000;

/** Storage on a local (or network) filesystem. */
export class FilesystemDriver implements StorageDriver {
  readonly name = 'filesystem';
  readonly root: string;
  /** This process's temporary directory (absolute). */
  readonly tempDir: string;
  private readonly instance: string;
  readonly local: LocalFiles = { openFile: (path) => this.openFile(path) };

  constructor(rootDirectory: string) {
    // `/` as the root is kept as '' so that paths join with one slash.
    this.root = resolve(rootDirectory).replace(/\/+$/, '');
    // Host, pid, start time and scope let another process on the same host tell at once whether we
    // live (owner.ts), even once the pid is reused.
    this.instance = `${ownerTag()}-${randomUUID().slice(0, 8)}`;
    this.tempDir = `${this.root}${TEMP_ROOT}/${this.instance}`;
  }

  /** The real path of a logical path; refuses anything that could leave the root. */
  private full(path: string): string {
    return this.root + (checkPath(path) === '/' ? '' : path);
  }

  async stat(path: string): Promise<FileInfo | undefined> {
    try {
      const s = await stat(this.full(path));
      return { path, size: s.size, modTime: s.mtime, isDir: s.isDirectory() };
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  async getContent(path: string): Promise<Buffer> {
    try {
      return await readFile(this.full(path));
    } catch (err) {
      if (isNotFound(err)) throw new PathNotFoundError(path, err);
      throw err;
    }
  }

  async putContent(path: string, content: Buffer | string): Promise<void> {
    const w = await this.writer(path);
    try {
      await w.write(typeof content === 'string' ? Buffer.from(content) : content);
      await w.commit();
    } catch (err) {
      await w.cancel();
      throw err;
    }
  }

  private async openFile(path: string): Promise<FileHandle> {
    try {
      return await open(this.full(path), 'r');
    } catch (err) {
      if (isNotFound(err)) throw new PathNotFoundError(path, err);
      throw err;
    }
  }

  async reader(path: string, range?: ByteRange): Promise<Readable> {
    // Open first so that a missing file rejects here, not later on the stream.
    const fd = await this.openFile(path);
    return createReadStream('', { fd, start: range?.start, end: range?.end, highWaterMark: 1024 * 1024 });
  }

  async writer(path: string, options: { append?: boolean } = {}): Promise<FileWriter> {
    const target = this.full(path);
    if (options.append) {
      const handle = await open(target, 'r+').catch((err: unknown) => {
        throw isNotFound(err) ? new PathNotFoundError(path, err) : err;
      });
      return fileWriter(handle, (await handle.stat()).size, {
        close: async () => undefined,
        commit: async () => undefined,
        discard: () => rm(target, { force: true }),
      });
    }
    const tempPath = `${this.tempDir}/${randomUUID()}`;
    // The file exists once `writer()` resolves, so followers may open it at once.
    const handle = await this.openTemp(tempPath);
    const place = async (): Promise<void> => {
      await mkdir(dirname(target), { recursive: true });
      await rename(tempPath, target);
    };
    return fileWriter(handle, 0, { close: place, commit: place, discard: () => rm(tempPath, { force: true }), readBack: () => openReader(tempPath) });
  }

  /**
   * Creates a temporary file, making this process's temporary directory only when it is missing
   * (the first write, or after something removed it): a `mkdir` before every write was a
   * thread-pool round trip on every blob, link and manifest written.
   */
  private async openTemp(tempPath: string): Promise<FileHandle> {
    try {
      return await open(tempPath, 'wx');
    } catch (err) {
      if (!isNotFound(err)) throw err;
      await mkdir(this.tempDir, { recursive: true });
      return open(tempPath, 'wx');
    }
  }

  async list(path: string): Promise<string[]> {
    try {
      return await readdir(this.full(path));
    } catch (err) {
      if (isNotFound(err) || (err as NodeJS.ErrnoException).code === 'ENOTDIR') throw new PathNotFoundError(path, err);
      throw err;
    }
  }

  async move(from: string, to: string): Promise<void> {
    const target = this.full(to);
    await mkdir(dirname(target), { recursive: true });
    await rename(this.full(from), target).catch((err: unknown) => {
      throw isNotFound(err) ? new PathNotFoundError(from, err) : err;
    });
  }

  async delete(path: string): Promise<void> {
    await rm(this.full(path), { recursive: true, force: true });
  }

  async walk(path: string, visit: (info: FileInfo) => WalkStep | Promise<WalkStep>): Promise<void> {
    const walkDir = async (dir: string): Promise<boolean> => {
      const names = (await this.list(dir).catch((err: unknown) => (err instanceof PathNotFoundError ? [] : Promise.reject(err)))).sort();
      for (const name of names) {
        const child = dir === '/' ? `/${name}` : `${dir}/${name}`;
        const info = await this.stat(child);
        if (!info) continue;
        const step = await visit(info);
        if (step === 'stop') return false;
        if (info.isDir && step !== 'skip' && !(await walkDir(child))) return false;
      }
      return true;
    };
    await walkDir(checkPath(path));
  }

  async redirectURL(): Promise<undefined> {
    return undefined;
  }

  /**
   * The root accepts a write (distribution only stats `/`; a write also catches a read-only or
   * full volume, which is what stops a cache from working).
   */
  async healthCheck(): Promise<void> {
    const dir = this.root + TEMP_ROOT;
    // Not recursive: Node reports a recursive mkdir on a read-only volume as ENOENT, hiding EROFS.
    await mkdir(dir).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'EEXIST') throw err;
    });
    const probe = `${dir}/health-${randomUUID()}`;
    try {
      const handle = await open(probe, 'wx');
      await handle.writeFile('ok').finally(() => handle.close());
    } finally {
      await rm(probe, { force: true }).catch(() => undefined);
    }
  }

  async diskUsage(): Promise<{ totalBytes: number; freeBytes: number } | undefined> {
    const fs = await statfs(this.root || '/').catch(() => undefined);
    return fs && { totalBytes: fs.blocks * fs.bsize, freeBytes: fs.bavail * fs.bsize };
  }

  /**
   * Removes what dead processes left in `.tmp`; returns how many entries. Run at start-up and then
   * periodically while serving (the cost follows the number of processes, not the cache). A
   * directory of this host is dead when its process provably is (gone, its pid reused by a process
   * started later, or a zombie: owner.ts); one of another host when neither it nor a file in it
   * changed for ten minutes (a live owner keeps writing while it fetches).
   * Loose files are from older versions.
   */
  async cleanup(): Promise<number> {
    const dir = this.root + TEMP_ROOT;
    let names: string[];
    try {
      names = await readdir(dir);
    } catch {
      return 0;
    }
    let removed = 0;
    await Promise.all(
      names.map(async (n) => {
        if (n === this.instance || !(await this.isOrphan(`${dir}/${n}`, n))) return;
        await rm(`${dir}/${n}`, { recursive: true, force: true });
        removed++;
      }),
    );
    return removed;
  }

  private async isOrphan(path: string, name: string): Promise<boolean> {
    // A health check's probe, being written now (or left by a crash a while ago).
    if (name.startsWith('health-'))
      return (
        Date.now() -
          (await stat(path).then(
            (i) => i.mtimeMs,
            () => 0,
          )) >
        60_000
      );
    const parsed = parseOwnerTag(name);
    if (!parsed) return true;
    const { owner, legacy } = parsed;
    if (owner.host === safeHost()) {
      // An older process's name carries its pid alone.
      if (legacy) return owner.pid === process.pid || !pidExists(owner.pid);
      if (owner.scope === thisProcess().scope && owner.scope !== '') return isProvablyDead(owner);
    }
    // The newest change to the directory or to a file being written in it.
    const files = await readdir(path).catch(() => [] as string[]);
    const times = await Promise.all(
      [path, ...files.map((f) => `${path}/${f}`)].map((p) =>
        stat(p).then(
          (i) => i.mtimeMs,
          () => 0,
        ),
      ),
    );
    return Date.now() - Math.max(...times) > FOREIGN_ORPHAN_MS;
  }
}

/** What finishing a file writer does with its file. */
interface Finish {
  /** After the data is synced and the handle closed, on `close`. */
  close(): Promise<void>;
  /** The same, on `commit`. */
  commit(): Promise<void>;
  /** On `cancel`, after the handle is closed. */
  discard(): Promise<void>;
  readBack?(): Promise<PositionalReader>;
}

/** Bytes written between two background flushes of a file being written. */
const FLUSH_EVERY = 2 * 1024 * 1024;

/** A writer appending to an open file from `size` on. */
function fileWriter(handle: FileHandle, initialSize: number, finish: Finish): FileWriter {
  let size = initialSize;
  let closed = false;
  let wrote = false;
  // A large file is flushed to disk in the background as it is written, so that the sync at its
  // commit (which holds the blob's lock, the blob's last byte, and the clients that arrive
  // meanwhile) has at most the last 2 MiB left: measured 115 ms for a 64 MiB blob synced whole at
  // the end on a loaded machine; from the client's second-to-last byte to its last, 10 to 12 ms for
  // a cold 8 MiB blob with a flush every 8 MiB, 4 to 6 ms with one every 2 MiB. Flushing every 2 MiB
  // was also faster for 20 cold 256 MiB streams at once (18.7 and 19.8 s against 20.3 and 27.5 s).
  let unflushed = 0;
  let flushing: Promise<void> | undefined;
  const closeHandle = async (sync: boolean): Promise<void> => {
    if (closed) return;
    closed = true;
    try {
      await flushing;
      // Nothing written by this writer (an upload's status): nothing to make durable.
      if (sync && wrote) await handle.sync();
    } finally {
      await handle.close();
    }
  };
  const append = async (chunks: readonly Buffer[]): Promise<void> => {
    const n = await writeAllAt(handle, chunks, size);
    size += n;
    wrote = true;
    unflushed += n;
    if (unflushed >= FLUSH_EVERY && !flushing) {
      unflushed = 0;
      flushing = handle.datasync().then(
        () => (flushing = undefined),
        () => (flushing = undefined),
      );
    }
  };
  return {
    get size() {
      return size;
    },
    write: (chunk: Buffer) => append([chunk]),
    writev: append,
    close: async () => {
      await closeHandle(true);
      await finish.close();
    },
    commit: async () => {
      await closeHandle(true);
      await finish.commit();
    },
    cancel: async () => {
      await closeHandle(false).catch(() => undefined);
      await finish.discard();
    },
    readBack: finish.readBack,
  };
}

async function openReader(path: string): Promise<PositionalReader> {
  // Opened while the file is still at `path`; reads keep working through the rename at commit and
  // through the unlink of a cancelled write.
  const handle = await open(path, 'r');
  return {
    read: async (buffer, offset, length, position) => (await handle.read(buffer, offset, length, position)).bytesRead,
    close: () => handle.close().catch(() => undefined),
  };
}

function isNotFound(err: unknown): boolean {
  return (err as NodeJS.ErrnoException)?.code === 'ENOENT';
}
