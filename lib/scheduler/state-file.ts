/**
 * `scheduler-state.json` in distribution's format (`registry/proxy/scheduler/scheduler.go`): an
 * object keyed by `<repo>@<digest>` whose values are `{Key, ExpiryData (RFC 3339), EntryType (0 blob,
 * 1 manifest)}`. A damaged file is set aside, never fatal (the official registry panics, #2374).
 */
import { open, readFile, rename, mkdir, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import { randomUUID } from 'node:crypto';
import lockfile from 'proper-lockfile';
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
  const entries = new Map<string, Entry>();
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { entries };
    return { entries, problem: `${path} could not be read (${(err as Error).message}); starting with an empty schedule` };
  }
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

/** Renames a damaged state file to `<path>.corrupt-<timestamp>`; says what happened. */
async function setAside(path: string): Promise<string> {
  const aside = `${path}.corrupt-${new Date().toISOString().replace(/[:.]/g, '-')}-${randomUUID().slice(0, 8)}`;
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

async function writeUnlocked(path: string, entries: Iterable<Entry>): Promise<void> {
  const doc: Record<string, { Key: string; ExpiryData: string; EntryType: number }> = {};
  for (const e of entries) doc[e.key] = { Key: e.key, ExpiryData: formatGoTime(e.expiry), EntryType: e.type === 'blob' ? 0 : 1 };
  const temp = `${path}.${randomUUID()}.tmp`;
  try {
    const handle = await open(temp, 'w');
    try {
      await handle.writeFile(JSON.stringify(doc));
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
