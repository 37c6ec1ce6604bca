/**
 * `scheduler-state.json` in distribution's format (`registry/proxy/expiry/scheduler.go`): an
 * object keyed by `<repo>@<digest>` whose values are `{Key, ExpiryData (RFC 3339), EntryType (0 blob,
 * 1 manifest)}`. A damaged file is set aside, never fatal (the official registry panics, #2374).
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
import { scanStream, StateSyntaxError, type ScannedMember } from './state-scanner.js';
import type { EntryType } from './expiry-index.js';

/** One scheduled expiry. */
export interface Entry {
  readonly key: string;
  readonly expiry: Date;
  readonly type: EntryType;
}

/** An entry as stored and sent between threads: expiry in milliseconds since the epoch. */
export interface StoredEntry {
  readonly key: string;
  readonly expiry: number;
  readonly type: EntryType;
}

/**
 * Changes to apply to the stored schedule: a key's new entry, or null to remove it. In a journal,
 * `hit` marks a cache hit on an entry this process had not seen: it extends the entry where the
 * lease holder has it, and creates none.
 */
export type Changes = ReadonlyMap<string, { readonly expiry: number; readonly type: EntryType; readonly hit?: boolean } | null>;

/** Go's RFC3339Nano: UTC with `Z`, fraction trimmed of trailing zeros. */
export function formatGoTime(d: Date): string {
  return d.toISOString().replace(/\.(\d*?)0*Z$/, (_m, frac: string) => (frac ? `.${frac}Z` : 'Z'));
}

const GO_TIME = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$/;

/** Parses RFC 3339 with up to nine fractional digits and any offset; undefined if invalid. */
export function parseGoTime(s: unknown): Date | undefined {
  const ms = parseGoTimeMs(s);
  return ms === undefined ? undefined : new Date(ms);
}

function parseGoTimeMs(s: unknown): number | undefined {
  if (typeof s !== 'string') return undefined;
  const m = GO_TIME.exec(s);
  if (!m) return undefined;
  const frac = m[2] ? `.${m[2].padEnd(3, '0').slice(0, 3)}` : '';
  const t = Date.parse(`${m[1]}${frac}${m[3]}`);
  return Number.isNaN(t) ? undefined : t;
}

const KEY_OPEN = Buffer.from('{"Key":"');
const EXPIRY_OPEN = Buffer.from('","ExpiryData":"');
const TYPE_OPEN = Buffer.from('","EntryType":');

/** The decimal number of `buf[i, i + n)`, or NaN when not all digits. */
function digits(buf: Buffer, i: number, n: number): number {
  let v = 0;
  for (let k = i; k < i + n; k++) {
    const c = buf[k]! - 0x30;
    if (c < 0 || c > 9) return NaN;
    v = v * 10 + c;
  }
  return v;
}

/** RFC 3339 in `buf[i, end)`, parsed in place (no string is made); undefined if invalid. */
function timeAt(buf: Buffer, i: number, end: number): number | undefined {
  if (end - i < 20 || buf[i + 4] !== 0x2d || buf[i + 7] !== 0x2d || buf[i + 10] !== 0x54 || buf[i + 13] !== 0x3a || buf[i + 16] !== 0x3a) return undefined;
  const [y, mo, d, h, mi, se] = [
    digits(buf, i, 4),
    digits(buf, i + 5, 2),
    digits(buf, i + 8, 2),
    digits(buf, i + 11, 2),
    digits(buf, i + 14, 2),
    digits(buf, i + 17, 2),
  ];
  if (!(mo >= 1 && mo <= 12 && d >= 1 && d <= 31 && h <= 23 && mi <= 59 && se <= 60)) return undefined;
  let j = i + 19;
  let ms = 0;
  if (buf[j] === 0x2e) {
    const start = ++j;
    while (j < end && buf[j]! >= 0x30 && buf[j]! <= 0x39) j++;
    const n = j - start;
    if (n < 1 || n > 9) return undefined;
    ms = digits(buf, start, Math.min(n, 3)) * 10 ** (3 - Math.min(n, 3));
  }
  let offset = 0;
  if (buf[j] === 0x5a && j + 1 === end) offset = 0;
  else if ((buf[j] === 0x2b || buf[j] === 0x2d) && j + 6 === end && buf[j + 3] === 0x3a) {
    const oh = digits(buf, j + 1, 2);
    const om = digits(buf, j + 4, 2);
    if (Number.isNaN(oh) || Number.isNaN(om)) return undefined;
    offset = (buf[j] === 0x2b ? 1 : -1) * (oh * 60 + om) * 60_000;
  } else return undefined;
  const t = Date.UTC(y, mo - 1, d, h, mi, se, ms) - offset;
  // Date.UTC rolls 31 February over into March: refuse what does not round-trip.
  return new Date(Date.UTC(y, mo - 1, d)).getUTCDate() === d ? t : undefined;
}

/** The value in the shape distribution and we write (`{"Key":"...","ExpiryData":"...","EntryType":N}`), read in place; undefined when it has another shape. */
function fastEntry(m: ScannedMember): StoredEntry | undefined {
  const { buf, valueStart: v, end } = m;
  if (buf.compare(KEY_OPEN, 0, KEY_OPEN.length, v, v + KEY_OPEN.length) !== 0 || buf[end - 1] !== 0x7d) return undefined;
  const e = buf.indexOf(EXPIRY_OPEN, v + KEY_OPEN.length);
  if (e < 0 || e >= end) return undefined;
  const ts = e + EXPIRY_OPEN.length;
  const te = buf.indexOf(0x22, ts);
  if (te < 0 || te >= end || buf.compare(TYPE_OPEN, 0, TYPE_OPEN.length, te, te + TYPE_OPEN.length) !== 0) return undefined;
  const t = te + TYPE_OPEN.length;
  if (t + 2 !== end || (buf[t] !== 0x30 && buf[t] !== 0x31)) return undefined;
  const expiry = timeAt(buf, ts, te);
  return expiry === undefined ? undefined : { key: m.key, expiry, type: buf[t] === 0x30 ? 'blob' : 'manifest' };
}

/** A member's entry, or undefined when it is malformed. */
function entryOf(m: ScannedMember): StoredEntry | undefined {
  if (!m.key.includes('@')) return undefined;
  const fast = fastEntry(m);
  if (fast) return fast;
  let v: { ExpiryData?: unknown; EntryType?: unknown } | null;
  try {
    v = JSON.parse(m.buf.toString('utf8', m.valueStart, m.end)) as typeof v;
  } catch {
    return undefined;
  }
  if (v === null || typeof v !== 'object') return undefined;
  const expiry = parseGoTimeMs(v.ExpiryData);
  if (expiry === undefined || (v.EntryType !== 0 && v.EntryType !== 1)) return undefined;
  return { key: m.key, expiry, type: v.EntryType === 0 ? 'blob' : 'manifest' };
}

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

/** One member in distribution's format. */
function member(key: string, expiry: number, type: EntryType): string {
  const k = JSON.stringify(key);
  return `${k}:{"Key":${k},"ExpiryData":"${formatGoTime(new Date(expiry))}","EntryType":${type === 'blob' ? 0 : 1}}`;
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
