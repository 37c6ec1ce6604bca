/**
 * The TTL scheduler: one timer for the whole schedule (the earliest expiry), persisted to
 * `scheduler-state.json` at most every few seconds when changed and on stop. A failed expiry is
 * kept and retried (the official scheduler drops it and leaks the content, #1994).
 */
import { readState, writeState, type Entry } from './state-file.js';

export type { Entry } from './state-file.js';

/** The logging the scheduler needs (a winston logger fits). */
export interface SchedulerLogger {
  info(msg: string, ...meta: unknown[]): unknown;
  warn(msg: string, ...meta: unknown[]): unknown;
  error(msg: string, ...meta: unknown[]): unknown;
}

/** Options of `TtlScheduler`. */
export interface SchedulerOptions {
  readonly statePath: string;
  readonly onExpire: (entry: Entry) => Promise<void>;
  readonly now?: () => number;
  readonly flushIntervalMs?: number;
  readonly retryMs?: number;
  readonly logger?: SchedulerLogger;
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
  private readonly runs = new Set<Promise<void>>();
  private timer?: NodeJS.Timeout;
  private flushTimer?: NodeJS.Timeout;
  private dirty = false;
  private stopped = false;
  private readonly now: () => number;

  constructor(private readonly o: SchedulerOptions) {
    this.now = o.now ?? Date.now;
  }

  /** Loads the state file and arms every entry; past entries fire at once. */
  async start(): Promise<{ problem?: string; loaded: number }> {
    const { entries, problem } = await readState(this.o.statePath);
    for (const [k, e] of entries) this.entries.set(k, e);
    setImmediate(() => this.arm());
    return { problem, loaded: entries.size };
  }

  /** Schedules `repo@digest` to expire `ttlMs` from now, or later if it already expires later. */
  add(repo: string, digest: string, type: Entry['type'], ttlMs: number): void {
    const key = `${repo}@${digest}`;
    const expiry = new Date(this.now() + ttlMs);
    const existing = this.entries.get(key);
    if (existing && existing.expiry >= expiry) return;
    this.entries.set(key, { key, expiry, type });
    this.changed();
  }

  /** A cache hit: the same as `add`, named for what it means. */
  touch(repo: string, digest: string, type: Entry['type'], ttlMs: number): void {
    this.add(repo, digest, type, ttlMs);
  }

  /** Adds entries for content found on disk that the schedule lacks (after a lost state file). */
  rebuild(found: Iterable<{ repo: string; digest: string; type: Entry['type'] }>, ttlMs: number): void {
    for (const f of found) if (!this.entries.has(`${f.repo}@${f.digest}`)) this.add(f.repo, f.digest, f.type, ttlMs);
  }

  remove(key: string): void {
    if (this.entries.delete(key)) this.changed();
  }
  has(key: string): boolean {
    return this.entries.has(key);
  }
  get(key: string): Entry | undefined {
    return this.entries.get(key);
  }
  get size(): number {
    return this.entries.size;
  }

  /** Writes the state file now; flushes of one scheduler run one after another. */
  flush(): Promise<void> {
    const run = this.flushing.then(async () => {
      this.dirty = false;
      try {
        await writeState(this.o.statePath, this.entries.values());
      } catch (err) {
        // Not written: the next change or stop writes it.
        this.dirty = true;
        throw err;
      }
    });
    this.flushing = run.catch(() => undefined);
    return run;
  }

  private flushing: Promise<void> = Promise.resolve();

  /** Stops the timers, waits for running expiries and writes the state if it changed. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    clearTimeout(this.flushTimer);
    await Promise.allSettled([...this.runs]);
    if (this.dirty) await this.flush();
  }

  private changed(): void {
    this.dirty = true;
    if (!this.flushTimer && !this.stopped) {
      this.flushTimer = setTimeout(() => {
        this.flushTimer = undefined;
        this.flush().catch((err: Error) => this.o.logger?.error(`writing ${this.o.statePath} failed: ${err.message}`));
      }, this.o.flushIntervalMs ?? 5000);
      this.flushTimer.unref();
    }
    this.arm();
  }

  /** Re-arms the single timer for the earliest entry not already expiring. */
  private arm(): void {
    if (this.stopped) return;
    clearTimeout(this.timer);
    let earliest = Number.POSITIVE_INFINITY;
    for (const e of this.entries.values()) if (!this.running.has(e.key)) earliest = Math.min(earliest, e.expiry.getTime());
    if (earliest === Number.POSITIVE_INFINITY) return;
    const wait = Math.min(Math.max(0, earliest - this.now()), MAX_TIMEOUT);
    this.timer = setTimeout(() => this.fire(), wait);
    this.timer.unref();
  }

  private fire(): void {
    const now = this.now();
    const due = [...this.entries.values()]
      .filter((e) => e.expiry.getTime() <= now && !this.running.has(e.key))
      .sort((a, b) => a.expiry.getTime() - b.expiry.getTime())
      .slice(0, CONCURRENCY - this.running.size);
    for (const entry of due) {
      this.running.add(entry.key);
      const run = this.o
        .onExpire(entry)
        .then(
          () => {
            // An entry renewed while it expired is kept with its new time.
            if (this.entries.get(entry.key) === entry) this.remove(entry.key);
          },
          (err: Error) => {
            this.o.logger?.warn(`expiring ${entry.key} failed, will retry: ${err.message}`);
            if (this.entries.get(entry.key) === entry) {
              this.entries.set(entry.key, { ...entry, expiry: new Date(this.now() + (this.o.retryMs ?? 60_000)) });
              this.changed();
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
