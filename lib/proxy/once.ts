/**
 * The two ways a pull-through fetch is done once: once in this process (`Inflight`: concurrent
 * requests share one promise, as distribution's `inflight` map and zot's on-demand sync), and once
 * across the processes sharing the storage (`onceAcrossProcesses`: whoever takes the content's
 * lock, a lock directory or a Redis lease, does the work; the others wait until it has landed).
 */
import type { SharedLocks } from '../storage/shared-lock.js';
import { StoppingError } from '../errors.js';
import { inSpan } from '../tracing/tracing.js';

/** How often a process waiting for another's work looks whether it has landed (Redis also wakes it at the release). */
const LANDED_POLL_MS = 50;

/** Concurrent requests for one key share one promise: the first caller starts the work, later callers join it until it settles. */
export class Inflight<T> {
  private readonly running = new Map<string, Promise<T>>();

  /** Runs `work` for `key` unless a run for `key` is already under way, whose promise is returned. */
  run(key: string, work: () => Promise<T>): Promise<T> {
    const existing = this.running.get(key);
    if (existing) return existing;
    const promise = (async () => {
      try {
        return await work();
      } finally {
        this.running.delete(key);
      }
    })();
    this.running.set(key, promise);
    return promise;
  }

  /** True while a run for `key` is under way. */
  has(key: string): boolean {
    return this.running.has(key);
  }
}

/**
 * This process's work under way, and its stop. A stop waits for what is held (a download, however
 * started and whether or not its clients are still there, until it is committed or cleaned up and
 * its lock released): each promise is held until it settles, its failure being its owner's to
 * handle. Once closed, `onceAcrossProcesses` takes no lock and a wait for another process's work
 * ends at its next look, with `StoppingError` (what a stopped process starts after its last write
 * is lost).
 */
export class Underway {
  private readonly work = new Set<Promise<unknown>>();
  private readonly stop = new AbortController();

  /** Fired by `close`. */
  get signal(): AbortSignal {
    return this.stop.signal;
  }

  /** Holds `promise` until it settles; returns it. */
  hold<T>(promise: Promise<T>): Promise<T> {
    const held = promise.then(
      () => undefined,
      () => undefined,
    );
    this.work.add(held);
    void held.then(() => this.work.delete(held));
    return promise;
  }

  /** Resolves once everything held, and anything held meanwhile, has settled. */
  async settled(): Promise<void> {
    while (this.work.size > 0) await Promise.all(this.work);
  }

  /** Stops (the signal fires), and resolves once everything held has settled. */
  close(): Promise<void> {
    this.stop.abort();
    return this.settled();
  }
}

/** The work done once across processes, and how to see that another process did it. */
export interface OnceAcrossProcesses<T> {
  /** What another process's work left in the storage, once it has landed; undefined before. */
  landed(): Promise<T | undefined>;
  /** The work, run holding the lock after `landed` found nothing. */
  work(): Promise<T>;
  /** How long the lock stays held after `work` returned (a blob's download): by default, not at all. */
  holdUntil?(result: T): Promise<unknown> | undefined;
  /**
   * This process's work under way: the work, until `holdUntil`'s end and the lock's release, is
   * held in it; once it is closed no lock is taken and a wait for another process's work ends.
   */
  readonly underway?: Underway;
}

/**
 * `once.work()` done by one of the processes sharing `locks` (all of them by this one without
 * `locks`): the process that takes `key` looks whether the work has landed meanwhile, else does
 * it; the others wait until it lands (its result) or the lock is free again (the holder failed, or
 * died and its lock went stale or was taken over at once), then try again.
 */
export async function onceAcrossProcesses<T>(locks: SharedLocks | undefined, key: string, once: OnceAcrossProcesses<T>): Promise<T> {
  if (!locks) {
    const result = once.work();
    void once.underway?.hold(result.then((r) => once.holdUntil?.(r)));
    return result;
  }
  const stopped = (): void => {
    if (once.underway?.signal.aborted) throw new StoppingError(`the work on ${key}`);
  };
  for (;;) {
    stopped();
    const release = await inSpan('lock acquire', { 'registry.lock': key }, () => locks.tryAcquire(key));
    if (release) {
      let releasing: Promise<void> | undefined;
      const owned = (async () => {
        let held: Promise<unknown> | undefined;
        try {
          const result = (await once.landed()) ?? (await once.work());
          held = once.holdUntil?.(result);
          return result;
        } finally {
          if (held) releasing = releaseAfter(held, release);
          else await release();
        }
      })();
      // From the lock's taking to its release the work is this process's own: a stop waits for
      // it. Waiting for another process's work (below) is not: a stop does not wait for that.
      void once.underway?.hold(
        owned.then(
          () => releasing,
          () => releasing,
        ),
      );
      return owned;
    }
    // Another process is doing it: wait until it lands, or its lock is free again.
    const landed = await inSpan('lock wait', { 'registry.lock': key }, () =>
      locks.waitWhileHeld(
        key,
        () => {
          stopped();
          return once.landed();
        },
        LANDED_POLL_MS,
      ),
    );
    if (landed !== undefined) return landed;
  }
}

/** Releases a lock once `held` settles, however it settles. */
async function releaseAfter(held: Promise<unknown>, release: () => Promise<void>): Promise<void> {
  await held.catch(() => undefined);
  await release();
}
