/**
 * `scheduler-state.json` in distribution's format (`registry/proxy/expiry/scheduler.go`): an
 * object keyed by `<repo>@<digest>` whose values are `{Key, ExpiryData (RFC 3339), EntryType (0 blob,
 * 1 manifest)}` (one entry's text, and Go's times, in state-entry.ts), and its rewrite.
 *
 * The state file is rewritten as a stream (unchanged members copied verbatim, changes merged in),
 * always to a temporary file renamed into place under the file's lock, so that it is complete JSON
 * at every moment. Its load (a stream read in bounded chunks; a damaged file set aside, never fatal)
 * is in state-load.ts, the journals of replicas that do not hold the expiry lease in
 * schedule-journal.ts.
 */
import { open, readdir, rename, mkdir, unlink } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { randomUUID } from 'node:crypto';
import lockfile from 'proper-lockfile';
import { scanStream, StateSyntaxError } from './state-scanner.js';
import { member } from './state-entry.js';
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

/** Bytes per read and per write of a rewrite (in the writer thread: no slice to keep short). */
const MERGE_CHUNK = 1024 * 1024;

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
