/**
 * The schedule kept through the storage driver, for any driver but the filesystem's (S3): the
 * `StateStore` of state-store.ts with the state as an object, rewritten as a stream through the
 * event loop, and the journals as objects beside it.
 */
import type { Readable } from 'node:stream';
import { mergeStreams, StateBaseError, type Changes, type MergeResult, type ReadInto } from './state-file.js';
import { asideName, loadFrom, type LoadResult } from './state-load.js';
import type { StoredEntry } from './state-entry.js';
import { journalText, parseJournal } from './schedule-journal.js';
import { rebuildMarker, StateWriteError, type StateStore } from './state-store.js';
import { PathNotFoundError, type StorageDriver } from '../storage/driver.js';
import { SCHEDULER_JOURNAL_ENTRY } from '../storage/paths.js';

/** Reads a stream into callers' buffers, as `ReadInto` asks. */
function readInto(stream: Readable): ReadInto {
  const chunks = stream[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  let pending: Buffer | undefined;
  return async (buf, offset, length) => {
    if (!pending || pending.length === 0) {
      const next = await chunks.next();
      if (next.done) return 0;
      pending = next.value;
    }
    const n = pending.copy(buf, offset, 0, Math.min(length, pending.length));
    pending = pending.subarray(n);
    return n;
  };
}

/**
 * The state as an object of a storage driver (on S3 `<rootdirectory>/scheduler-state.json`, where
 * distribution writes it through its driver), its journals as objects beside it. The rewrite
 * streams the object through the event loop in 1 MiB pieces, yielding between them (the driver's
 * client lives on this thread); an object store has no lock, so writes are serialised within this
 * process only (replicas on S3 coordinate through Redis).
 */
export class DriverStateStore implements StateStore {
  private queue: Promise<unknown> = Promise.resolve();
  private journalSeq = 0;

  constructor(
    private readonly driver: StorageDriver,
    /** The state's path in the driver (`/scheduler-state.json`). */
    private readonly path: string,
    private readonly instance = `${process.pid}-${Math.random().toString(16).slice(2, 10)}`,
  ) {}

  get location(): string {
    return `${this.driver.name}:${this.path}`;
  }

  private get journalDir(): string {
    return `${this.path.slice(0, this.path.lastIndexOf('/'))}/${SCHEDULER_JOURNAL_ENTRY}`;
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  async load(onBatch: (entries: StoredEntry[]) => void, stop: () => boolean = () => false): Promise<LoadResult> {
    let stream: Readable;
    try {
      stream = await this.driver.reader(this.path);
    } catch (err) {
      if (err instanceof PathNotFoundError) return { loaded: 0 };
      return { loaded: 0, problem: `${this.location} could not be read (${(err as Error).message}); starting with an empty schedule` };
    }
    try {
      return await loadFrom(readInto(stream), this.location, onBatch, stop, async () => {
        stream.destroy();
        const aside = asideName(this.path);
        try {
          await this.driver.move(this.path, aside);
          return `moved to ${aside}`;
        } catch (err) {
          return `could not be moved aside (${(err as Error).message})`;
        }
      });
    } finally {
      stream.destroy();
    }
  }

  write(changes: Changes, opts: { replace?: boolean } = {}): Promise<MergeResult & { ms: number }> {
    return this.serial(async () => {
      const started = performance.now();
      let base: Readable | undefined;
      if (!opts.replace) {
        base = await this.driver.reader(this.path).catch((err: Error) => {
          if (err instanceof PathNotFoundError) return undefined;
          throw err;
        });
      }
      const w = await this.driver.writer(this.path);
      try {
        const r = await mergeStreams(
          base && readInto(base),
          changes,
          (piece) => w.write(Buffer.from(piece)),
          () => new Promise((res) => setImmediate(res)),
        );
        await w.commit();
        return { ...r, ms: performance.now() - started };
      } catch (err) {
        await w.cancel().catch(() => undefined);
        throw err instanceof StateBaseError ? new StateWriteError(err.message, true) : err;
      } finally {
        base?.destroy();
      }
    });
  }

  async writeJournal(changes: Changes): Promise<void> {
    const seq = String(this.journalSeq++).padStart(8, '0');
    await this.driver.putContent(`${this.journalDir}/${String(Date.now()).padStart(14, '0')}-${this.instance}-${seq}.journal`, journalText(changes));
  }

  async journals(): Promise<string[]> {
    const names = await this.driver.list(this.journalDir).catch((err: Error) => {
      if (err instanceof PathNotFoundError) return [] as string[];
      throw err;
    });
    return names.filter((n) => n.endsWith('.journal')).sort();
  }

  async readJournal(name: string): Promise<Changes> {
    try {
      return parseJournal((await this.driver.getContent(`${this.journalDir}/${name}`)).toString('utf8'));
    } catch (err) {
      if (err instanceof PathNotFoundError) return new Map();
      throw err;
    }
  }

  async dropJournals(names: readonly string[]): Promise<void> {
    for (const n of names) await this.driver.delete(`${this.journalDir}/${n}`).catch(() => undefined);
  }

  async rebuildMarked(): Promise<boolean> {
    return (await this.driver.stat(rebuildMarker(this.path)).catch(() => undefined)) !== undefined;
  }

  async markRebuild(on: boolean): Promise<void> {
    const marker = rebuildMarker(this.path);
    if (on) await this.driver.putContent(marker, '');
    else
      await this.driver.delete(marker).catch((err: Error) => {
        if (!(err instanceof PathNotFoundError)) throw err;
      });
  }

  async close(): Promise<void> {
    await this.queue;
  }
}
