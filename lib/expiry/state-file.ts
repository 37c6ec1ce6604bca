/**
 * `scheduler-state.json` in distribution's format (`registry/proxy/expiry/scheduler.go`): an
 * object keyed by `<repo>@<digest>` whose values are `{Key, ExpiryData (RFC 3339), EntryType (0 blob,
 * 1 manifest)}` (one entry's text, and Go's times, in state-entry.ts). A damaged file is set aside,
 * never fatal (the official registry panics, #2374).
 *
 * Every file access of the schedule is in this module: the state file is read as a stream in
 * bounded chunks and rewritten as a stream (unchanged members copied verbatim, changes merged in),
 * always to a temporary file renamed into place under the file's lock, so that it is complete JSON
 * at every moment. The journals of replicas that do not hold the expiry lease are in
 * schedule-journal.ts.
 */
import { open, readdir, rename, mkdir, unlink, type FileHandle } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { randomUUID } from 'node:crypto';
import lockfile from 'proper-lockfile';
import { scanStream, StateSyntaxError } from './state-scanner.js';
import { entryOf, member, type StoredEntry } from './state-entry.js';
import type { EntryType } from './expiry-index.js';

/** One scheduled expiry. */
export interface Entry {
  readonly key: string;
  readonly expiry: Date;
  readonly type: EntryType;
}

/**
 * Changes to apply to the stored schedule: a key's new entry, or null to remove it. In a journal,
 * `hit` marks a cache hit on an entry this process had not seen: it extends the entry where the
 * lease holder has it, and creates none.
 */
export type Changes = ReadonlyMap<string, { readonly expiry: number; readonly type: EntryType; readonly hit?: boolean } | null>;

/** Bytes read per slice: about 250 entries, a few milliseconds of the event loop. */
const CHUNK = 64 * 1024;
/** Bytes per read and per write of a rewrite (in the writer thread: no slice to keep short). */
const MERGE_CHUNK = 1024 * 1024;

/** What a load found. */
export interface LoadResult {
  readonly loaded: number;
  /** Set when the file was damaged (it was then moved aside). */
  readonly problem?: string;
}

/**
 * Streams the state file to `onBatch`, one batch per chunk of 64 KiB (about 250 entries), giving
 * the event loop back between chunks (`stop` ends it early). A damaged file is moved aside, keeping what was read of it:
 * malformed entries are skipped, and what came before a syntax error is kept.
 */
export async function loadState(path: string, onBatch: (entries: StoredEntry[]) => void, stop: () => boolean = () => false): Promise<LoadResult> {
  let handle: FileHandle;
  try {
    handle = await open(path, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { loaded: 0 };
    return { loaded: 0, problem: `${path} could not be read (${(err as Error).message}); starting with an empty schedule` };
  }
  try {
    return await loadFrom(
      async (buf, offset, length) => (await handle.read(buf, offset, length, null)).bytesRead,
      path,
      onBatch,
      stop,
      async () => {
        await handle.close();
        return setAside(path);
      },
    );
  } finally {
    await handle.close().catch(() => undefined);
  }
}

/** `loadState` on any medium: `read` the stored bytes, `setAside` moves a damaged state away and says so. */
export async function loadFrom(
  read: ReadInto,
  location: string,
  onBatch: (entries: StoredEntry[]) => void,
  stop: () => boolean,
  setAside: () => Promise<string>,
): Promise<LoadResult> {
  let loaded = 0;
  let skipped = 0;
  let stopped = false;
  let syntax: StateSyntaxError | undefined;
  let batch: StoredEntry[] = [];
  try {
    await scanStream(
      read,
      CHUNK,
      (m) => {
        const e = entryOf(m);
        if (e) batch.push(e);
        else skipped++;
      },
      async () => {
        loaded += batch.length;
        if (batch.length > 0) onBatch(batch);
        batch = [];
        await new Promise((r) => setImmediate(r));
        // Stopping: what was read stays, and the file is not judged on a part of it.
        stopped = stop();
        return !stopped;
      },
    );
  } catch (err) {
    if (!(err instanceof StateSyntaxError)) {
      return { loaded, problem: `${location} could not be read (${(err as Error).message}); ${loaded} entries read before the error kept` };
    }
    syntax = err;
  }
  loaded += batch.length;
  if (batch.length > 0) onBatch(batch);
  if (stopped) return { loaded };
  if (syntax) {
    const what = syntax.message === 'empty' ? 'empty' : syntax.notObject ? 'not a JSON object' : `not valid JSON (${syntax.message})`;
    const kept = loaded > 0 ? `; the ${loaded} entries before the damage were kept` : '';
    return { loaded, problem: `${location} was ${what}; ${await setAside()}${kept}` };
  }
  if (skipped === 0) return { loaded };
  return { loaded, problem: `${skipped} malformed entr${skipped === 1 ? 'y' : 'ies'} in ${location} skipped; ${await setAside()}` };
}

/** Reads the whole state into a map (small files: tests, journals); a damaged file is moved aside and reported as `problem`. */
export async function readState(path: string): Promise<{ entries: Map<string, Entry>; problem?: string }> {
  const entries = new Map<string, Entry>();
  const { problem } = await loadState(path, (batch) => {
    for (const e of batch) entries.set(e.key, { key: e.key, expiry: new Date(e.expiry), type: e.type });
  });
  return { entries, problem };
}

/** `<path>.corrupt-<timestamp>-<id>`: where a damaged state is set aside. */
export function asideName(path: string): string {
  return `${path}.corrupt-${new Date().toISOString().replace(/[:.]/g, '-')}-${randomUUID().slice(0, 8)}`;
}

/** Renames a damaged state file to `<path>.corrupt-<timestamp>`; says what happened. */
async function setAside(path: string): Promise<string> {
  const aside = asideName(path);
  try {
    await rename(path, aside);
    return `moved to ${aside}`;
  } catch (err) {
    return `could not be moved aside (${(err as Error).message})`;
  }
}

/** The base file could not be read as a state file: the caller must write the whole schedule. */
export class StateBaseError extends Error {
  readonly code = 'ERR_STATE_BASE';
}

/** What a merge did. */
export interface MergeResult {
  /** Entries in the file written. */
  readonly entries: number;
  readonly bytes: number;
}

/** Reads up to `length` bytes into `buf` at `offset`; 0 at the end. */
export type ReadInto = (buf: Buffer, offset: number, length: number) => Promise<number>;

/**
 * The merge itself, on any medium: `base` (what is stored, or none) with `changes` applied,
 * streamed to `write` in pieces of about 1 MiB; unchanged members are copied as they are. Throws
 * `StateBaseError` when `base` is not a state file. `between` runs after each piece read (a
 * medium merged on the event loop yields there).
 */
export async function mergeStreams(
  base: ReadInto | undefined,
  changes: Changes,
  write: (piece: Buffer) => Promise<void>,
  between?: () => Promise<void>,
): Promise<MergeResult> {
  const out = new Output(write);
  let entries = 0;
  out.text('{');
  if (base) {
    try {
      await scanStream(
        base,
        MERGE_CHUNK,
        (m) => {
          if (changes.has(m.key)) return;
          if (entries++ > 0) out.text(',');
          out.bytes(m.buf, m.start, m.end);
        },
        async () => {
          await out.drain();
          await between?.();
        },
      );
    } catch (err) {
      if (err instanceof StateSyntaxError) throw new StateBaseError(`the stored state is not a state file (${err.message})`);
      throw err;
    }
  }
  for (const [key, e] of changes) {
    if (!e) continue;
    if (entries++ > 0) out.text(',');
    out.text(member(key, e.expiry, e.type));
    await out.drain();
  }
  out.text('}');
  await out.drain(true);
  return { entries, bytes: out.written };
}

/**
 * Rewrites the state file as what it holds with `changes` applied (or, with `replace`, as the
 * changes alone), streaming: the cost is a read and a write of the file, never its parsed tree. A
 * temporary file, fsync'd, is renamed into place under the file's lock. Throws `StateBaseError`
 * when the file there is not a state file (it is left as it is).
 */
export async function mergeState(path: string, changes: Changes, opts: { replace?: boolean } = {}): Promise<MergeResult> {
  await mkdir(dirname(path), { recursive: true });
  const release = await lockState(path);
  const temp = `${path}.${randomUUID()}.tmp`;
  try {
    const handle = await open(temp, 'w');
    let result: MergeResult;
    try {
      let base;
      if (!opts.replace) {
        try {
          base = await open(path, 'r');
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        }
      }
      try {
        const from = base;
        result = await mergeStreams(from && (async (buf, offset, length) => (await from.read(buf, offset, length, null)).bytesRead), changes, async (piece) => {
          let off = 0;
          while (off < piece.length) off += (await handle.write(piece, off)).bytesWritten;
        });
      } finally {
        await base?.close();
      }
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, path);
    return result;
  } catch (err) {
    await unlink(temp).catch(() => undefined);
    throw err;
  } finally {
    await release();
  }
}

/**
 * Removes the temporary files of state writes that never finished (a process killed mid-write),
 * under the file's lock: a writer holds the lock for as long as its temporary file exists, so any
 * found under it is an orphan, never another live writer's. Returns how many were removed.
 */
export async function removeUnfinishedWrites(path: string): Promise<number> {
  const prefix = `${basename(path)}.`;
  let names: string[];
  try {
    names = (await readdir(dirname(path))).filter((n) => n.startsWith(prefix) && n.endsWith('.tmp'));
  } catch {
    return 0;
  }
  if (names.length === 0) return 0;
  const release = await lockState(path);
  try {
    let removed = 0;
    for (const n of names) {
      await unlink(`${dirname(path)}/${n}`).then(
        () => removed++,
        () => undefined,
      );
    }
    return removed;
  } finally {
    await release();
  }
}

/** A buffered writer: bytes are gathered synchronously and written out in large pieces. */
class Output {
  private buf = Buffer.allocUnsafe(MERGE_CHUNK * 2);
  private used = 0;
  written = 0;

  constructor(private readonly write: (piece: Buffer) => Promise<void>) {}

  private room(n: number): void {
    if (this.used + n <= this.buf.length) return;
    const grown = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.used + n));
    this.buf.copy(grown, 0, 0, this.used);
    this.buf = grown;
  }

  bytes(src: Buffer, start: number, end: number): void {
    this.room(end - start);
    this.used += src.copy(this.buf, this.used, start, end);
  }

  text(s: string): void {
    this.room(Buffer.byteLength(s));
    this.used += this.buf.write(s, this.used);
  }

  /** Writes what was gathered once there is enough of it (or anything, with `all`). */
  async drain(all = false): Promise<void> {
    if (this.used < MERGE_CHUNK && !(all && this.used > 0)) return;
    // The piece is valid until `write` resolves (the buffer is reused).
    await this.write(this.buf.subarray(0, this.used));
    this.written += this.used;
    this.used = 0;
  }
}

function lockState(path: string): Promise<() => Promise<void>> {
  return lockfile.lock(path, { realpath: false, stale: 10_000, retries: { retries: 50, minTimeout: 20, maxTimeout: 200 } });
}
