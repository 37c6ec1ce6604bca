/**
 * The schedule's shared mode, for processes on one storage root (replicas): only the holder of the
 * `scheduler-lease` lock runs expiries and writes the state file. The others write their changes
 * to journals beside it (lib/expiry/schedule-writes.ts), which the holder applies here and deletes
 * once a state write holds them. An entry this process does not hold is taken from a journal only
 * if its content is still cached: another replica may have expired it meanwhile.
 */
import type { EntryType, IndexedEntry } from './expiry-index.js';
import type { StateStore } from './state-store.js';
import type { Entry } from './state-file.js';
import type { Release, SharedLocks } from '../storage/shared-lock.js';
import { SCHEDULER_LEASE_KEY } from '../storage/paths.js';

/** The logging the shared mode needs (a winston logger fits). */
interface SharedLogger {
  info(msg: string, ...meta: unknown[]): unknown;
  warn(msg: string, ...meta: unknown[]): unknown;
}

/** The schedule the journals are applied to. */
interface JournalTarget {
  get(key: string): IndexedEntry | undefined;
  /** Sets `key`'s expiry (a change written by the next write). */
  put(key: string, expiry: number, type: EntryType): void;
  /** Drops `key` without expiring it. */
  remove(key: string): void;
}

/** What `SharedSchedule` works with. */
export interface SharedScheduleOptions {
  /** The locks of the storage the state file is on. */
  readonly locks: SharedLocks;
  readonly store: StateStore;
  readonly schedule: JournalTarget;
  readonly now: () => number;
  /** Whether an entry's content is still cached (an entry this process does not hold is taken only if it is). */
  readonly stillCached?: (entry: Entry) => Promise<boolean>;
  /** An entry learnt from another replica's journal (its content is linked there). */
  readonly learnt?: (key: string, type: EntryType) => void;
  /** An entry another replica's journal extended (a pull or a hit there). */
  readonly renewed?: (key: string, type: EntryType) => void;
  /** The lease was taken: this process runs the expiries for every replica now (called at once, before any await). */
  readonly taken: () => Promise<void>;
  /** The lease was lost (this process stalled past the stale time, and another replica took over); called at once. */
  readonly lost: () => void;
  readonly logger?: SharedLogger;
}

/** The scheduler lease, and the holder's taking in of the other replicas' journals. */
export class SharedSchedule {
  private lease?: Release;
  private leaseTimer?: NodeJS.Timeout;
  private halted = false;
  /** Journals applied to the schedule, deleted once a state write holds them. */
  private applied: string[] = [];
  private readonly appliedNames = new Set<string>();
  /** The journals being applied: one pass at a time (see `applyJournals`). */
  private journaling: Promise<void> = Promise.resolve();
  private lastLook = 0;

  constructor(private readonly options: SharedScheduleOptions) {}

  /** Tries to take the lease, and keeps trying (every half stale time) if another replica holds it. */
  async start(): Promise<void> {
    await this.tryLease();
    if (!this.lease) this.retry();
  }

  /** Stops trying to take the lease; a lease held stays held until `release`. */
  halt(): void {
    this.halted = true;
    clearInterval(this.leaseTimer);
  }

  /** Gives the lease up. */
  async release(): Promise<void> {
    await this.lease?.();
    this.lease = undefined;
  }

  private retry(): void {
    if (this.leaseTimer || this.halted) return;
    this.leaseTimer = setInterval(() => void this.tryLease(), this.options.locks.staleMs / 2);
    this.leaseTimer.unref();
  }

  private async tryLease(): Promise<void> {
    if (this.lease || this.halted) return;
    const release = await this.options.locks
      .tryAcquire(SCHEDULER_LEASE_KEY, () => {
        this.options.logger?.warn('scheduler lease lost: another replica runs the expiries now');
        this.lease = undefined;
        this.options.lost();
        this.retry();
      })
      .catch(() => undefined);
    if (!release) return;
    if (this.halted) return void (await release());
    this.lease = release;
    clearInterval(this.leaseTimer);
    this.leaseTimer = undefined;
    this.options.logger?.info('scheduler lease taken: this process runs the expiries for every replica on this storage');
    await this.options.taken();
  }

  /** Milliseconds since the journals were last looked at. */
  get sinceLastLook(): number {
    return this.options.now() - this.lastLook;
  }

  /**
   * Applies the other replicas' journals waiting (cost: their changes). Passes run one at a time:
   * two at once (a periodic write, an expiry's refresh) would both read a journal, and the later
   * one put back an entry the expiry in between has just removed.
   */
  applyJournals(): Promise<void> {
    const run = this.journaling.then(() => this.applyJournalsNow());
    this.journaling = run.catch(() => undefined);
    return run;
  }

  private async applyJournalsNow(): Promise<void> {
    const { store, schedule, stillCached } = this.options;
    this.lastLook = this.options.now();
    const names = (await store.journals()).filter((n) => !this.appliedNames.has(n));
    for (const name of names) {
      for (const [key, e] of await store.readJournal(name)) {
        if (e === null) {
          schedule.remove(key);
          continue;
        }
        const existing = schedule.get(key);
        if (existing && existing.expiry >= e.expiry) continue;
        // A hit extends what the holder has, and creates nothing.
        if (!existing && e.hit) continue;
        if (!existing && stillCached && !(await stillCached({ key, expiry: new Date(e.expiry), type: e.type }))) continue;
        schedule.put(key, e.expiry, e.type);
        if (!existing) this.options.learnt?.(key, e.type);
        else this.options.renewed?.(key, e.type);
      }
      this.applied.push(name);
      this.appliedNames.add(name);
    }
  }

  /** True when journals were applied that no state write holds yet. */
  get hasApplied(): boolean {
    return this.applied.length > 0;
  }

  /** The journals applied so far, for a state write (given back with `restoreApplied` if it fails). */
  takeApplied(): string[] {
    const taken = this.applied;
    this.applied = [];
    return taken;
  }

  /** A state write failed: its journals are to be written again with the next. */
  restoreApplied(names: readonly string[]): void {
    this.applied = [...names, ...this.applied];
  }

  /** A state write holds `names`: they are deleted. */
  async dropJournals(names: readonly string[]): Promise<void> {
    await this.options.store.dropJournals(names);
    for (const n of names) this.appliedNames.delete(n);
  }
}
