/**
 * Where the schedule is kept between runs, behind one small interface: the file store below
 * (`scheduler-state.json` on the filesystem, rewritten by a worker thread once it is large,
 * journals beside it); the store through the storage driver (driver-state-store.ts: the state as
 * an object on S3), or one on Redis, can take its place.
 *
 * Why a worker that merges changes into the file rather than a copy of the schedule kept in the
 * worker: the file in distribution's format is the one copy; a rewrite streams it (read, copy the
 * unchanged members byte for byte, append the changed ones), so the worker holds no second copy of
 * a million entries (the RSS budget is 400 MiB at a million), and the event loop only hands over the
 * changes: its cost per write is the number of changes, never the size of the schedule.
 *
 * Why not always: a worker thread costs the process about 17 MiB of RSS for as long as it lives,
 * which is a fifth of an idle mirror's. A file under `THREAD_FROM_BYTES` (1 MiB, about 4,300
 * entries) is merged on the event loop instead, the same streaming merge in 64 KiB slices: at most
 * about 8 ms of CPU per write (measured), bounded by the threshold, not by the cache.
 */
import { existsSync } from 'node:fs';
import { mkdir, rm, stat, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { mergeState, removeUnfinishedWrites, StateBaseError, type Changes, type MergeResult } from './state-file.js';
import { loadState, type LoadResult } from './state-load.js';
import type { StoredEntry } from './state-entry.js';
import { deleteJournals, listJournals, readJournal, writeJournal } from './schedule-journal.js';
import { SCHEDULER_JOURNAL_ENTRY } from '../storage/paths.js';

/** The schedule's persistence. */
export interface StateStore {
  /** A name for log lines (the state file's path). */
  readonly location: string;
  /** Streams the stored schedule to `onBatch` in bounded batches; `stop` ends it early. */
  load(onBatch: (entries: StoredEntry[]) => void, stop?: () => boolean): Promise<LoadResult>;
  /**
   * Applies `changes` to the stored schedule, or with `replace` stores exactly them. Rejects with
   * a `base` flag when what is stored cannot be merged into (then write everything with `replace`).
   */
  write(changes: Changes, opts?: { replace?: boolean }): Promise<MergeResult & { ms: number }>;
  /** Shared mode: records this process's changes for the replica that holds the expiry lease. */
  writeJournal(changes: Changes): Promise<void>;
  /** Shared mode: the journals waiting, oldest first. */
  journals(): Promise<string[]>;
  readJournal(name: string): Promise<Changes>;
  dropJournals(names: readonly string[]): Promise<void>;
  /** Whether the marker of an interrupted rebuild of the schedule from storage is there. */
  rebuildMarked(): Promise<boolean>;
  /** Writes (`on`) or removes the marker of a rebuild under way. */
  markRebuild(on: boolean): Promise<void>;
  /** Ends the worker. */
  close(): Promise<void>;
}

/** Messages to the writer thread. */
export type WriterMessage =
  | { readonly op: 'changes'; readonly id: number; readonly keys: string[]; readonly expiries: Float64Array; readonly types: Uint8Array }
  | { readonly op: 'write'; readonly id: number; readonly path: string; readonly replace: boolean };

/** The writer thread's answer to a write. */
export type WriterReply =
  | { readonly id: number; readonly entries: number; readonly bytes: number; readonly ms: number }
  | { readonly id: number; readonly error: string; readonly base: boolean };

/** A failed write; `base` when the stored file could not be merged into. */
export class StateWriteError extends Error {
  constructor(
    message: string,
    readonly base: boolean,
  ) {
    super(message);
  }
}

/** Beside the state: a rebuild of the schedule from storage is under way (or was cut short). */
export const rebuildMarker = (state: string): string => `${state}.rebuilding`;

/** Changes per message to the thread: cloning a batch costs the event loop about a millisecond. */
const BATCH = 5000;

/** From this size on, the state file is merged by the writer thread (see the module's comment). */
export const THREAD_FROM_BYTES = 1 << 20;

/** What a member of the state file takes, about (`"<key>":{"Key":"<key>","ExpiryData":...}`, 240 bytes for a digest key). */
const ENTRY_BYTES = 256;

/**
 * The compiled worker script. Under the test runner the library runs from its TypeScript sources,
 * which a worker cannot load: the build (which `npm test` runs first) has it in dist/.
 */
function writerScript(): URL {
  const here = new URL('./state-writer-thread.js', import.meta.url);
  if (existsSync(fileURLToPath(here))) return here;
  return new URL('../../dist/expiry/state-writer-thread.js', import.meta.url);
}

/** `scheduler-state.json` on a filesystem, journals in `.scheduler-journal/` beside it. */
export class FileStateStore implements StateStore {
  private worker?: Worker;
  /** Closed: no writer thread is started any more (one started after `close` would live on). */
  private closed = false;
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve: (r: MergeResult & { ms: number }) => void; reject: (e: Error) => void }>();
  private readonly journalDir: string;
  private journalSeq = 0;
  /** The state file's size as last loaded or written; unknown before the load. */
  private storedBytes?: number;

  constructor(
    readonly location: string,
    /** Names this process's journals (unique per process on the volume). */
    private readonly instance = `${process.pid}-${Math.random().toString(16).slice(2, 10)}`,
    /** From this size of the file on, merges run on the writer thread. */
    private readonly threadFromBytes = THREAD_FROM_BYTES,
  ) {
    this.journalDir = `${dirname(location)}/${SCHEDULER_JOURNAL_ENTRY}`;
  }

  /** Whether the writer thread is running (it is only for a large file). */
  get threaded(): boolean {
    return this.worker !== undefined;
  }

  async load(onBatch: (entries: StoredEntry[]) => void, stop?: () => boolean): Promise<LoadResult> {
    // In the background: a lock left by a writer killed mid-write is waited for until it is stale.
    void removeUnfinishedWrites(this.location).catch(() => undefined);
    this.storedBytes = await stat(this.location).then(
      (s) => s.size,
      () => 0,
    );
    // A large file's thread boots while the file loads, so the first write does not wait for it.
    if (!this.closed && this.storedBytes >= this.threadFromBytes) this.thread();
    return loadState(this.location, onBatch, stop);
  }

  async write(changes: Changes, opts: { replace?: boolean } = {}): Promise<MergeResult & { ms: number }> {
    // Closed: no merge here, and no writer thread started (one started after `close` would live on).
    if (this.closed) throw new StateWriteError(`${this.location}: the store is closed`, false);
    const base = opts.replace ? 0 : this.storedBytes;
    if (!this.worker && base !== undefined && base + changes.size * ENTRY_BYTES < this.threadFromBytes) {
      const started = performance.now();
      const r = await mergeState(this.location, changes, opts).catch((err: Error) => {
        throw new StateWriteError(err.message, err instanceof StateBaseError);
      });
      this.storedBytes = r.bytes;
      return { entries: r.entries, bytes: r.bytes, ms: performance.now() - started };
    }
    const r = await this.writeOnThread(changes, opts);
    this.storedBytes = r.bytes;
    // A file that shrank well below the threshold (expiries, evictions) is merged here again: the
    // thread's memory is given back. Half the threshold, so that a file near it does not start and
    // end a thread at every write.
    if (r.bytes < this.threadFromBytes / 2 && this.waiting.size === 0) {
      const w = this.worker;
      this.worker = undefined;
      void w?.terminate();
    }
    return r;
  }

  private async writeOnThread(changes: Changes, opts: { replace?: boolean }): Promise<MergeResult & { ms: number }> {
    const worker = this.thread();
    const id = this.nextId++;
    const done = new Promise<MergeResult & { ms: number }>((resolve, reject) => this.waiting.set(id, { resolve, reject }));
    // A write in progress holds the process (a flush at shutdown completes); an idle thread does not.
    worker.ref();
    let keys: string[] = [];
    let expiries = new Float64Array(Math.min(BATCH, changes.size));
    let types = new Uint8Array(expiries.length);
    let sent = 0;
    for (const [key, e] of changes) {
      const i = keys.length;
      keys.push(key);
      expiries[i] = e ? e.expiry : NaN;
      types[i] = e?.type === 'manifest' ? 1 : 0;
      if (keys.length === expiries.length) {
        worker.postMessage({ op: 'changes', id, keys, expiries, types } satisfies WriterMessage, [expiries.buffer, types.buffer]);
        sent += keys.length;
        keys = [];
        expiries = new Float64Array(Math.min(BATCH, Math.max(1, changes.size - sent)));
        types = new Uint8Array(expiries.length);
        // A large batch (a full rewrite): let requests in between the pieces.
        await new Promise((r) => setImmediate(r));
      }
    }
    if (keys.length > 0)
      worker.postMessage({ op: 'changes', id, keys, expiries: expiries.slice(0, keys.length), types: types.slice(0, keys.length) } satisfies WriterMessage);
    worker.postMessage({ op: 'write', id, path: this.location, replace: opts.replace === true } satisfies WriterMessage);
    return done;
  }

  private thread(): Worker {
    if (this.worker) return this.worker;
    // The thread needs none of the process's node options (some, like --input-type, make it fail).
    const worker = new Worker(writerScript(), { execArgv: [] });
    worker.on('message', (reply: WriterReply) => {
      const w = this.waiting.get(reply.id);
      if (!w) return;
      this.waiting.delete(reply.id);
      if (this.waiting.size === 0) worker.unref();
      if ('error' in reply) w.reject(new StateWriteError(reply.error, reply.base));
      else w.resolve(reply);
    });
    const fail = (err: Error): void => {
      if (this.worker === worker) this.worker = undefined;
      for (const w of this.waiting.values()) w.reject(new StateWriteError(`the state writer thread failed: ${err.message}`, false));
      this.waiting.clear();
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`exited with code ${code}`)));
    // Idle, it does not hold the process. After the listeners: adding a 'message' listener refs the
    // worker's port again, and an idle writer thread held the process (and test workers) alive.
    worker.unref();
    this.worker = worker;
    return worker;
  }

  writeJournal(changes: Changes): Promise<void> {
    const seq = String(this.journalSeq++).padStart(8, '0');
    return writeJournal(this.journalDir, `${String(Date.now()).padStart(14, '0')}-${this.instance}-${seq}`, changes);
  }

  journals(): Promise<string[]> {
    return listJournals(this.journalDir);
  }

  readJournal(name: string): Promise<Changes> {
    return readJournal(this.journalDir, name);
  }

  dropJournals(names: readonly string[]): Promise<void> {
    return deleteJournals(this.journalDir, names);
  }

  async rebuildMarked(): Promise<boolean> {
    return existsSync(rebuildMarker(this.location));
  }

  async markRebuild(on: boolean): Promise<void> {
    const marker = rebuildMarker(this.location);
    if (on) {
      await mkdir(dirname(marker), { recursive: true });
      await writeFile(marker, '');
    } else await rm(marker, { force: true });
  }

  async close(): Promise<void> {
    this.closed = true;
    const w = this.worker;
    this.worker = undefined;
    await w?.terminate();
  }
}
