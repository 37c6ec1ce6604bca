/**
 * The replicas' leases in a real Redis (Debian's redis-server on a free port): one holder at a
 * time with growing fencing numbers, a holder dead on this host replaced at once, one elsewhere
 * only once its lease expired, a lost lease reported and its successor left alone, releases
 * published to waiters, and Redis down: fetch locks taken without coordination, the expiry lease
 * refused.
 */
import { resolve } from 'node:path';
import { Redis } from 'ioredis';
import { redisConfig } from '../lib/config/redis.js';
import { RedisConnection } from '../lib/coordination/redis-connection.js';
import { RedisLocks } from '../lib/coordination/redis-locks.js';
import { thisProcess } from '../lib/storage/owner.js';
import { spawnChild } from './helpers/children.js';
import { redisAvailable, startRedis, type RedisServer } from './helpers/redis.js';
import { until } from './helpers/until.js';

const KEY = 'blobs/sha256/abc';
const describeRedis = redisAvailable() || process.env.CI ? describe : describe.skip;

describeRedis('leases in Redis', () => {
  let server: RedisServer;
  let connection: RedisConnection;
  let raw: Redis;
  const config = (prefix = `t${Math.random().toString(16).slice(2, 8)}`) =>
    redisConfig({ addr: server.addr, prefix, readtimeout: '500ms', dialtimeout: '500ms' })!;

  beforeAll(async () => {
    server = await startRedis();
  });
  afterAll(() => server?.stop());
  beforeEach(async () => {
    connection = new RedisConnection(config());
    expect(await connection.ready(5000)).toBe(true);
    // A socket to a dead server is destroyed 100 ms after the disconnect (ioredis' default: 2 s, a
    // timer that outlived the file).
    raw = new Redis({ host: server.host, port: server.port, disconnectTimeout: 100 });
  });
  afterEach(async () => {
    await connection.close();
    raw.disconnect();
  });

  test('one holder at a time; each grant has a larger fencing number; the lease names its holder and expires', async () => {
    const locks = new RedisLocks(connection, 2000);
    const first = await locks.tryLease(KEY);
    expect(first).toBeDefined();
    expect(await locks.tryLease(KEY)).toBeUndefined();
    expect(await locks.isHeld(KEY)).toBe(true);
    const value = (await raw.get(connection.key(`lock:${KEY}`)))!;
    expect(JSON.parse(value.slice(0, value.lastIndexOf('#')))).toMatchObject({ ...thisProcess() });
    const ttl = await raw.pttl(connection.key(`lock:${KEY}`));
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(2000);
    await first!.release();
    expect(await locks.isHeld(KEY)).toBe(false);
    const second = await locks.tryLease(KEY);
    expect(second!.fence).toBeGreaterThan(first!.fence);
    await second!.release();
  });

  test('the lease of a process killed with SIGKILL on this host is taken at once; one of another host only once it expired', async () => {
    const script = `Promise.all([import('${resolve('dist/coordination/redis-connection.js')}'), import('${resolve('dist/coordination/redis-locks.js')}'), import('${resolve('dist/config/redis.js')}')]).then(async ([c, l, r]) => {
      const conn = new c.RedisConnection(r.redisConfig({ addr: '${server.addr}', prefix: '${connection.config.prefix}' }));
      await conn.ready(5000);
      const lease = await new l.RedisLocks(conn, 60000).tryLease(${JSON.stringify(KEY)});
      process.stdout.write(lease ? 'held' : 'refused');
    })`;
    const child = spawnChild(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    const locks = new RedisLocks(connection, 2000);
    try {
      expect(await new Promise<string>((r) => child.process.stdout!.once('data', (c: Buffer) => r(c.toString())))).toBe('held');
      expect(await locks.tryLease(KEY)).toBeUndefined();
    } finally {
      await child.kill();
    }
    // Taken at the first attempt, 60 s before the lease expires: the dead holder was recognised.
    const taken = await locks.tryLease(KEY);
    expect(taken).toBeDefined();
    await taken!.release();

    // Another host's holder: only the lease's expiry frees it.
    await raw.set(connection.key(`lock:${KEY}`), `${JSON.stringify({ host: 'elsewhere', pid: 1, start: '1', scope: 'abcdef01', token: 't' })}#1`, 'PX', 5000);
    expect(await locks.tryLease(KEY)).toBeUndefined();
    let later: Awaited<ReturnType<typeof locks.tryLease>>;
    await until(async () => (later = await locks.tryLease(KEY)) !== undefined, "the expiry of the other host's lease", 20_000);
    await later!.release();
  }, 30_000);

  test("a holder that lost its lease is told, and its release leaves the successor's lease alone", async () => {
    const locks = new RedisLocks(connection, 1500);
    const lost: Error[] = [];
    const lease = await locks.tryLease(KEY, (err) => lost.push(err));
    // It stalled past its expiry and another replica took the lease.
    await raw.set(connection.key(`lock:${KEY}`), 'successor', 'PX', 60_000);
    await until(() => lost.length === 1, 'the loss to be noticed', 3000);
    expect(lost[0]!.message).toMatch(/expired or another replica took it over/);
    await lease!.release();
    expect(await raw.get(connection.key(`lock:${KEY}`))).toBe('successor');
  });

  test('a waiter wakes when the holder releases, long before its next poll', async () => {
    const locks = new RedisLocks(connection, 5000);
    const lease = await locks.tryLease(KEY);
    let landed = false;
    const waited = locks.waitWhileHeld(KEY, async () => (landed ? 'landed' : undefined), 10_000);
    await new Promise((r) => setTimeout(r, 300));
    landed = true;
    const released = Date.now();
    await lease!.release();
    expect(await waited).toBe('landed');
    // Woken by the release, not by the next poll (10 s after the wait began); half of that leaves
    // room for a loaded machine.
    expect(Date.now() - released).toBeLessThan(5000);
  });

  test('Redis down: a fetch lock is taken without coordination (and said so), the expiry lease is refused; both work again once it is back', async () => {
    const uncoordinated: string[] = [];
    const locks = new RedisLocks(connection, 2000, { uncoordinated: (key) => uncoordinated.push(key) }, (key) => key === 'scheduler-lease');
    await server.kill();
    await until(() => !connection.available, 'the connection to notice', 5000);
    const started = Date.now();
    const fetchLock = await locks.tryLease(KEY);
    expect(fetchLock).toEqual({ release: expect.any(Function), fence: 0 });
    // At once, not after waiting for Redis to come back (it does not, until started below).
    expect(Date.now() - started).toBeLessThan(5000);
    expect(uncoordinated).toEqual([KEY]);
    expect(await locks.tryLease('scheduler-lease')).toBeUndefined();
    expect(await locks.isHeld(KEY)).toBe(false);
    await server.start();
    expect(await connection.ready(10_000)).toBe(true);
    const lease = await locks.tryLease('scheduler-lease');
    expect(lease?.fence).toBeGreaterThan(0);
    await lease!.release();
  }, 30_000);
});
