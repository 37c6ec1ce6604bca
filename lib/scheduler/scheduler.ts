/**
 * The TTL scheduler: one timer for the whole schedule (the earliest expiry), persisted to
 * `scheduler-state.json` at most every few seconds when changed and on stop. A failed expiry is
 * kept and retried (the official scheduler drops it and leaks the content, #1994).
 *
 * Shared mode, for processes on one storage root (replicas): every write is a read-merge-write of
 * the file under its lock (this process's additions and removals applied to what the file holds, so
 * no replica's entry is lost), and only the holder of the `scheduler-lease` lock runs expiries; the
 * others take the lease over when its holder dies.
 */
import { fileStateStore, type Entry, type StateStore } from './state-file.js';
import type { Release, SharedLocks } from '../storage/shared-lock.js';
import { SCHEDULER_LEASE_KEY } from '../storage/paths.js';

export type { Entry } from './state-file.js';

/** The logging the scheduler needs (a winston logger fits). */
export interface SchedulerLogger {
  info(msg: string, ...meta: unknown[]): unknown;
  warn(msg: string, ...meta: unknown[]): unknown;
  error(msg: string, ...meta: unknown[]): unknown;
  debug(msg: string, ...meta: unknown[]): unknown;
}

/** Options of `TtlScheduler`. */
export interface SchedulerOptions {
  /** The `scheduler-state.json` path (in messages; the file itself unless `store` is given). */
  readonly statePath: string;
  /** Where the state is kept; the local file at `statePath` by default. */
  readonly store?: StateStore;
  /** Purges an expired entry; a rejection keeps the entry and retries it later. */
  readonly onExpire: (entry: Entry) => Promise<void>;
  /** The clock (milliseconds since the epoch); `Date.now` by default. */
  readonly now?: () => number;
  /** Least time between two writes of the state file; 5 s by default. */
  readonly flushIntervalMs?: number;
  /** First retry delay after a failed expiry, doubled on each further failure; 1 min by default. */
  readonly retryMs?: number;
  /** Longest retry delay; 1 h by default. */
  readonly maxRetryMs?: number;
  /** Writes the state (tests count writes with it); `writeState` by default. */
  readonly writer?: (path: string, entries: Iterable<Entry>) => Promise<void>;
  readonly logger?: SchedulerLogger;
  /**
   * Shared mode: the locks of the storage the state file is on, and whether an entry's content is
   * still cached: an entry of this process that the file does not hold is written only if its
   * content is there (another replica may have expired it meanwhile).
   */
  readonly shared?: { readonly locks: SharedLocks; readonly stillCached?: (entry: Entry) => Promise<boolean> };
}

/** Splits `<repo>@<digest>` at the last `@`. */
export function parseKey(key: string): { repo: string; digest: string } {
  const i = key.lastIndexOf('@');
  return { repo: key.slice(0, i), digest: key.slice(i + 1) };
}

const MAX_TIMEOUT = 2 ** 31 - 1;
const CONCURRENCY = 4;

/** Expires cache entries at their time. */
export class TtlScheduler {
  private readonly entries = new Map<string, Entry>();
  private readonly running = new Set<string>();
  private readonly failures = new Map<string, number>();
  private readonly runs = new Set<Promise<void>>();
  private timer?: NodeJS.Timeout;
  private flushTimer?: NodeJS.Timeout;
  private dirty = false;
  private flushing: Promise<void> = Promise.resolve();
  private stopped = false;
  private readonly now: () => number;
  /** Shared mode: changes not yet merged into the file. */
  private readonly pendingAdds = new Map<string, Entry>();
  private readonly pendingRemovals = new Set<string>();
  /** Shared mode: hits on entries this process has not seen (another replica scheduled them), applied only where the file has them. */
  private readonly pendingTouches = new Map<string, Entry>();
  private lease?: Release;
  private leaseTimer?: NodeJS.Timeout;
  private syncTimer?: NodeJS.Timeout;
  private lastSync = 0;

  private readonly store: StateStore;

  constructor(private readonly o: SchedulerOptions) {
    this.now = o.now ?? Date.now;
    this.store = o.store ?? fileStateStore(o.statePath);
  }

  /** Loads the state file and arms every entry; past entries fire at once. */
  async start(): Promise<{ problem?: string; loaded: number }> {
    const { entries, problem } = await this.store.read();
    for (const [k, e] of entries) this.entries.set(k, e);
    // The file was set aside: write back what was readable.
    if (problem && entries.size > 0) {
      if (this.o.shared) for (const e of entries.values()) this.pendingAdds.set(e.key, e);
      this.changed();
    }
    if (this.o.shared) {
      await this.tryLease();
      if (!this.lease) {
        this.leaseTimer = setInterval(() => void this.tryLease(), this.o.shared.locks.staleMs / 2);
        this.leaseTimer.unref();
      }
      // The lease holder learns of the other replicas' entries.
      this.syncTimer = setInterval(() => {
        if (this.lease) this.flush().catch((err: Error) => this.o.logger?.error(`syncing ${this.o.statePath} failed: ${err.message}`));
      }, this.o.flushIntervalMs ?? 5000);
      this.syncTimer.unref();
    }
    setImmediate(() => this.arm());
    return { problem, loaded: entries.size };
  }

  /** True when this process runs the expiries (always, unless in shared mode without the lease). */
  get expiring(): boolean {
    return !this.o.shared || this.lease !== undefined;
  }

  private async tryLease(): Promise<void> {
    if (this.lease || this.stopped) return;
    const release = await this.o.shared!.locks.tryAcquire(SCHEDULER_LEASE_KEY, () => {
      // Lost (this process stalled past the stale time, and another replica took over).
      this.o.logger?.warn('scheduler lease lost: another replica runs the expiries now');
      this.lease = undefined;
      clearTimeout(this.timer);
      this.leaseTimer ??= setInterval(() => void this.tryLease(), this.o.shared!.locks.staleMs / 2);
    }).catch(() => undefined);
    if (!release) return;
    if (this.stopped) return void (await release());
    this.lease = release;
    clearInterval(this.leaseTimer);
    this.leaseTimer = undefined;
    this.o.logger?.info('scheduler lease taken: this process runs the expiries for every replica on this storage');
    await this.flush().catch(() => undefined);
    this.arm();
  }

  /** Schedules `repo@digest` to expire `ttlMs` from now, or later if it already expires later. */
  add(repo: string, digest: string, type: Entry['type'], ttlMs: number): void {
    const key = `${repo}@${digest}`;
    const expiry = new Date(this.now() + ttlMs);
    const existing = this.entries.get(key);
    if (existing && existing.expiry >= expiry) return;
    this.put({ key, expiry, type });
  }

  private put(entry: Entry): void {
    this.entries.set(entry.key, entry);
    if (this.o.shared) {
      this.pendingAdds.set(entry.key, entry);
      this.pendingRemovals.delete(entry.key);
    }
    this.changed();
  }

  /**
   * A cache hit: extends a scheduled entry as `add` would. Content that is not scheduled stays so (a
   * hit never creates an entry); in shared mode an entry another replica scheduled since the last
   * merge is extended in the file at the next one.
   */
  touch(repo: string, digest: string, type: Entry['type'], ttlMs: number): void {
    const key = `${repo}@${digest}`;
    if (this.entries.has(key)) {
      this.add(repo, digest, type, ttlMs);
      return;
    }
    if (!this.o.shared) return;
    this.pendingTouches.set(key, { key, expiry: new Date(this.now() + ttlMs), type });
    this.dirty = true;
    this.scheduleFlush();
  }

  /** Adds entries for content found on disk that the schedule lacks (after a lost state file). */
  rebuild(found: Iterable<{ repo: string; digest: string; type: Entry['type'] }>, ttlMs: number): void {
    for (const f of found) if (!this.entries.has(`${f.repo}@${f.digest}`)) this.add(f.repo, f.digest, f.type, ttlMs);
  }

  /** Drops an entry without expiring it. */
  remove(key: string): void {
    this.failures.delete(key);
    if (!this.entries.delete(key)) return;
    if (this.o.shared) {
      this.pendingRemovals.add(key);
      this.pendingAdds.delete(key);
    }
    this.changed();
  }
  /** Whether `key` (`<repo>@<digest>`) is scheduled. */
  has(key: string): boolean {
    return this.entries.has(key);
  }
  /** The scheduled entry for `key`. */
  get(key: string): Entry | undefined {
    return this.entries.get(key);
  }
  /** The number of scheduled entries. */
  get size(): number {
    return this.entries.size;
  }

  /** Writes the state file now; flushes of one scheduler run one after another. */
  flush(): Promise<void> {
    const run = this.flushing.then(async () => {
      this.dirty = false;
      try {
        if (this.o.shared) await this.merge();
        else if (this.o.writer) await this.o.writer(this.o.statePath, [...this.entries.values()]);
        else await this.store.write(this.entries.values());
      } catch (err) {
        // Not written: the next change or stop writes it.
        this.dirty = true;
        throw err;
      }
    });
    this.flushing = run.catch(() => undefined);
    return run;
  }

  /** Shared mode: applies this process's changes to the file and adopts the result. */
  private async merge(): Promise<void> {
    const adds = new Map(this.pendingAdds);
    const removals = new Set(this.pendingRemovals);
    const touches = new Map(this.pendingTouches);
    this.pendingAdds.clear();
    this.pendingRemovals.clear();
    this.pendingTouches.clear();
    let merged: Map<string, Entry>;
    try {
      merged = await this.store.update(async (file) => {
        for (const key of removals) file.delete(key);
        for (const [key, e] of adds) {
          const there = file.get(key);
          // Not in the file: new here, or expired by another replica since (then its content is gone,
          // unless it was fetched again).
          if (!there && this.o.shared!.stillCached && !(await this.o.shared!.stillCached(e))) continue;
          if (!there || there.expiry < e.expiry) file.set(key, e);
        }
        for (const [key, e] of touches) {
          const there = file.get(key);
          if (there && there.expiry < e.expiry) file.set(key, { ...there, expiry: e.expiry });
        }
        return file;
      });
    } catch (err) {
      for (const [key, e] of adds) if (!this.pendingAdds.has(key) && !this.pendingRemovals.has(key)) this.pendingAdds.set(key, e);
      for (const key of removals) if (!this.pendingAdds.has(key)) this.pendingRemovals.add(key);
      for (const [key, e] of touches) if (!this.pendingTouches.has(key)) this.pendingTouches.set(key, e);
      throw err;
    }
    this.lastSync = this.now();
    const next = new Map<string, Entry>();
    for (const [key, e] of merged) {
      // Keep our object when unchanged: an expiry under way recognises its entry by identity.
      const mine = this.entries.get(key);
      next.set(key, mine && mine.expiry.getTime() === e.expiry.getTime() && mine.type === e.type ? mine : e);
    }
    // Changes made while the file was being written stay on top.
    for (const [key, e] of this.pendingAdds) next.set(key, e);
    for (const key of this.pendingRemovals) next.delete(key);
    this.entries.clear();
    for (const [key, e] of next) this.entries.set(key, e);
    this.arm();
  }

  /** Stops the timers, waits for running expiries and writes the state if it changed. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    clearTimeout(this.flushTimer);
    clearInterval(this.leaseTimer);
    clearInterval(this.syncTimer);
    await Promise.allSettled([...this.runs]);
    try {
      if (this.dirty) await this.flush();
      else await this.flushing;
    } finally {
      await this.lease?.();
      this.lease = undefined;
    }
  }

  private changed(): void {
    this.dirty = true;
    this.scheduleFlush();
    this.arm();
  }

  /** At most one pending periodic write; a failed one is tried again an interval later. */
  private scheduleFlush(): void {
    if (this.flushTimer || this.stopped) return;
    this.flushTimer = setTimeout(() => {
      this.flushTimer = undefined;
      if (!this.dirty) return;
      this.flush().catch((err: Error) => {
        this.o.logger?.error(`writing ${this.o.statePath} failed: ${err.message}`);
        this.scheduleFlush();
      });
    }, this.o.flushIntervalMs ?? 5000);
    this.flushTimer.unref();
  }

  /** Re-arms the single timer for the earliest entry not already expiring. */
  private arm(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    // With every slot busy, the next expiry to finish re-arms.
    if (this.stopped || this.running.size >= CONCURRENCY || !this.expiring) return;
    let earliest = Number.POSITIVE_INFINITY;
    for (const e of this.entries.values()) if (!this.running.has(e.key)) earliest = Math.min(earliest, e.expiry.getTime());
    if (earliest === Number.POSITIVE_INFINITY) return;
    const wait = Math.min(Math.max(0, earliest - this.now()), MAX_TIMEOUT);
    this.timer = setTimeout(() => this.fire(), wait);
    this.timer.unref();
  }

  private fire(): void {
    // Shared mode: another replica may have extended an entry since the last sync (a cache hit).
    if (this.o.shared && this.now() - this.lastSync > 1000) {
      this.flush()
        .catch((err: Error) => this.o.logger?.error(`syncing ${this.o.statePath} failed: ${err.message}`))
        .finally(() => this.fireDue());
      return;
    }
    this.fireDue();
  }

  private fireDue(): void {
    if (this.stopped || !this.expiring) return;
    const now = this.now();
    const due = [...this.entries.values()]
      .filter((e) => e.expiry.getTime() <= now && !this.running.has(e.key))
      .sort((a, b) => a.expiry.getTime() - b.expiry.getTime())
      .slice(0, CONCURRENCY - this.running.size);
    for (const entry of due) {
      this.running.add(entry.key);
      // Through a promise, so an onExpire that throws synchronously is a failure like any other.
      const run = Promise.resolve()
        .then(() => this.o.onExpire(entry))
        .then(
          () => {
            this.o.logger?.debug(`expired ${entry.key}`);
            this.failures.delete(entry.key);
            // An entry renewed while it expired is kept with its new time.
            if (this.entries.get(entry.key) === entry) this.remove(entry.key);
          },
          (err: Error) => {
            const n = (this.failures.get(entry.key) ?? 0) + 1;
            const delay = Math.min((this.o.retryMs ?? 60_000) * 2 ** Math.min(n - 1, 30), this.o.maxRetryMs ?? 3_600_000);
            this.o.logger?.warn(`expiring ${entry.key} failed (attempt ${n}), retrying in ${delay} ms: ${err?.message ?? String(err)}`);
            if (this.entries.get(entry.key) === entry) {
              this.failures.set(entry.key, n);
              this.put({ ...entry, expiry: new Date(this.now() + delay) });
            }
          },
        )
        .finally(() => {
          this.running.delete(entry.key);
          this.runs.delete(run);
          this.arm();
        });
      this.runs.add(run);
    }
    this.arm();
  }
}
