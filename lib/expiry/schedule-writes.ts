/**
 * The schedule's writes: what changed since the last write, and its writing through the
 * `StateStore`. The process that runs the expiries merges the changes into the state file; a
 * replica without the scheduler lease writes them, and the hits on entries it has not seen, to a
 * journal for the holder (lib/expiry/shared-schedule.ts). One write at a time, at most every
 * interval and only when something changed; the interval stretches to 19 times the duration of a
 * write when writes are slow, so that writing takes at most 5% of the time.
 */
import type { EntryType, ExpiryIndex } from './expiry-index.js';
import { StateWriteError, type StateStore } from './state-store.js';
import type { Changes } from './state-file.js';
import type { SharedSchedule } from './shared-schedule.js';

/** The logging the writes need (a winston logger fits). */
interface WritesLogger {
  error(msg: string, ...meta: unknown[]): unknown;
}

/** What `ScheduleWrites` works with. */
export interface ScheduleWritesOptions {
  readonly store: StateStore;
  /** The schedule whose entries are written. */
  readonly index: ExpiryIndex;
  /** Least time between two writes (ms). */
  readonly interval: number;
  readonly now: () => number;
  /** True when this process runs the expiries: it writes the state file, the others journals. */
  readonly expiring: () => boolean;
  /** The schedule's load under way, if any: a write waits for it (the file's copy comes first). */
  readonly loading: () => Promise<unknown> | undefined;
  /** Shared mode: the other replicas' journals, taken in before a state write and deleted after it. */
  readonly shared?: SharedSchedule;
  readonly logger?: WritesLogger;
}

type Change = { expiry: number; type: EntryType; hit?: boolean } | null;

/** The changes since the last write, and their writing. */
export class ScheduleWrites {
  /** Keys changed since the last write. */
  private dirty = new Set<string>();
  /** Without the lease: hits on entries this process has not seen, for the holder. */
  private hits = new Map<string, { expiry: number; type: EntryType; hit: true }>();
  /** The store could not be merged into (or its file was set aside): the next write is a full one. */
  private fullWrite = false;
  /** A rebuild is complete: its marker is removed after the next successful write. */
  private unmarkRebuild = false;
  private timer?: NodeJS.Timeout;
  private plannedAt = 0;
  private flushing: Promise<void> = Promise.resolve();
  private lastWriteMs = 0;
  /** A write is under way; what was asked meanwhile (`soonMs`: the soonest asked) is planned at its end. */
  private writing = false;
  private afterWrite?: { soonMs?: number };
  private halted = false;

  constructor(private readonly options: ScheduleWritesOptions) {}

  /** `key` changed (added, extended, removed): written at the next write. */
  changed(key: string): void {
    this.dirty.add(key);
    this.plan();
  }

  /** Without the lease: a hit on `key`, which this process has not seen, goes to the holder. */
  hit(key: string, expiry: number, type: EntryType): void {
    this.hits.set(key, { expiry, type, hit: true });
    this.plan();
  }

  /** Whether `key` changed since the last write. */
  isChanged(key: string): boolean {
    return this.dirty.has(key);
  }

  /** The keys changed since the last write. */
  changedKeys(): Iterable<string> {
    return this.dirty;
  }

  /** The stored copy is unusable (set aside): the next write writes the whole schedule. */
  rewriteAll(): void {
    this.fullWrite = true;
  }

  /** Plans a write if something is waiting for one (after a load). */
  planIfPending(): void {
    if (this.fullWrite || this.dirty.size > 0) this.plan();
  }

  /** A rebuild from storage begins: marked, so that one cut short is done again at the next start. */
  async markRebuild(): Promise<void> {
    this.unmarkRebuild = false;
    await this.options.store.markRebuild(true);
  }

  /** The rebuild is complete: its marker goes once a write holds it. */
  rebuilt(): void {
    this.unmarkRebuild = true;
    this.plan();
  }

  /** No write is planned any more (a stop); `flush` still writes. */
  halt(): void {
    this.halted = true;
    clearTimeout(this.timer);
  }

  /** At most one pending periodic write (sooner with `soonMs`); a failed one is tried again an interval later. */
  plan(soonMs?: number): void {
    if (this.halted) return;
    // During a write the next one waits for its end: planned now, it would be planned from the
    // previous write's duration, and every interval of a slow write would queue one more.
    if (this.writing) {
      const soonest = this.afterWrite?.soonMs;
      this.afterWrite = { soonMs: soonMs === undefined ? soonest : Math.min(soonest ?? soonMs, soonMs) };
      return;
    }
    const { now, interval } = this.options;
    const wait = soonMs ?? Math.max(interval, 19 * this.lastWriteMs);
    if (this.timer) {
      if (soonMs === undefined || this.plannedAt <= now() + soonMs) return;
      clearTimeout(this.timer);
    }
    this.plannedAt = now() + wait;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.flush().catch((err: Error) => {
        this.options.logger?.error('writing the schedule failed', { path: this.options.store.location, 'err.message': err.message });
        this.plan();
      });
    }, wait);
    this.timer.unref();
  }

  /** Writes the changes now (the lease holder to the state, the others to a journal); one write at a time. */
  flush(): Promise<void> {
    const run = this.flushing.then(async () => {
      this.writing = true;
      try {
        await this.write();
      } finally {
        this.writing = false;
        // What changed meanwhile is written at the interval this write's duration gives.
        if (this.afterWrite) {
          const soon = this.afterWrite.soonMs;
          this.afterWrite = undefined;
          this.plan(soon);
        }
      }
    });
    this.flushing = run.catch(() => undefined);
    return run;
  }

  private takeChanges(): Map<string, Change> {
    const changes = new Map<string, Change>();
    for (const key of this.dirty) {
      const e = this.options.index.get(key);
      changes.set(key, e ? { expiry: e.expiry, type: e.type } : null);
    }
    this.dirty = new Set();
    return changes;
  }

  private async write(): Promise<void> {
    await this.options.loading();
    if (!this.options.expiring()) return this.writeJournal();
    const { store, shared } = this.options;
    this.hits.clear();
    await shared?.applyJournals();
    const journals = shared?.takeApplied() ?? [];
    if (this.dirty.size === 0 && !this.fullWrite && journals.length === 0) return;
    const full = this.fullWrite;
    const changes = full ? this.everything() : this.takeChanges();
    if (full) {
      this.dirty = new Set();
      this.fullWrite = false;
    }
    const unmark = this.unmarkRebuild;
    try {
      const r = await store.write(changes, { replace: full });
      this.lastWriteMs = r.ms;
      if (unmark) {
        await store.markRebuild(false);
        this.unmarkRebuild = false;
      }
    } catch (err) {
      for (const key of changes.keys()) if (!full) this.dirty.add(key);
      if (full || (err instanceof StateWriteError && err.base)) this.fullWrite = true;
      shared?.restoreApplied(journals);
      throw err;
    }
    if (journals.length > 0) await shared!.dropJournals(journals);
  }

  /** A replica without the lease: its changes and hits to a journal, which the lease holder applies. */
  private async writeJournal(): Promise<void> {
    if (this.dirty.size === 0 && this.hits.size === 0) return;
    const unmark = this.unmarkRebuild;
    const hits = this.hits;
    this.hits = new Map();
    const changes = this.takeChanges();
    for (const [key, h] of hits) if (!changes.has(key)) changes.set(key, h);
    try {
      await this.options.store.writeJournal(changes);
    } catch (err) {
      for (const [key, e] of changes) {
        if (e?.hit) this.hits.set(key, e as { expiry: number; type: EntryType; hit: true });
        else this.dirty.add(key);
      }
      throw err;
    }
    // The rebuilt entries are in a journal, which the lease holder applies.
    if (unmark) {
      await this.options.store.markRebuild(false);
      this.unmarkRebuild = false;
    }
  }

  /** The whole schedule as changes, for a full write (rare: after a damaged file). */
  private everything(): Changes {
    const all = new Map<string, { expiry: number; type: EntryType }>();
    for (const e of this.options.index.entries()) all.set(e.key, { expiry: e.expiry, type: e.type });
    return all;
  }
}
