/**
 * The TTL scheduler: the schedule in an index ordered by expiry (lib/expiry/expiry-index.ts),
 * one timer for the earliest entry, persisted through a `StateStore` (scheduler-state.json) by
 * its writes (lib/expiry/schedule-writes.ts). Due entries are expired by lib/expiry/expiry-runs.ts,
 * a failed expiry kept and retried (the official scheduler drops it and leaks the content, #1994).
 *
 * Every cost that recurs follows what changed, not what is stored: a change (an add, a cache hit
 * that extends an expiry, an expiry) costs O(log n) in the index and one key in the set of changes;
 * a write hands only those changes to the store, at most every `flushIntervalMs` and only when
 * something changed (the store's worker thread merges them into the file, off the event loop).
 * The state file is loaded in the background in bounded slices: the registry serves meanwhile, and
 * expiries wait until it is loaded. A kill -9 loses the changes of the last flush interval at most
 * (5 s; the interval stretches when writes are slow: about a million entries and more on this machine).
 *
 * Shared mode, for processes on one storage root (replicas, lib/expiry/shared-schedule.ts): only
 * the holder of the `scheduler-lease` lock runs expiries and writes the state file; the others
 * write journals, which the holder applies. A replica taking the lease over writes its own
 * changes, then reloads the file and the journals.
 */
import { ExpiryIndex, toEntry, type EntryType, type IndexedEntry } from './expiry-index.js';
import { ExpiryRuns } from './expiry-runs.js';
import { FileStateStore, type StateStore } from './state-store.js';
import type { Entry } from './state-file.js';
import { ScheduleWrites } from './schedule-writes.js';
import { SharedSchedule } from './shared-schedule.js';
import type { SharedLocks } from '../storage/shared-lock.js';

export type { Entry } from './state-file.js';

/** The logging the scheduler needs (a winston logger fits). */
interface SchedulerLogger {
  info(msg: string, ...meta: unknown[]): unknown;
  warn(msg: string, ...meta: unknown[]): unknown;
  error(msg: string, ...meta: unknown[]): unknown;
  debug(msg: string, ...meta: unknown[]): unknown;
}

/** Options of `TtlScheduler`. */
interface SchedulerOptions {
  /** The `scheduler-state.json` path (of the default store). */
  readonly statePath: string;
  /** Purges an expired entry; a rejection keeps the entry and retries it later. */
  readonly onExpire: (entry: Entry) => Promise<void>;
  /** The clock (milliseconds since the epoch); `Date.now` by default. */
  readonly now?: () => number;
  /** Least time between two writes of the state; 5 s by default. */
  readonly flushIntervalMs?: number;
  /** First retry delay after a failed expiry, doubled on each further failure; 1 min by default. */
  readonly retryMs?: number;
  /** Longest retry delay; 1 h by default. */
  readonly maxRetryMs?: number;
  /** Where the schedule is kept; `scheduler-state.json` at `statePath` by default. */
  readonly store?: StateStore;
  readonly logger?: SchedulerLogger;
  /**
   * Whether an entry's content is still cached: an entry renewed while it expired is kept only if
   * it is (a pull linked it again), and in the shared mode an entry learnt from another replica's
   * journal that this process does not hold is taken only if it is.
   */
  readonly stillCached?: (entry: Entry) => Promise<boolean>;
  /** Shared mode: the locks of the storage the state file is on. */
  readonly shared?: {
    readonly locks: SharedLocks;
    /** An entry learnt from another replica's journal (its content is linked there). */
    readonly learnt?: (key: string, type: EntryType) => void;
    /** This process has taken the scheduler lease (it runs the expiries for every replica now). */
    readonly leaseTaken?: () => void;
    /** An entry another replica's journal extended (a pull or a hit there). */
    readonly renewed?: (key: string, type: EntryType) => void;
  };
}

/** A replica without the lease writes new entries (new links) to its journal this soon. */
const NEW_ENTRY_JOURNAL_MS = 100;

/**
 * What the cache's lifetime policy needs of a schedule: `TtlScheduler` here (an in-memory index
 * persisted through a `StateStore`); a shared structure with O(log n) entries (a Redis sorted set,
 * for replicas coordinated through Redis) can implement the same.
 */
export interface ExpirySchedule {
  /** Loads what is stored (in the background: resolves when loaded) and starts expiring. */
  start(): Promise<{ problem?: string; loaded: number }>;
  /** Stops expiring (and loading) and writes what changed so far; later changes are kept for `stop`. */
  halt(): Promise<void>;
  /** Stops expiring and persists what changed. */
  stop(): Promise<void>;
  /** True when an earlier rebuild from storage was interrupted (its marker is still there). */
  rebuildPending(): Promise<boolean>;
  /** A rebuild from storage begins: marked, so that one cut short is done again at the next start. */
  markRebuild(): Promise<void>;
  /** The rebuild is complete: its marker goes once a write holds it. */
  rebuilt(): void;
  /** Content fetched: it expires `ttlMs` from now, or later if it already does. */
  add(repo: string, digest: string, type: EntryType, ttlMs: number): void;
  /** A cache hit: extends a scheduled entry, creates none. */
  touch(repo: string, digest: string, type: EntryType, ttlMs: number): void;
  /** Entries for content found on storage that the schedule lacks. */
  rebuild(found: Iterable<{ repo: string; digest: string; type: EntryType }>, ttlMs: number): void;
  get(key: string): Entry | undefined;
  /** True once the stored schedule is loaded. */
  readonly ready: boolean;
  /** True when this process runs the expiries (in the shared mode: holds the scheduler lease). */
  readonly expiring: boolean;
  /** Before blob data is deleted: takes in what other processes scheduled meanwhile. */
  refresh(): Promise<void>;
}

/** Splits `<repo>@<digest>` at the last `@`. */
export function parseKey(key: string): { repo: string; digest: string } {
  const i = key.lastIndexOf('@');
  return { repo: key.slice(0, i), digest: key.slice(i + 1) };
}

const MAX_TIMEOUT = 2 ** 31 - 1;
const CONCURRENCY = 4;
/** A replica without the lease forgets entries this long past their expiry (the holder expired them). */
const PRUNE_AFTER_MS = 60_000;
/** At most this many entries pruned per interval, to bound the slice. */
const PRUNE_SLICE = 10_000;

/** Expires cache entries at their time. */
export class TtlScheduler implements ExpirySchedule {
  private readonly index = new ExpiryIndex();
  private readonly store: StateStore;
  private readonly writes: ScheduleWrites;
  /** Shared mode: the scheduler lease and the other replicas' journals. */
  private readonly shared?: SharedSchedule;
  /**
   * Shared mode: this process holds the scheduler lease (told by `shared` when it is taken and
   * lost: kept here, as every request's `add` asks it).
   */
  private leaseHeld = false;
  /** Entries being expired, with the version taken (kept out of the index's queue meanwhile). */
  private readonly running = new Map<string, number>();
  private readonly runs: ExpiryRuns;
  private loaded = false;
  private loading?: Promise<{ problem?: string; loaded: number }>;
  /** Keys removed while loading: the file's copy must not bring them back. */
  private tombstones = new Set<string>();
  private timer?: NodeJS.Timeout;
  private armedAt = Number.POSITIVE_INFINITY;
  private stopped = false;
  private readonly now: () => number;
  private readonly interval: number;
  private syncTimer?: NodeJS.Timeout;

  constructor(private readonly options: SchedulerOptions) {
    this.now = options.now ?? Date.now;
    this.interval = options.flushIntervalMs ?? 5000;
    this.store = options.store ?? new FileStateStore(options.statePath);
    const { shared, logger } = options;
    if (shared)
      this.shared = new SharedSchedule({
        locks: shared.locks,
        store: this.store,
        now: this.now,
        logger,
        stillCached: options.stillCached,
        learnt: shared.learnt,
        renewed: shared.renewed,
        schedule: { get: (key) => this.index.get(key), put: (key, expiry, type) => this.put(key, expiry, type), remove: (key) => this.remove(key) },
        taken: () => {
          this.leaseHeld = true;
          return this.leaseTaken();
        },
        lost: () => {
          this.leaseHeld = false;
          this.disarm();
        },
      });
    this.runs = new ExpiryRuns({
      index: this.index,
      running: this.running,
      onExpire: options.onExpire,
      stillCached: options.stillCached,
      now: this.now,
      retryMs: options.retryMs,
      maxRetryMs: options.maxRetryMs,
      logger,
      remove: (key) => this.remove(key),
      changed: (key) => this.writes.changed(key),
      ended: () => this.arm(),
    });
    this.writes = new ScheduleWrites({
      store: this.store,
      index: this.index,
      interval: this.interval,
      now: this.now,
      expiring: () => this.expiring,
      loading: () => this.loading,
      shared: this.shared,
      logger,
    });
  }

  /**
   * Loads the stored schedule (in bounded slices: the caller need not wait for it to serve) and
   * then arms the expiries; past entries fire at once. Resolves when loaded.
   */
  async start(): Promise<{ problem?: string; loaded: number }> {
    await this.shared?.start();
    // Stopped before it started (a registry closed during its start-up): nothing to load, and no
    // timer or writer thread may outlive the stop.
    if (this.stopped) return { loaded: 0 };
    this.syncTimer = setInterval(() => this.tick(), this.interval);
    this.syncTimer.unref();
    return this.load();
  }

  /** True when this process runs the expiries (always, unless in shared mode without the lease). */
  get expiring(): boolean {
    return !this.shared || this.leaseHeld;
  }

  /** True once the stored schedule is loaded. */
  get ready(): boolean {
    return this.loaded;
  }

  private load(): Promise<{ problem?: string; loaded: number }> {
    this.loaded = false;
    const run = (async () => {
      const r = await this.store.load(
        (batch) => {
          for (const e of batch) {
            if (this.tombstones.size > 0 && this.tombstones.has(e.key)) continue;
            const existing = this.index.expiryOf(e.key);
            // Changes made while loading are newer than the file, unless the file expires later.
            if (existing === undefined || existing < e.expiry) this.index.set(e.key, e.expiry, e.type, !this.running.has(e.key));
          }
        },
        () => this.stopped,
      );
      // The file was set aside: write back everything known.
      if (r.problem) this.writes.rewriteAll();
      if (this.shared && this.leaseHeld)
        await this.shared
          .applyJournals()
          .catch((err: Error) => this.options.logger?.error('reading the schedule journals failed', { 'err.message': err.message }));
      this.tombstones = new Set();
      this.loaded = true;
      this.writes.planIfPending();
      this.arm();
      return r.problem ? { problem: r.problem, loaded: r.loaded } : { loaded: r.loaded };
    })();
    this.loading = run;
    return run;
  }

  /** The lease was taken after the start: what this process knows may be stale. */
  private async leaseTaken(): Promise<void> {
    if (!this.loading) return; // The first load, about to start, reads the journals.
    await this.loading;
    this.options.shared?.leaseTaken?.();
    // Its own changes go to the file, then the file and the other replicas' journals are read afresh.
    await this.flush().catch((err: Error) =>
      this.options.logger?.error('writing the schedule failed', { path: this.store.location, 'err.message': err.message }),
    );
    if (this.stopped || !this.leaseHeld) return;
    const own = new Map<string, IndexedEntry | undefined>();
    for (const key of this.writes.changedKeys()) own.set(key, this.index.get(key));
    this.index.clear();
    for (const [key, e] of own) if (e) this.index.set(key, e.expiry, e.type, !this.running.has(key));
    await this.load();
  }

  /** Schedules `repo@digest` to expire `ttlMs` from now, or later if it already expires later (O(log n)). */
  add(repo: string, digest: string, type: EntryType, ttlMs: number): void {
    const key = `${repo}@${digest}`;
    const expiry = this.now() + ttlMs;
    const existing = this.index.expiryOf(key);
    if (existing !== undefined && existing >= expiry) return;
    this.put(key, expiry, type);
    // New content on a replica without the lease: the holder learns of the link soon, so that it
    // does not delete data this replica has just linked.
    if (existing === undefined && !this.expiring) this.writes.plan(NEW_ENTRY_JOURNAL_MS);
  }

  private put(key: string, expiry: number, type: EntryType): void {
    this.index.set(key, expiry, type, !this.running.has(key));
    this.writes.changed(key);
    if (expiry < this.armedAt) this.arm();
  }

  /**
   * A cache hit: extends a scheduled entry as `add` would. Content that is not scheduled stays so (a
   * hit never creates an entry); a replica without the lease reports a hit on an entry it has not
   * seen (another replica scheduled it) in its journal, and the holder extends it if it has it.
   */
  touch(repo: string, digest: string, type: EntryType, ttlMs: number): void {
    const key = `${repo}@${digest}`;
    if (this.index.has(key)) return this.add(repo, digest, type, ttlMs);
    if (!this.expiring) this.writes.hit(key, this.now() + ttlMs, type);
  }

  /** Adds entries for content found on disk that the schedule lacks (after a lost state file). */
  rebuild(found: Iterable<{ repo: string; digest: string; type: EntryType }>, ttlMs: number): void {
    for (const f of found) if (!this.index.has(`${f.repo}@${f.digest}`)) this.add(f.repo, f.digest, f.type, ttlMs);
  }

  /** Drops an entry without expiring it. */
  remove(key: string): void {
    this.runs.forget(key);
    if (!this.loaded) this.tombstones.add(key);
    if (this.index.delete(key)) this.writes.changed(key);
  }

  /** Whether `key` (`<repo>@<digest>`) is scheduled. */
  has(key: string): boolean {
    return this.index.has(key);
  }

  /** The scheduled entry for `key`. */
  get(key: string): Entry | undefined {
    const e = this.index.get(key);
    return e && toEntry(e);
  }

  /** The number of scheduled entries. */
  get size(): number {
    return this.index.size;
  }

  /** Writes the changes now (the lease holder to the state, the others to a journal); one write at a time. */
  flush(): Promise<void> {
    return this.writes.flush();
  }

  /** Every interval: the holder takes in the journals; the others forget what the holder expired. */
  private tick(): void {
    if (this.stopped || !this.loaded || !this.shared) return;
    if (this.expiring) {
      // The journals are taken in every interval (their cost is their changes); the file is
      // rewritten by the periodic write, whose interval stretches when writes are slow: a
      // rewrite every interval cost a sixth of a core at a million entries.
      this.shared
        .applyJournals()
        .then(() => this.shared!.hasApplied && this.writes.plan())
        .catch((err: Error) => this.options.logger?.error('reading the schedule journals failed', { 'err.message': err.message }));
      return;
    }
    const horizon = this.now() - PRUNE_AFTER_MS;
    for (let i = 0; i < PRUNE_SLICE; i++) {
      const next = this.index.peek();
      if (!next || next.expiry > horizon || this.writes.isChanged(next.key)) break;
      this.index.delete(next.key);
    }
  }

  /**
   * Stops the timers and the load, waits for running expiries (the registry's stop signal ends
   * them at their next step), and writes what changed so far: a stop does this while in-flight
   * requests drain, so that `stop` has only what they changed since left to write.
   */
  async halt(): Promise<void> {
    this.stopped = true;
    this.disarm();
    this.writes.halt();
    this.shared?.halt();
    clearInterval(this.syncTimer);
    await this.runs.settled();
    await this.loading;
    // A failure keeps the changes for `stop`'s write.
    await this.flush().catch((err: Error) =>
      this.options.logger?.warn('writing the schedule failed, trying again before exiting', { path: this.store.location, 'err.message': err.message }),
    );
  }

  async rebuildPending(): Promise<boolean> {
    return this.store.rebuildMarked();
  }

  async markRebuild(): Promise<void> {
    await this.writes.markRebuild();
  }

  rebuilt(): void {
    this.writes.rebuilt();
  }

  /** Halts (see `halt`), then writes what changed. */
  async stop(): Promise<void> {
    try {
      await this.halt();
      await this.flush();
    } finally {
      await this.shared?.release();
      this.leaseHeld = false;
      await this.store.close();
    }
  }

  /**
   * The lease holder, before deleting blob data: takes in the journals other replicas wrote since
   * the last look (a replica that has just linked the data says so within 100 ms).
   */
  async refresh(): Promise<void> {
    if (!this.shared || !this.leaseHeld || this.shared.sinceLastLook < 50) return;
    await this.shared.applyJournals();
  }

  private disarm(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.armedAt = Number.POSITIVE_INFINITY;
  }

  /** Arms the single timer for the earliest entry not already expiring (kept if it fires no later). */
  private arm(): void {
    if (this.stopped || !this.loaded || this.running.size >= CONCURRENCY || !this.expiring) return this.disarm();
    const next = this.index.peek();
    if (!next) return this.disarm();
    if (this.timer && this.armedAt <= next.expiry) return;
    clearTimeout(this.timer);
    const wait = Math.min(Math.max(0, next.expiry - this.now()), MAX_TIMEOUT);
    this.armedAt = this.now() + wait;
    this.timer = setTimeout(() => this.fire(), wait);
    this.timer.unref();
  }

  private fire(): void {
    this.timer = undefined;
    this.armedAt = Number.POSITIVE_INFINITY;
    // Shared mode: another replica may have extended an entry since (a cache hit there).
    if (this.shared && this.shared.sinceLastLook > 1000) {
      this.shared
        .applyJournals()
        .catch((err: Error) => this.options.logger?.error('reading the schedule journals failed', { 'err.message': err.message }))
        .finally(() => this.fireDue());
      return;
    }
    this.fireDue();
  }

  private fireDue(): void {
    if (this.stopped || !this.expiring || !this.loaded) return;
    const now = this.now();
    while (this.running.size < CONCURRENCY) {
      const next = this.index.peek();
      if (!next || next.expiry > now) break;
      this.index.setQueued(next.key, false);
      this.running.set(next.key, next.version);
      this.runs.start(next);
    }
    this.arm();
  }
}
