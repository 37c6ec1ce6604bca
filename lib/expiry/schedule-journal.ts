/**
 * The schedule's journals: what a replica that does not hold the expiry lease records of its
 * changes, for the lease holder to merge into the state and delete. The files are written and read
 * here; their text (`journalText`, `parseJournal`) is also what the store through the storage
 * driver keeps as objects.
 */
import { mkdir, readFile, readdir, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { randomUUID } from 'node:crypto';
import type { Changes } from './state-file.js';
import type { EntryType } from './expiry-index.js';

/**
 * Journals: the changes of a replica that does not hold the expiry lease, one small file per flush
 * in `<dir>/<time>-<instance>-<seq>.journal`, one JSON line per change (`{"k","e","t"}`, `e` null
 * for a removal), written to a temporary name and renamed; the lease holder applies and deletes them.
 */
export async function writeJournal(dir: string, name: string, changes: Changes): Promise<void> {
  await mkdir(dir, { recursive: true });
  const temp = `${dir}/.${name}.${randomUUID().slice(0, 8)}.tmp`;
  try {
    await writeFile(temp, journalText(changes));
    await rename(temp, `${dir}/${name}.journal`);
  } catch (err) {
    await unlink(temp).catch(() => undefined);
    throw err;
  }
}

/** The journals waiting in `dir`, oldest first (by name). Temporary files older than an hour are removed. */
export async function listJournals(dir: string): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  for (const n of names) {
    if (!n.endsWith('.tmp')) continue;
    // A writer killed between write and rename.
    const info = await stat(`${dir}/${n}`).catch(() => undefined);
    if (info && Date.now() - info.mtimeMs > 3600_000) await unlink(`${dir}/${n}`).catch(() => undefined);
  }
  return names.filter((n) => n.endsWith('.journal')).sort();
}

/** The changes in one journal; lines that do not parse are skipped (a journal is only ever renamed into place whole). */
export async function readJournal(dir: string, name: string): Promise<Changes> {
  let text: string;
  try {
    text = await readFile(`${dir}/${name}`, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return new Map();
    throw err;
  }
  return parseJournal(text);
}

/** A journal's text: one JSON line per change. */
export function journalText(changes: Changes): string {
  const lines: string[] = [];
  for (const [k, e] of changes) lines.push(JSON.stringify({ k, e: e ? e.expiry : null, t: e?.type === 'manifest' ? 1 : 0, ...(e?.hit ? { h: 1 } : {}) }));
  return `${lines.join('\n')}\n`;
}

/** The changes of a journal's text. */
export function parseJournal(text: string): Changes {
  const changes = new Map<string, { expiry: number; type: EntryType; hit?: boolean } | null>();
  for (const line of text.split('\n')) {
    if (!line) continue;
    try {
      const j = JSON.parse(line) as { k?: unknown; e?: unknown; t?: unknown; h?: unknown };
      if (typeof j.k !== 'string' || !j.k.includes('@')) continue;
      if (j.e === null) changes.set(j.k, null);
      else if (typeof j.e === 'number' && Number.isFinite(j.e))
        changes.set(j.k, { expiry: j.e, type: j.t === 1 ? 'manifest' : 'blob', ...(j.h === 1 ? { hit: true } : {}) });
    } catch {
      // Skipped.
    }
  }
  return changes;
}

/** Deletes applied journals. */
export async function deleteJournals(dir: string, names: readonly string[]): Promise<void> {
  for (const n of names) await unlink(`${dir}/${n}`).catch(() => undefined);
}
