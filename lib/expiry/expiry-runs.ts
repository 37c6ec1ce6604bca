/**
 * The expiry of due entries, each run through the purge the cache's lifetime policy gives
 * (`onExpire`) and retried when it fails: the first retry after `retryMs`, doubled on each further
 * failure up to `maxRetryMs` (the official scheduler drops a failed expiry and leaks the content,
 * #1994). An entry renewed while it expired is kept, unless its content is gone.
 */
import { StoppingError } from '../errors.js';
import { toEntry, type ExpiryIndex, type IndexedEntry } from './expiry-index.js';
import type { Entry } from './state-file.js';

/** The logging the runs need (a winston logger fits). */
interface RunsLogger {
  info(msg: string, ...meta: unknown[]): unknown;
  warn(msg: string, ...meta: unknown[]): unknown;
  debug(msg: string, ...meta: unknown[]): unknown;
}

/** What `ExpiryRuns` works with. */
export interface ExpiryRunsOptions {
  readonly index: ExpiryIndex;
  /**
   * The entries being expired, with the version taken: the scheduler's, which adds an entry before
   * `start` (and queues none of them); a run removes its own when it ends.
   */
  readonly running: Map<string, number>;
  /** Purges an expired entry; a rejection keeps the entry and retries it later. */
  readonly onExpire: (entry: Entry) => Promise<void>;
  /** Whether an entry's content is still cached (an entry renewed while it expired is kept only if it is). */
  readonly stillCached?: (entry: Entry) => Promise<boolean>;
  readonly now: () => number;
  /** First retry delay; 1 min by default. */
  readonly retryMs?: number;
  /** Longest retry delay; 1 h by default. */
  readonly maxRetryMs?: number;
  readonly logger?: RunsLogger;
  /** Drops an entry from the schedule (a change to write). */
  readonly remove: (key: string) => void;
  /** An entry's expiry moved (a retry): a change to write. */
  readonly changed: (key: string) => void;
  /** A run ended: the next due entry may start. */
  readonly ended: () => void;
}

/** The expiries under way. */
export class ExpiryRuns {
  private readonly failures = new Map<string, number>();
  private readonly runs = new Set<Promise<void>>();

  constructor(private readonly options: ExpiryRunsOptions) {}

  /** Expires `taken` (already in `running`, no longer queued in the index). */
  start(taken: IndexedEntry): void {
    const { index, running, now, logger } = this.options;
    const { key } = taken;
    // Through a promise, so an onExpire that throws synchronously is a failure like any other.
    const run = Promise.resolve()
      .then(() => this.options.onExpire(toEntry(taken)))
      .then(
        async () => {
          logger?.debug('expired', { key });
          this.failures.delete(key);
          // An entry renewed while it expired is kept with its new time, unless that time has passed
          // too (a replica's journal reporting an earlier pull): its content is purged now.
          const current = index.get(key);
          if (!current) return;
          if (current.version === taken.version || current.expiry <= now()) return this.options.remove(key);
          // Renewed by a pull that linked the content again (kept), or by a report of a hit or a pull
          // from before the purge (another replica's journal, a hit served while it ran): the content
          // is gone, and keeping the entry would expire it a second time.
          const { stillCached } = this.options;
          if (!stillCached || (await stillCached(toEntry(current)).catch(() => true))) return;
          if (index.get(key)?.version === current.version) this.options.remove(key);
        },
        (err: Error) => {
          // Given up for the registry's stop: the entry stays as it was, due, for the next start.
          if (err instanceof StoppingError) return void logger?.info(`expiring ${key} interrupted: the registry is stopping`);
          const n = (this.failures.get(key) ?? 0) + 1;
          const delay = Math.min((this.options.retryMs ?? 60_000) * 2 ** Math.min(n - 1, 30), this.options.maxRetryMs ?? 3_600_000);
          logger?.warn('expiring failed, retrying', { key, attempt: n, 'retry.ms': delay, 'err.message': err?.message ?? String(err) });
          if (index.get(key)?.version === taken.version) {
            this.failures.set(key, n);
            index.set(key, now() + delay, taken.type, false);
            this.options.changed(key);
          }
        },
      )
      .finally(() => {
        running.delete(key);
        index.setQueued(key, true);
        this.runs.delete(run);
        this.options.ended();
      });
    this.runs.add(run);
  }

  /** `key` left the schedule: its count of failures goes too. */
  forget(key: string): void {
    this.failures.delete(key);
  }

  /** Resolves once every run under way has ended. */
  async settled(): Promise<void> {
    await Promise.allSettled([...this.runs]);
  }
}
