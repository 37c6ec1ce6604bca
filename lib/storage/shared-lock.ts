/**
 * Locks shared by the processes of one cache (replicas): the contract the proxy stores and the
 * scheduler use, and its default implementation, lock directories on a shared filesystem
 * (`storage.filesystem`: NFS, EFS, CephFS, a ReadWriteMany volume). With `redis:` configured the
 * locks are leases in Redis instead (lib/coordination/redis-locks.ts), on any storage.
 *
 * A directory lock is `<root>/.locks/<key>.lock/`, made with `mkdir` (atomic on network
 * filesystems too), holding `owner.json`: who holds it (host, pid, process start time, scope: see
 * owner.ts) and a token. Its holder refreshes the directory's mtime every `staleMs / 2`. Another
 * process takes it over
 * - at once when the holder is provably dead on this host (its pid gone, reused by a later process,
 *   or a zombie), so a `kill -9` costs no waiting;
 * - after `staleMs` without a refresh otherwise (a holder on another host, or one that hangs); this
 *   needs the hosts' clocks in step (NTP).
 * Taking over, and releasing, go through `<lock>/reaping/`, made with `mkdir` too: of two processes
 * that judged the same holder dead, one removes the lock and the other backs off, and a lock taken
 * anew meanwhile (another token) is never removed.
 */
import { randomUUID } from 'node:crypto';
import { mkdir, readFile, rm, rmdir, stat, utimes, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { lockPath } from './paths.js';
import { isProvablyDead, parseOwner, thisProcess, type ProcessOwner } from './owner.js';

/** Releases a held lock. */
export type Release = () => Promise<void>;

/**
 * Named locks shared by the processes of one cache: the contract `DirectoryLocks` (here) and
 * `RedisLocks` (lib/coordination/redis-locks.ts) honour, and `onceAcrossProcesses` (lib/proxy/once.ts) uses.
 */
export interface SharedLocks {
  /** A lock whose holder has not shown life for this long is taken over. */
  readonly staleMs: number;
  /**
   * Takes the lock `key` (a relative path) if nobody alive holds it; undefined otherwise.
   * `compromised` is told when the lock is lost later (default: the implementation's handler).
   */
  tryAcquire(key: string, compromised?: (err: Error) => void): Promise<Release | undefined>;
  /**
   * Waits while another process holds `key`, checking every `intervalMs` (or when told the lock
   * was released) whether its work has landed: resolves with what `landed` found, or undefined once
   * the lock is free (the holder finished without result, or died).
   */
  waitWhileHeld<T>(key: string, landed: () => Promise<T | undefined>, intervalMs: number): Promise<T | undefined>;
  /** True while a live process holds `key`. */
  isHeld(key: string): Promise<boolean>;
}

/** A volume out of space or quota. */
const NO_SPACE = new Set(['ENOSPC', 'EDQUOT']);

/** What `owner.json` of a lock directory holds. */
interface OwnerRecord extends ProcessOwner {
  readonly token: string;
}

/** The state of a lock directory. */
type Inspection =
  | { readonly kind: 'free' }
  | { readonly kind: 'held'; readonly owner?: OwnerRecord }
  /** Taken over at once (dead holder) or by the stale-time rule; `token` undefined: no owner file (yet). */
  | { readonly kind: 'takeable'; readonly token: string | undefined; readonly why: 'dead' | 'stale' };

/** How often, and how far apart (growing linearly), a lock's removal is tried again when its directory was not empty. */
const RM_RETRIES = 10;
const RM_RETRY_DELAY_MS = 5;

/** Lock directories under `<root>/.locks/`. */
export class DirectoryLocks implements SharedLocks {
  /** Who holds the locks this process takes: known once, written into each lock's owner file. */
  private readonly owner: ProcessOwner = thisProcess();

  constructor(
    private readonly root: string,
    readonly staleMs: number,
    /** A held lock was lost (refreshing failed past the stale time, or another process took it). */
    private readonly onCompromised: (key: string, err: Error) => void = () => undefined,
  ) {}

  private dir(key: string): string {
    return `${this.root}${lockPath(key)}.lock`;
  }

  async tryAcquire(key: string, compromised?: (err: Error) => void): Promise<Release | undefined> {
    const dir = this.dir(key);
    await mkdir(dirname(dir), { recursive: true });
    // Twice at most: once more after taking a dead or stale holder's lock away.
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        await mkdir(dir);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        // ENOENT: the parent was removed meanwhile (a cleanup).
        if (code === 'ENOENT') {
          await mkdir(dirname(dir), { recursive: true });
          continue;
        }
        if (code !== 'EEXIST') throw err;
        const found = await this.inspect(dir);
        if (found.kind === 'held') return undefined;
        if (found.kind === 'takeable' && !(await removeLock(dir, found.token, this.staleMs))) return undefined;
        continue;
      }
      let token: string | undefined = randomUUID();
      const record: OwnerRecord = { ...this.owner, token };
      try {
        await writeFile(`${dir}/owner.json`, JSON.stringify(record));
      } catch (err) {
        await rm(`${dir}/owner.json`, { force: true }).catch(() => undefined);
        // A full volume takes the directory but not the file: the lock is then judged by its mtime
        // alone, as an older version's.
        if (!NO_SPACE.has((err as NodeJS.ErrnoException).code ?? '')) {
          await rm(dir, { recursive: true, force: true }).catch(() => undefined);
          throw err;
        }
        token = undefined;
      }
      return this.hold(key, dir, token, compromised ?? ((e) => this.onCompromised(key, e)));
    }
    return undefined;
  }

  /** Keeps the lock fresh until released; reports its loss. `token` undefined: no owner file could be written. */
  private hold(key: string, dir: string, token: string | undefined, compromised: (err: Error) => void): Release {
    let released = false;
    let lastRefresh = Date.now();
    let timer: NodeJS.Timeout | undefined;
    const lost = (why: string): void => {
      if (released) return;
      released = true;
      compromised(Object.assign(new Error(`lock ${key} lost: ${why}`), { code: 'ECOMPROMISED' }));
    };
    const refresh = async (): Promise<void> => {
      timer = undefined;
      if (released) return;
      const owner = await readOwner(dir);
      if (released) return;
      const ours = token === undefined ? owner === 'missing' : typeof owner === 'object' && owner.token === token;
      if (owner === 'missing-dir' || (owner !== 'unreadable' && !ours)) return lost('another process took it over');
      try {
        const now = new Date();
        await utimes(dir, now, now);
        lastRefresh = Date.now();
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return lost('its directory was removed');
        // A transient failure (a network filesystem's hiccup) is retried until the stale time.
        if (Date.now() - lastRefresh > this.staleMs) return lost(`could not refresh it for ${this.staleMs} ms: ${(err as Error).message}`);
      }
      schedule();
    };
    const schedule = (): void => {
      if (released) return;
      timer = setTimeout(() => void refresh(), Math.max(500, Math.floor(this.staleMs / 2)));
      timer.unref();
    };
    schedule();
    return async () => {
      if (released) return;
      released = true;
      clearTimeout(timer);
      await removeLock(dir, token, this.staleMs).catch(() => undefined);
    };
  }

  /** Who holds the lock at `dir`, and whether it may be taken. */
  private async inspect(dir: string): Promise<Inspection> {
    const [owner, info] = await Promise.all([readOwner(dir), stat(dir).catch(() => undefined)]);
    if (!info || owner === 'missing-dir') return { kind: 'free' };
    const known = typeof owner === 'object' ? owner : undefined;
    if (known && (await isProvablyDead(known))) return { kind: 'takeable', token: known.token, why: 'dead' };
    if (Date.now() - info.mtimeMs > this.staleMs) return { kind: 'takeable', token: known?.token, why: 'stale' };
    return { kind: 'held', owner: known };
  }

  async waitWhileHeld<T>(key: string, landed: () => Promise<T | undefined>, intervalMs: number): Promise<T | undefined> {
    for (;;) {
      await new Promise((r) => setTimeout(r, intervalMs));
      const result = await landed();
      if (result !== undefined) return result;
      if (!(await this.isHeld(key))) return undefined;
    }
  }

  async isHeld(key: string): Promise<boolean> {
    return (await this.inspect(this.dir(key)).catch(() => ({ kind: 'free' }) as const)).kind === 'held';
  }
}

/** The owner file of a lock directory: `missing` when the directory has none (yet), `missing-dir` when there is no lock. */
async function readOwner(dir: string): Promise<OwnerRecord | 'missing' | 'missing-dir' | 'unreadable'> {
  let text: string;
  try {
    text = await readFile(`${dir}/owner.json`, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') return 'unreadable';
    return (await stat(dir).then(
      () => true,
      () => false,
    ))
      ? 'missing'
      : 'missing-dir';
  }
  try {
    const parsed = JSON.parse(text) as { token?: unknown };
    const owner = parseOwner(parsed);
    // Half written (its holder is writing it now, or died doing so): no owner known yet.
    if (!owner || typeof parsed.token !== 'string') return 'missing';
    return { ...owner, token: parsed.token };
  } catch {
    return 'missing';
  }
}

/**
 * Removes the lock at `dir` if it is still the one judged (its token, or no owner file for
 * `undefined`), under `<dir>/reaping/`: true when removed (or already gone). A `reaping` directory
 * older than `staleMs` is what a process that died while removing left, and is cleared.
 */
async function removeLock(dir: string, token: string | undefined, staleMs: number): Promise<boolean> {
  const reaping = `${dir}/reaping`;
  try {
    await mkdir(reaping);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return true;
    if (code !== 'EEXIST') throw err;
    const info = await stat(reaping).catch(() => undefined);
    if (info && Date.now() - info.mtimeMs > staleMs) await rmdir(reaping).catch(() => undefined);
    return false;
  }
  const owner = await readOwner(dir);
  const same = token === undefined ? owner === 'missing' || owner === 'unreadable' : typeof owner === 'object' && owner.token === token;
  if (!same) {
    await rmdir(reaping).catch(() => undefined);
    return false;
  }
  try {
    // Another process judging this lock makes `<dir>/reaping` for a moment (finds ours, backs off):
    // made after ours was removed and before the directory is, it fails the removal with ENOTEMPTY
    // (Node reads a directory once), so the removal reads it again, a few times.
    await rm(dir, { recursive: true, force: true, maxRetries: RM_RETRIES, retryDelay: RM_RETRY_DELAY_MS });
  } catch (err) {
    // Never a failed request: the lock is judged again at the next attempt.
    if ((err as NodeJS.ErrnoException).code === 'ENOTEMPTY') return false;
    throw err;
  }
  return true;
}
