/**
 * `scheduler-state.json` in distribution's format (`registry/proxy/scheduler/scheduler.go`): an
 * object keyed by `<repo>@<digest>` whose values are `{Key, ExpiryData (RFC 3339), EntryType (0 blob,
 * 1 manifest)}`. A damaged file is set aside, never fatal (the official registry panics, #2374).
 */
import { open, readFile, rename, mkdir, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import { randomUUID } from 'node:crypto';
import lockfile from 'proper-lockfile';
import type { StorageDriver } from '../storage/driver.js';
import { PathNotFoundError } from '../storage/driver.js';
import type { ContentType } from '../stores.js';

/** One scheduled expiry. */
export interface Entry {
  readonly key: string;
  readonly expiry: Date;
  readonly type: ContentType;
}

/** Go's RFC3339Nano: UTC with `Z`, fraction trimmed of trailing zeros. */
export function formatGoTime(d: Date): string {
  return d.toISOString().replace(/\.(\d*?)0*Z$/, (_m, frac: string) => (frac ? `.${frac}Z` : 'Z'));
}

/** Parses RFC 3339 with up to nine fractional digits and any offset; undefined if invalid. */
export function parseGoTime(s: unknown): Date | undefined {
  if (typeof s !== 'string') return undefined;
  const m = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$/.exec(s);
  if (!m) return undefined;
  const ms = m[2] ? `.${m[2].padEnd(3, '0').slice(0, 3)}` : '';
  const d = new Date(`${m[1]}${ms}${m[3]}`);
  return Number.isNaN(d.getTime()) ? undefined : d;
}

/** Reads the state; a damaged file is moved aside and reported as `problem`. */
export async function readState(path: string): Promise<{ entries: Map<string, Entry>; problem?: string }> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { entries: new Map() };
    return { entries: new Map(), problem: `${path} could not be read (${(err as Error).message}); starting with an empty schedule` };
  }
  return parseState(text, path, setAside);
}

/** Parses the state file's text; `setAside` moves a damaged file away and says what happened. */
async function parseState(text: string, path: string, setAside: (path: string) => Promise<string>): Promise<{ entries: Map<string, Entry>; problem?: string }> {
  const entries = new Map<string, Entry>();
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    const what = text.trim().length === 0 ? 'empty' : parsed === undefined ? 'not valid JSON' : 'not a JSON object';
    return { entries, problem: `${path} was ${what}; ${await setAside(path)}` };
  }
  let skipped = 0;
  for (const [key, value] of Object.entries(parsed as Record<string, unknown>)) {
    const v = value as { Key?: unknown; ExpiryData?: unknown; EntryType?: unknown } | null;
    const expiry = parseGoTime(v?.ExpiryData);
    if (!v || !expiry || (v.EntryType !== 0 && v.EntryType !== 1) || !key.includes('@')) {
      skipped++;
      continue;
    }
    entries.set(key, { key, expiry, type: v.EntryType === 0 ? 'blob' : 'manifest' });
  }
  if (skipped === 0) return { entries };
  return { entries, problem: `${skipped} malformed entr${skipped === 1 ? 'y' : 'ies'} in ${path} skipped; ${await setAside(path)}` };
}

/** `<path>.corrupt-<timestamp>-<id>` */
function asideName(path: string): string {
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

/** Writes the state atomically (temp file, fsync, rename) under a lock shared by every process on the volume. */
export async function writeState(path: string, entries: Iterable<Entry>): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const release = await lockState(path);
  try {
    await writeUnlocked(path, entries);
  } finally {
    await release();
  }
}

/**
 * Read-merge-write under the state file's lock, for processes sharing the file (replicas): `merge`
 * gets what the file holds now and returns what to write. Resolves with what was written.
 */
export async function updateState(
  path: string,
  merge: (current: Map<string, Entry>) => Map<string, Entry> | Promise<Map<string, Entry>>,
): Promise<Map<string, Entry>> {
  await mkdir(dirname(path), { recursive: true });
  const release = await lockState(path);
  try {
    const { entries } = await readState(path);
    const next = await merge(entries);
    await writeUnlocked(path, next.values());
    return next;
  } finally {
    await release();
  }
}

function lockState(path: string): Promise<() => Promise<void>> {
  return lockfile.lock(path, { realpath: false, stale: 10_000, retries: { retries: 50, minTimeout: 20, maxTimeout: 200 } });
}

/** distribution's JSON of the entries. */
function serialise(entries: Iterable<Entry>): string {
  const doc: Record<string, { Key: string; ExpiryData: string; EntryType: number }> = {};
  for (const e of entries) doc[e.key] = { Key: e.key, ExpiryData: formatGoTime(e.expiry), EntryType: e.type === 'blob' ? 0 : 1 };
  return JSON.stringify(doc);
}

async function writeUnlocked(path: string, entries: Iterable<Entry>): Promise<void> {
  const temp = `${path}.${randomUUID()}.tmp`;
  try {
    const handle = await open(temp, 'w');
    try {
      await handle.writeFile(serialise(entries));
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, path);
  } catch (err) {
    await unlink(temp).catch(() => undefined);
    throw err;
  }
}

/** Where the schedule is kept: read, written, and updated under a lock by every process sharing it. */
export interface StateStore {
  read(): Promise<{ entries: Map<string, Entry>; problem?: string }>;
  write(entries: Iterable<Entry>): Promise<void>;
  update(merge: (current: Map<string, Entry>) => Map<string, Entry> | Promise<Map<string, Entry>>): Promise<Map<string, Entry>>;
}

/** The state file at a local path, locked across processes sharing the volume. */
export function fileStateStore(path: string): StateStore {
  return { read: () => readState(path), write: (entries) => writeState(path, entries), update: (merge) => updateState(path, merge) };
}

/**
 * The state as an object of a storage driver (on S3 `<rootdirectory>/scheduler-state.json`, where
 * distribution writes it through its driver). An object store has no lock: updates are serialised
 * within this process only (replicas on S3 coordinate through Redis).
 */
export function driverStateStore(driver: StorageDriver, path: string): StateStore {
  let queue: Promise<unknown> = Promise.resolve();
  const serial = <T>(fn: () => Promise<T>): Promise<T> => {
    const run = queue.then(fn, fn);
    queue = run.catch(() => undefined);
    return run;
  };
  const read = async (): Promise<{ entries: Map<string, Entry>; problem?: string }> => {
    let text: string;
    try {
      text = (await driver.getContent(path)).toString('utf8');
    } catch (err) {
      if (err instanceof PathNotFoundError) return { entries: new Map() };
      return { entries: new Map(), problem: `${path} could not be read (${(err as Error).message}); starting with an empty schedule` };
    }
    return parseState(text, path, async (p) => {
      const aside = asideName(p);
      try {
        await driver.move(p, aside);
        return `moved to ${aside}`;
      } catch (err) {
        return `could not be moved aside (${(err as Error).message})`;
      }
    });
  };
  const write = (entries: Iterable<Entry>): Promise<void> => driver.putContent(path, serialise(entries));
  return {
    read,
    write: (entries) => serial(() => write(entries)),
    update: (merge) =>
      serial(async () => {
        const next = await merge((await read()).entries);
        await write(next.values());
        return next;
      }),
  };
}
