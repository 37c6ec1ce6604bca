/**
 * The replicas' locks as leases in Redis (`SharedLocks`, on any storage): one upstream fetch per
 * blob and per manifest across replicas, one expiry runner. A lease is the key
 * `<prefix>:lock:<key>` whose value names its holder (host, pid, start time, scope: owner.ts), a
 * random token and a fencing number (`<prefix>:fence`, incremented at every grant, so a later
 * holder always has a larger one). It expires after `staleMs` unless its holder refreshes it (every
 * `staleMs / 3`); a holder provably dead on this host is replaced at once, by a compare-and-set on
 * the value judged. Refresh and release only act on the holder's own value (Lua), so a holder that
 * stalled past its expiry learns that it lost the lease and never removes its successor's. A release
 * is published on `<prefix>:released`: replicas waiting for the blob look at once instead of at
 * their next poll, and stream it right after it landed.
 *
 * Redis unreachable: a fetch goes on without coordination (each replica may fetch the blob once;
 * `uncoordinated` tells), while keys that must not have two holders (`exclusive`: the expiry lease)
 * are refused, so no expiry runs twice; entries expire late instead.
 */
import { randomUUID } from 'node:crypto';
import type { Cluster, Redis } from 'ioredis';
import { isProvablyDead, parseOwner, thisProcess } from '../storage/owner.js';
import type { Release, SharedLocks } from '../storage/shared-lock.js';
import type { RedisConnection } from './redis-connection.js';

/** Takes the lease if free: KEYS lock, fence; ARGV value-without-fence, ttl. Returns the fence, or 0. */
const ACQUIRE = `if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local f = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. f, 'PX', ARGV[2])
return f`;
/** Replaces the value judged dead: KEYS lock, fence; ARGV old value, new value-without-fence, ttl. */
const TAKEOVER = `if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local f = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[2] .. f, 'PX', ARGV[3])
return f`;
/** KEYS lock; ARGV value, ttl. */
const REFRESH = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0`;
/** KEYS lock, channel; ARGV value, key. */
const RELEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', KEYS[2], ARGV[2])
  return 1
end
return 0`;

interface LockCommands {
  mirrorAcquire(lock: string, fence: string, value: string, ttl: number): Promise<number>;
  mirrorTakeover(lock: string, fence: string, old: string, value: string, ttl: number): Promise<number>;
  mirrorRefresh(lock: string, value: string, ttl: number): Promise<number>;
  mirrorRelease(lock: string, channel: string, value: string, key: string): Promise<number>;
}

/** What the leases report. */
export interface RedisLockEvents {
  /** A held lease was lost (its holder stalled past its expiry, or Redis lost it). */
  compromised?(key: string, err: Error): void;
  /** `key` was taken without coordination because Redis did not answer. */
  uncoordinated?(key: string, err: Error): void;
}

/** A lease with its fencing number. */
export interface Lease {
  readonly release: Release;
  /** Larger for every later grant of any lease of this cache. */
  readonly fence: number;
}

/** Leases in Redis. */
export class RedisLocks implements SharedLocks {
  private readonly redis: (Redis | Cluster) & LockCommands;
  private readonly waiters = new Map<string, Set<() => void>>();
  private unsubscribe?: () => void;

  constructor(
    private readonly connection: RedisConnection,
    readonly staleMs: number,
    private readonly events: RedisLockEvents = {},
    /** Keys never taken without Redis (the expiry lease). */
    private readonly exclusive: (key: string) => boolean = () => false,
  ) {
    const client = connection.client;
    client.defineCommand('mirrorAcquire', { numberOfKeys: 2, lua: ACQUIRE });
    client.defineCommand('mirrorTakeover', { numberOfKeys: 2, lua: TAKEOVER });
    client.defineCommand('mirrorRefresh', { numberOfKeys: 1, lua: REFRESH });
    client.defineCommand('mirrorRelease', { numberOfKeys: 2, lua: RELEASE });
    this.redis = client as (Redis | Cluster) & LockCommands;
  }

  private lockKey(key: string): string {
    return this.connection.key(`lock:${key}`);
  }

  private get channel(): string {
    return this.connection.key('released');
  }

  async tryAcquire(key: string, compromised?: (err: Error) => void): Promise<Release | undefined> {
    return (await this.tryLease(key, compromised))?.release;
  }

  /** `tryAcquire` with the fencing number of the grant (0 when taken without coordination). */
  async tryLease(key: string, compromised?: (err: Error) => void): Promise<Lease | undefined> {
    const lock = this.lockKey(key);
    const fenceKey = this.connection.key('fence');
    const owner = `${JSON.stringify({ ...thisProcess(), token: randomUUID() })}#`;
    try {
      let fence = await this.redis.mirrorAcquire(lock, fenceKey, owner, this.staleMs);
      if (fence === 0) {
        const current = await this.redis.get(lock);
        if (current === null || !(await holderIsDead(current))) return undefined;
        fence = await this.redis.mirrorTakeover(lock, fenceKey, current, owner, this.staleMs);
        if (fence === 0) return undefined;
      }
      const value = `${owner}${fence}`;
      return { release: this.hold(key, lock, value, compromised ?? ((e) => this.events.compromised?.(key, e))), fence };
    } catch (err) {
      if (this.exclusive(key)) return undefined;
      this.events.uncoordinated?.(key, err instanceof Error ? err : new Error(String(err)));
      return { release: async () => undefined, fence: 0 };
    }
  }

  /** Refreshes the lease until released; reports its loss. */
  private hold(key: string, lock: string, value: string, compromised: (err: Error) => void): Release {
    let released = false;
    let lastRefresh = Date.now();
    const lost = (why: string): void => {
      if (released) return;
      released = true;
      clearInterval(timer);
      compromised(Object.assign(new Error(`lock ${key} lost: ${why}`), { code: 'ECOMPROMISED' }));
    };
    const timer = setInterval(
      () => {
        this.redis.mirrorRefresh(lock, value, this.staleMs).then(
          (ok) => {
            if (ok === 1) lastRefresh = Date.now();
            else lost('it expired or another replica took it over');
          },
          (err: Error) => {
            // Redis unreachable: the lease may expire meanwhile.
            if (Date.now() - lastRefresh > this.staleMs) lost(`Redis did not answer for ${this.staleMs} ms: ${err.message}`);
          },
        );
      },
      Math.max(200, Math.floor(this.staleMs / 3)),
    );
    timer.unref();
    return async () => {
      if (released) return;
      released = true;
      clearInterval(timer);
      await this.redis.mirrorRelease(lock, this.channel, value, key).catch(() => undefined);
    };
  }

  async isHeld(key: string): Promise<boolean> {
    try {
      const current = await this.redis.get(this.lockKey(key));
      return current !== null && !(await holderIsDead(current));
    } catch {
      // Redis down: nobody coordinates; the caller fetches itself.
      return false;
    }
  }

  async waitWhileHeld<T>(key: string, landed: () => Promise<T | undefined>, intervalMs: number): Promise<T | undefined> {
    this.unsubscribe ??= this.connection.subscribe(this.channel, (released) => {
      for (const wake of this.waiters.get(released) ?? []) wake();
    });
    // Releases are published: polling is only the fallback for a missed message.
    const poll = Math.max(intervalMs, 1000);
    for (;;) {
      let wake!: () => void;
      const woken = new Promise<void>((r) => (wake = r));
      let set = this.waiters.get(key);
      if (!set) this.waiters.set(key, (set = new Set()));
      set.add(wake);
      const timer = setTimeout(wake, poll);
      try {
        await woken;
      } finally {
        clearTimeout(timer);
        set.delete(wake);
        if (set.size === 0) this.waiters.delete(key);
      }
      const result = await landed();
      if (result !== undefined) return result;
      if (!(await this.isHeld(key))) return undefined;
    }
  }
}

/** Whether the holder a lease value names is provably dead on this host. */
async function holderIsDead(value: string): Promise<boolean> {
  try {
    const owner = parseOwner(JSON.parse(value.slice(0, value.lastIndexOf('#'))));
    return owner !== undefined && (await isProvablyDead(owner));
  } catch {
    return false;
  }
}
