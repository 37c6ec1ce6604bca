/**
 * The filesystem storage driver (`storage.filesystem.rootdirectory`). Whole-file writes and blob
 * writes go to `<root>/.tmp/` and are renamed into place, so a reader or a crash never sees a
 * partial file; `.tmp` is emptied at start-up.
 */
import { createReadStream } from 'node:fs';
import { mkdir, open, readFile, readdir, rename, rm, stat } from 'node:fs/promises';
import { randomUUID } from 'node:crypto';
import { dirname, resolve } from 'node:path';
import type { Readable } from 'node:stream';
import { MirrorError } from '../errors.js';
import { PathNotFoundError, type FileInfo, type FileWriter, type StorageDriver } from './driver.js';

const TMP = '.tmp';

/** Storage on a local (or network) filesystem. */
export class FilesystemDriver implements StorageDriver {
  readonly name = 'filesystem';
  readonly root: string;

  constructor(rootDirectory: string) {
    this.root = resolve(rootDirectory);
  }

  /** The real path of a logical path; refuses anything that could leave the root. */
  localPath(path: string): string {
    if (!path.startsWith('/') || path.includes('\0') || path.split('/').some((s) => s === '..' || s === '.')) {
      throw new MirrorError('ERR_INVALID_PATH_COMPONENT', `invalid storage path: ${JSON.stringify(path)}`);
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
    const dir = `${this.root}/${TMP}`;
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

  /** Removes what an interrupted run left in `.tmp`; returns how many entries. */
  async cleanTemporaryFiles(): Promise<number> {
    const dir = `${this.root}/${TMP}`;
    let names: string[];
    try {
      names = await readdir(dir);
    } catch {
      return 0;
    }
    await Promise.all(names.map((n) => rm(`${dir}/${n}`, { recursive: true, force: true })));
    return names.length;
  }
}

function isNotFound(err: unknown): boolean {
  return (err as NodeJS.ErrnoException)?.code === 'ENOENT';
}
