/**
 * The filesystem storage driver (`storage.filesystem.rootdirectory`). Whole-file writes and blob
 * writes go to a temporary directory of this process, `<root>/.tmp/<host>-<pid>-<id>/`, and are
 * renamed into place, so a reader or a crash never sees a partial file. Several processes (replicas
 * on a shared volume) each have their own; at start-up those of dead processes are removed.
 */
import { createReadStream } from 'node:fs';
import { mkdir, open, readFile, readdir, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { dirname, resolve } from 'node:path';
import type { Readable } from 'node:stream';
import { InvalidPathError } from '../errors.js';
import { PathNotFoundError, type FileInfo, type FileWriter, type StorageDriver } from './driver.js';
import { TEMP_ROOT } from './paths.js';

/** A temporary directory of another host, with no sign of life for this long, is an orphan. */
const FOREIGN_ORPHAN_MS = 10 * 60_000;

/** Storage on a local (or network) filesystem. */
export class FilesystemDriver implements StorageDriver {
  readonly name = 'filesystem';
  readonly root: string;
  /** This process's temporary directory (absolute). */
  readonly tempDir: string;
  private readonly instance: string;

  constructor(rootDirectory: string) {
    this.root = resolve(rootDirectory);
    // The host name and pid let another process on the same host tell at once whether we live.
    this.instance = `${safeHost()}-${process.pid}-${randomUUID().slice(0, 8)}`;
    this.tempDir = `${this.root}${TEMP_ROOT}/${this.instance}`;
  }

  /** The real path of a logical path; refuses anything that could leave the root. */
  localPath(path: string): string {
    if (!path.startsWith('/') || path.includes('\0') || path.split('/').some((s) => s === '..' || s === '.')) {
      throw new InvalidPathError(`invalid storage path: ${JSON.stringify(path)}`);
    }
    return this.root + path;
  }

  async stat(path: string): Promise<FileInfo | undefined> {
    try {
      const s = await stat(this.localPath(path));
      return { path, size: s.size, modTime: s.mtime, isDir: s.isDirectory() };
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  async getContent(path: string): Promise<Buffer> {
    try {
      return await readFile(this.localPath(path));
    } catch (err) {
      if (isNotFound(err)) throw new PathNotFoundError(path, err);
      throw err;
    }
  }

  async putContent(path: string, content: Buffer | string): Promise<void> {
    const w = await this.writer();
    try {
      await w.write(typeof content === 'string' ? Buffer.from(content) : content);
      await w.commit(path);
    } catch (err) {
      await w.cancel();
      throw err;
    }
  }

  async openFile(path: string): Promise<FileHandle> {
    try {
      return await open(this.localPath(path), 'r');
    } catch (err) {
      if (isNotFound(err)) throw new PathNotFoundError(path, err);
      throw err;
    }
  }

  async reader(path: string, range?: { start: number; end: number }): Promise<Readable> {
    let fd;
    try {
      // Open first so that a missing file rejects here, not later on the stream.
      fd = await open(this.localPath(path), 'r');
    } catch (err) {
      if (isNotFound(err)) throw new PathNotFoundError(path, err);
      throw err;
    }
    return createReadStream('', { fd, start: range?.start, end: range?.end, highWaterMark: 1024 * 1024 });
  }

  async writer(): Promise<FileWriter> {
    const dir = this.tempDir;
    await mkdir(dir, { recursive: true });
    const tempPath = `${dir}/${randomUUID()}`;
    // The file exists once `writer()` resolves, so followers may open it at once.
    const handle = await open(tempPath, 'wx');
    let size = 0;
    let closed = false;
    const close = async (): Promise<void> => {
      if (closed) return;
      closed = true;
      await handle.close();
    };
    return {
      tempPath,
      get size() {
        return size;
      },
      write: async (chunk: Buffer) => {
        let offset = 0;
        while (offset < chunk.length) {
          const { bytesWritten } = await handle.write(chunk, offset, chunk.length - offset);
          offset += bytesWritten;
        }
        size += chunk.length;
      },
      commit: async (path: string) => {
        const target = this.localPath(path);
        await handle.sync();
        await close();
        await mkdir(dirname(target), { recursive: true });
        await rename(tempPath, target);
      },
      cancel: async () => {
        await close().catch(() => undefined);
        await rm(tempPath, { force: true });
      },
    };
  }

  async list(path: string): Promise<string[]> {
    try {
      return await readdir(this.localPath(path));
    } catch (err) {
      if (isNotFound(err) || (err as NodeJS.ErrnoException).code === 'ENOTDIR') throw new PathNotFoundError(path, err);
      throw err;
    }
  }

  async delete(path: string): Promise<void> {
    await rm(this.localPath(path), { recursive: true, force: true });
  }

  /**
   * Removes what dead processes left in `.tmp`; returns how many entries. A directory of this host
   * is dead when its process is (or when it names this pid but is not ours: a restarted container);
   * one of another host when neither it nor a file in it changed for ten minutes (a live owner
   * keeps writing while it fetches).
   * Loose files are from older versions.
   */
  async cleanTemporaryFiles(): Promise<number> {
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
    const m = /^(.+)-(\d+)-[0-9a-f]{8}$/.exec(name);
    if (!m) return true;
    const [, host, pid] = m as unknown as [string, string, string];
    if (host === safeHost()) return Number(pid) === process.pid || !isAlive(Number(pid));
    // The newest change to the directory or to a file being written in it.
    const files = await readdir(path).catch(() => [] as string[]);
    const times = await Promise.all([path, ...files.map((f) => `${path}/${f}`)].map((p) => stat(p).then((i) => i.mtimeMs, () => 0)));
    return Date.now() - Math.max(...times) > FOREIGN_ORPHAN_MS;
  }
}

/** The host name, made safe for a file name. */
function safeHost(): string {
  return hostname().replace(/[^A-Za-z0-9.]/g, '_') || 'host';
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists, owned by someone else.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function isNotFound(err: unknown): boolean {
  return (err as NodeJS.ErrnoException)?.code === 'ENOENT';
}
