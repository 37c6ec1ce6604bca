/**
 * Locks that several registry processes sharing one storage root (replicas on NFS, EFS, CephFS, a
 * ReadWriteMany volume) take through the filesystem itself, with proper-lockfile: a lock is a
 * directory made with `mkdir` (atomic on network filesystems too) whose mtime its holder refreshes;
 * a lock not refreshed for `staleMs` belongs to a dead process and is taken over. This needs the
 * hosts' clocks in step (NTP).
 */
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import lockfile from 'proper-lockfile';
import { lockPath } from './paths.js';

/** Releases a held lock. */
export type Release = () => Promise<void>;

/** Named locks under `<root>/.locks/`. */
export class SharedLocks {
  constructor(
    private readonly root: string,
    /** A lock not refreshed for this long is stale (proper-lockfile's minimum is 2 s). */
    readonly staleMs: number,
    /** A held lock was lost (refreshing failed past the stale time, or another process took it). */
    private readonly onCompromised: (key: string, err: Error) => void = () => undefined,
  ) {}

  private path(key: string): string {
    return this.root + lockPath(key);
  }

  /**
   * Takes the lock `key` (a relative path) if nobody alive holds it; undefined otherwise.
   * `compromised` is told when the lock is lost later (default: the constructor's handler).
   */
  async tryAcquire(key: string, compromised?: (err: Error) => void): Promise<Release | undefined> {
    const file = this.path(key);
    await mkdir(dirname(file), { recursive: true });
    try {
      const release = await lockfile.lock(file, {
        realpath: false,
        stale: this.staleMs,
        retries: 0,
        // The default throws from a timer, ending the process: losing a lock only risks one more
        // upstream fetch, so it is reported and the work goes on.
        onCompromised: (err) => (compromised ? compromised(err) : this.onCompromised(key, err)),
      });
      return async () => {
        await release().catch(() => undefined);
      };
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      // ENOENT, EEXIST, ENOTEMPTY: another process removed or made the lock at the same moment
      // (taking over a stale one); it holds the lock, or the next try will tell.
      if (code === 'ELOCKED' || code === 'ENOENT' || code === 'EEXIST' || code === 'ENOTEMPTY') return undefined;
      throw err;
    }
  }

  /**
   * Waits while another process holds `key`, checking every `intervalMs` whether its work has
   * landed: resolves with what `landed` found, or undefined once the lock is free (the holder
   * finished without result, or died and its lock went stale).
   */
  async waitWhileHeld<T>(key: string, landed: () => Promise<T | undefined>, intervalMs: number): Promise<T | undefined> {
    for (;;) {
      await new Promise((r) => setTimeout(r, intervalMs));
      const result = await landed();
      if (result !== undefined) return result;
      if (!(await this.isHeld(key))) return undefined;
    }
  }

  /** True while a live process holds `key`. */
  async isHeld(key: string): Promise<boolean> {
    return lockfile.check(this.path(key), { realpath: false, stale: this.staleMs }).catch(() => false);
  }
}
