/**
 * The hot path's memory of what storage said: "repository R links blob D of N bytes", "repository R
 * has manifest D with these bytes". A cache hit answers without the link read and the data `stat`
 * (on S3 two round trips to the object store) a cold lookup costs.
 *
 * Correctness, in two parts:
 * - **Changes made by this process** (expiry, size-cap eviction, hosted deletes, untagging, an
 *   in-process garbage collection) all remove something through the storage driver's `delete`:
 *   `invalidatingDriver` clears the cache before and after every delete, and a lookup that was
 *   under way across a delete does not fill the cache (the epoch it started in is gone), so a stale
 *   entry can never outlive a delete of this process.
 * - **Changes made by other processes** (another replica on the same volume or bucket, a
 *   `registry garbage-collect` run) are not revalidated: entries are short-lived instead, at most
 *   `ttlMs` old (default 1 s), so such a change is seen within that bound. A cached blob whose file
 *   is gone meanwhile is found out when it is opened (the route then answers 404).
 *
 * Bounded by count (least recently used goes first) and by the bytes of manifest payloads it holds.
 */
import { withOverrides, type StorageDriver } from './driver.js';

/** What is remembered of one (repository, digest). */
type Descriptor = { readonly kind: 'blob'; readonly size: number } | { readonly kind: 'manifest'; readonly mediaType: string; readonly payload: Buffer };

/** Sizes and lifetime of a descriptor cache. */
interface DescriptorCacheOptions {
  /** Entries kept at most (default 10,000). */
  readonly maxEntries?: number;
  /** Bytes of manifest payloads kept at most (default 64 MiB). */
  readonly maxPayloadBytes?: number;
  /** How long an entry is trusted: the bound on seeing another process's change (default 1000 ms). */
  readonly ttlMs?: number;
  /** The clock (tests). */
  readonly now?: () => number;
}

interface Entry {
  readonly value: Descriptor;
  readonly expires: number;
  /** A refresh of this entry is under way. */
  refreshing?: boolean;
}

/** An LRU of descriptors keyed by repository and digest, emptied by every delete of this process. */
export class DescriptorCache {
  private readonly entries = new Map<string, Entry>();
  private readonly maxEntries: number;
  private readonly maxPayloadBytes: number;
  private readonly ttlMs: number;
  private readonly now: () => number;
  private payloadBytes = 0;
  private epochValue = 0;

  constructor(options: DescriptorCacheOptions = {}) {
    this.maxEntries = options.maxEntries ?? 10_000;
    this.maxPayloadBytes = options.maxPayloadBytes ?? 64 * 2 ** 20;
    this.ttlMs = options.ttlMs ?? 1000;
    this.now = options.now ?? Date.now;
  }

  /** Changes at every invalidation: a lookup started in an older epoch must not fill the cache. */
  get epoch(): number {
    return this.epochValue;
  }

  /** Entries held (tests, metrics). */
  get size(): number {
    return this.entries.size;
  }

  /**
   * The descriptor of `digest` in `repo`, if known and still fresh. Past half its lifetime, the
   * first hit also calls `refresh` (once), which asks storage again and, if storage still says so,
   * sets a new entry: a hot entry is renewed in the background, so no request waits for the
   * lookup, and what is served was confirmed by storage less than `ttlMs` ago.
   */
  get(repo: string, digest: string, refresh?: () => void): Descriptor | undefined {
    const key = keyOf(repo, digest);
    const e = this.entries.get(key);
    if (!e) return undefined;
    const now = this.now();
    if (e.expires <= now) {
      this.remove(key, e);
      return undefined;
    }
    if (refresh && !e.refreshing && e.expires - now < this.ttlMs / 2) {
      e.refreshing = true;
      refresh();
    }
    // Most recently used goes to the end (Map keeps insertion order).
    this.entries.delete(key);
    this.entries.set(key, e);
    return e.value;
  }

  /** Remembers what storage said during a lookup that began at `epoch`; ignored if anything was deleted since. */
  set(repo: string, digest: string, value: Descriptor, epoch: number): void {
    if (epoch !== this.epochValue) return;
    const bytes = value.kind === 'manifest' ? value.payload.length : 0;
    if (bytes > this.maxPayloadBytes / 16) return;
    const key = keyOf(repo, digest);
    const old = this.entries.get(key);
    if (old) this.remove(key, old);
    this.entries.set(key, { value, expires: this.now() + this.ttlMs });
    this.payloadBytes += bytes;
    while (this.entries.size > this.maxEntries || this.payloadBytes > this.maxPayloadBytes) {
      const [oldestKey, oldest] = this.entries.entries().next().value as [string, Entry];
      this.remove(oldestKey, oldest);
    }
  }

  /** Forgets one entry (its content turned out to be gone). */
  forget(repo: string, digest: string): void {
    const key = keyOf(repo, digest);
    const e = this.entries.get(key);
    if (e) this.remove(key, e);
  }

  /**
   * Forgets everything: something was deleted. Deletes are rare next to reads (expiry, eviction,
   * hosted deletes), and the cache is bounded, so emptying it costs less than working out which
   * entries a deleted path concerned.
   */
  invalidate(): void {
    this.epochValue++;
    this.entries.clear();
    this.payloadBytes = 0;
  }

  private remove(key: string, e: Entry): void {
    this.entries.delete(key);
    if (e.value.kind === 'manifest') this.payloadBytes -= e.value.payload.length;
  }
}

function keyOf(repo: string, digest: string): string {
  return `${repo}@${digest}`;
}

/**
 * `driver` with every `delete` invalidating `cache`, before (no lookup starting during the delete
 * fills it) and after (nothing read before it survives). Every other method is the driver's own.
 */
export function invalidatingDriver<D extends StorageDriver>(driver: D, cache: DescriptorCache): D {
  const del = async (path: string): Promise<void> => {
    cache.invalidate();
    try {
      await driver.delete(path);
    } finally {
      cache.invalidate();
    }
  };
  return withOverrides(driver, { delete: del });
}
