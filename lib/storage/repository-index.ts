/**
 * The catalog from memory (issue 33): every repository name of a filesystem storage, sorted in
 * distribution's order, so that a page of `/v2/_catalog` costs a binary search and a slice instead
 * of one directory listing per repository (lib/storage/catalog.ts, which still answers until the
 * index is built, and always on S3).
 *
 * Built and kept up to date by a thread (lib/storage/repository-probe-thread.ts running
 * lib/storage/repository-tree.ts): a pass stats every directory of `repositories/` and reads only
 * those whose mtime changed, then posts what appeared and went; nothing reaches the event loop
 * when nothing changed.
 *
 * How fresh a page is:
 * - this process's own changes (a repository's first manifest or tag link, a repository deleted)
 *   are in the index at once, through `saw` and `forgot`;
 * - other processes' (replicas, a registry:2 on the same volume, an operator) are seen by the next
 *   pass: passes run every `interval` (1 s, or 50 times the last pass's duration when that is
 *   longer, so that the thread's work stays under 2% of a core) while the catalog is being asked
 *   for, and a page is answered only from a pass started at most `interval` + 1 s before it; when
 *   the catalog has not been asked for a minute (and from a few seconds after the build on), passes
 *   stop, and the next page waits for a pass of its own. A directory changed twice within one tick
 *   of the filesystem's clock, the second time just as it was read, is read again `RACY_MS` later
 *   (lib/storage/repository-tree.ts). `bound` is the sum: 5 s where a pass takes 20 ms or less
 *   (14 ms for the 2,053 directories of a 100,000-entry cache; docs/performance.md).
 *
 * Nothing recurring runs per name on the event loop: a pass posts only what changed (the build
 * posts every name once, in pieces).
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { Logger } from 'winston';
import type { CatalogPage } from './catalog.js';
import { monotonicMs, pathKey, RACY_MS } from './repository-tree.js';

/** Passes run at least this far apart. */
const MIN_INTERVAL_MS = 1000;
/** ... and at least this many times their own duration apart. */
const DUTY_FACTOR = 50;
/** Passes stop when the catalog was not asked for this long. */
const ACTIVE_MS = 60_000;
/** How far a page may be behind `interval` before it waits for a pass: a late timer is not staleness. */
const SLACK_MS = 1000;
/** Above this many changes at once, the sorted names are merged rather than spliced one by one. */
const SPLICE_LIMIT = 64;

/** What the index asks its thread. */
export interface ProbeRequest {
  readonly id: number;
  /** Names this process changed since the last pass: the pass says what each is now. */
  readonly touched: string[];
}

/** What the thread answers: the names of the first pass in pieces, then `built`; later passes' changes. */
export type ProbeReply =
  | { readonly op: 'names'; readonly id: number; readonly keys: string[] }
  | { readonly op: 'built' | 'passed'; readonly id: number; readonly startedAt: number; readonly ms: number; readonly changes: Array<[string, boolean]> }
  | { readonly op: 'failed'; readonly id: number; readonly message: string };

/** The thread's script: beside this module once compiled, or in `dist/` (bundled chunks, specs on `lib/`). */
function probeScript(): URL {
  for (const candidate of ['./repository-probe-thread.js', '../storage/repository-probe-thread.js', '../../dist/storage/repository-probe-thread.js']) {
    const url = new URL(candidate, import.meta.url);
    if (existsSync(fileURLToPath(url))) return url;
  }
  throw new Error('repository-probe-thread.js not found: run the build');
}

/** Index of the first key greater than `key` in sorted `keys`. */
function upperBound(keys: readonly string[], key: string): number {
  let lo = 0;
  let hi = keys.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (keys[mid]! <= key) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Index of the first key not less than `key` in sorted `keys`. */
function lowerBound(keys: readonly string[], key: string): number {
  let lo = 0;
  let hi = keys.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (keys[mid]! < key) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

const nameOf = (key: string): string => key.replaceAll('\0', '/');

/** The repository names of one filesystem storage, in memory. */
export class RepositoryIndex {
  /** Every name as its `pathKey`, sorted: distribution's order is the keys' plain order. */
  private keys: string[] = [];
  private ready = false;
  private worker?: Worker;
  private stopped = false;
  /** This process's changes not yet covered by a pass: name, when, present. */
  private readonly local = new Map<string, { at: number; present: boolean }>();
  private touched = new Set<string>();
  private nextId = 1;
  private incoming: string[] = [];
  /** Passes asked for and not answered: by id, when asked and who waits for it. */
  private readonly waiting = new Map<number, { askedAt: number; waiters: Array<() => void> }>();
  private lastStartedAt = Number.NEGATIVE_INFINITY;
  private lastMs = 0;
  private activeUntil = 0;
  private timer?: NodeJS.Timeout;
  private failing = false;

  private readonly activeMs: number;

  /** `dir`: the absolute path of `repositories/`; `activeMs`: how long passes go on after a page (default a minute). */
  constructor(
    private readonly dir: string,
    private readonly logger?: Logger,
    options: { activeMs?: number } = {},
  ) {
    this.activeMs = options.activeMs ?? ACTIVE_MS;
  }

  /** The gap between passes while the catalog is being asked for. */
  get interval(): number {
    return Math.max(MIN_INTERVAL_MS, DUTY_FACTOR * this.lastMs);
  }

  /**
   * The longest a change made by another process stays out of a page asked for now (ms): the next
   * pass, the slack of its timer, and the second read of a directory changed within its mtime's tick.
   */
  get bound(): number {
    return this.interval + SLACK_MS + RACY_MS;
  }

  /** True once the first pass is in: pages come from memory. */
  get built(): boolean {
    return this.ready;
  }

  /** Starts the thread and its first pass (the build); pages are walked until it is in. */
  start(): void {
    if (this.worker || this.stopped) return;
    let worker: Worker;
    try {
      // The thread needs none of the process's node options (some, like --input-type, make it fail).
      worker = new Worker(probeScript(), { workerData: { dir: this.dir }, execArgv: [] });
    } catch (err) {
      // Pages are walked, as without the index: never a reason not to serve.
      this.logger?.warn('the catalog index could not start; the catalog is walked', { 'err.message': (err as Error).message });
      return;
    }
    worker.on('message', (reply: ProbeReply) => this.received(reply));
    const gone = (why: string): void => {
      if (this.worker !== worker) return;
      this.worker = undefined;
      this.reset();
      if (!this.stopped) this.logger?.warn('the catalog index stopped; the catalog is walked from now on', { reason: why });
      this.release();
    };
    worker.on('error', (err) => gone(err.message));
    worker.on('exit', (code) => gone(`its thread exited with code ${code}`));
    // It never holds the process (after the listeners: a 'message' listener refs the port again);
    // a page waiting for a pass is held by its request.
    worker.unref();
    this.worker = worker;
    void this.pass();
  }

  /** Ends the thread; pages are walked from then on. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    const worker = this.worker;
    this.worker = undefined;
    this.reset();
    this.release();
    await worker?.terminate();
  }

  /**
   * A page (after `last`, at most `n`), fresh as the module's comment says; undefined until the
   * index is built (or once its thread failed): the caller walks the storage instead.
   */
  async page(page: Pick<CatalogPage, 'n' | 'last'>): Promise<string[] | undefined> {
    if (!this.ready) {
      // After a failed pass with no pass to come, this one starts the next attempt at a build.
      if (this.worker && this.waiting.size === 0) void this.pass();
      return undefined;
    }
    const askedAt = monotonicMs();
    const wasActive = askedAt < this.activeUntil;
    this.activeUntil = askedAt + this.activeMs;
    if (askedAt - this.lastStartedAt > this.interval + SLACK_MS) {
      await this.pass(askedAt);
      if (!this.ready) return undefined;
    } else if (!wasActive) this.schedule();
    const start = page.last === undefined ? 0 : upperBound(this.keys, pathKey(page.last));
    const end = page.n === undefined ? this.keys.length : Math.min(this.keys.length, start + page.n);
    return this.keys.slice(start, end).map(nameOf);
  }

  /** This process stored a manifest or tag link in `name`: it is a repository from now on. */
  saw(name: string): void {
    if (!this.worker) return;
    const key = pathKey(name);
    const at = lowerBound(this.keys, key);
    if (this.ready && this.keys[at] === key) return;
    if (this.ready) this.keys.splice(at, 0, key);
    this.changedHere(name, true);
  }

  /** This process deleted `name` (its directory and everything below: nested repositories too). */
  forgot(name: string): void {
    if (!this.worker) return;
    const key = pathKey(name);
    this.changedHere(name, false);
    if (!this.ready) return;
    const from = lowerBound(this.keys, key);
    let to = from;
    while (to < this.keys.length && (this.keys[to] === key || this.keys[to]!.startsWith(`${key}\0`))) this.changedHere(nameOf(this.keys[to++]!), false);
    this.keys.splice(from, to - from);
  }

  private changedHere(name: string, present: boolean): void {
    this.local.set(name, { at: monotonicMs(), present });
    this.touched.add(name);
  }

  /** Asks the thread for a pass; resolves once it is applied (or failed). */
  private pass(askedAt = monotonicMs()): Promise<void> {
    const worker = this.worker;
    if (!worker) return Promise.resolve();
    return new Promise((resolve) => {
      // A pass asked for since `askedAt` will do.
      for (const w of this.waiting.values()) if (w.askedAt >= askedAt) return void w.waiters.push(resolve);
      const id = this.nextId++;
      const touched = [...this.touched];
      this.touched = new Set();
      this.waiting.set(id, { askedAt: monotonicMs(), waiters: [resolve] });
      worker.postMessage({ id, touched } satisfies ProbeRequest);
    });
  }

  /** Lets everyone waiting for a pass go on (they find the index not built, and walk). */
  private release(): void {
    for (const w of this.waiting.values()) for (const resolve of w.waiters) resolve();
    this.waiting.clear();
  }

  private received(reply: ProbeReply): void {
    if (reply.op === 'names') {
      for (const k of reply.keys) this.incoming.push(k);
      return;
    }
    if (reply.op === 'failed') {
      if (!this.failing)
        this.logger?.warn('the catalog index could not read the storage; the catalog is walked until it can', { 'err.message': reply.message });
      this.failing = true;
      this.reset();
    } else {
      if (this.failing) this.logger?.info('the catalog index reads the storage again');
      this.failing = false;
      if (reply.op === 'built') {
        this.keys = this.incoming;
        this.incoming = [];
        this.ready = true;
        this.logger?.info('catalog index built', { repositories: this.keys.length, 'duration.ms': Math.round(reply.ms) });
        // Passes go on until every listing was read twice (RACY_MS), so that the pass the first
        // page waits for is made of stats only; then they stop until a page is asked for.
        this.activeUntil = Math.max(this.activeUntil, monotonicMs() + RACY_MS + MIN_INTERVAL_MS);
        // What this process changed while the thread walked: the walk may have missed it.
        this.apply(
          [...this.local].map(([name, c]) => [name, c.present]),
          Number.NEGATIVE_INFINITY,
          reply.startedAt,
        );
      } else {
        this.apply(reply.changes, reply.startedAt);
        // Averaged: the pass after the build reads every directory again once (RACY_MS), and one
        // slow pass on a loaded machine should not stretch the interval for long.
        this.lastMs = 0.7 * this.lastMs + 0.3 * reply.ms;
      }
      this.lastStartedAt = reply.startedAt;
      for (const [name, c] of this.local) if (c.at < reply.startedAt) this.local.delete(name);
    }
    // Everyone waiting for a pass asked before this one's answer is served by it.
    for (const [id, w] of this.waiting) {
      if (id > reply.id) continue;
      this.waiting.delete(id);
      for (const resolve of w.waiters) resolve();
    }
    this.schedule();
  }

  /**
   * Applies a pass's changes, except a name this process changed after `startedAt` (its own
   * change is newer than what the pass may have seen). With `onlyAfter`, the local changes to
   * replay are those made after it.
   */
  private apply(changes: ReadonlyArray<[string, boolean]>, startedAt: number, onlyAfter?: number): void {
    const add: string[] = [];
    const remove = new Set<string>();
    for (const [name, present] of changes) {
      const mine = this.local.get(name);
      if (onlyAfter !== undefined ? mine === undefined || mine.at <= onlyAfter : mine !== undefined && mine.at > startedAt) continue;
      if (present) add.push(pathKey(name));
      else remove.add(pathKey(name));
    }
    if (add.length + remove.size <= SPLICE_LIMIT) {
      for (const key of remove) {
        const at = lowerBound(this.keys, key);
        if (this.keys[at] === key) this.keys.splice(at, 1);
      }
      for (const key of add) {
        const at = lowerBound(this.keys, key);
        if (this.keys[at] !== key) this.keys.splice(at, 0, key);
      }
      return;
    }
    // Many at once (an operator's clean-up): one merge of two sorted lists.
    add.sort();
    const merged: string[] = [];
    let i = 0;
    let j = 0;
    while (i < this.keys.length || j < add.length) {
      const k = j >= add.length || (i < this.keys.length && this.keys[i]! <= add[j]!) ? this.keys[i++]! : add[j++]!;
      if (!remove.has(k) && merged[merged.length - 1] !== k) merged.push(k);
    }
    this.keys = merged;
  }

  /** The next pass, `interval` after this one, while the catalog is being asked for. */
  private schedule(): void {
    clearTimeout(this.timer);
    if (!this.worker || this.stopped || monotonicMs() >= this.activeUntil) return;
    this.timer = setTimeout(() => void this.pass(), this.interval);
    this.timer.unref();
  }

  private reset(): void {
    this.ready = false;
    this.keys = [];
    this.incoming = [];
  }
}
