/**
 * The load of `scheduler-state.json` (state-file.ts): the state is read as a stream in bounded
 * chunks and handed over in batches, the event loop given back between them. A damaged file is set
 * aside, never fatal (the official registry panics, #2374): what could be read of it is kept.
 */
import { open, rename, type FileHandle } from 'node:fs/promises';
import { randomUUID } from 'node:crypto';
import { scanStream, StateSyntaxError } from './state-scanner.js';
import { entryOf, type StoredEntry } from './state-entry.js';
import type { Entry, ReadInto } from './state-file.js';

/** Bytes read per slice: about 250 entries, a few milliseconds of the event loop. */
const CHUNK = 64 * 1024;

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
