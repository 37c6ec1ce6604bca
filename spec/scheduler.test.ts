/**
 * The TTL scheduler: distribution's scheduler-state.json format both ways, expiry on time and across
 * restarts, retries instead of leaks, and corrupt state files that never stop the registry.
 */
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TtlScheduler, parseKey, type Entry } from '../lib/expiry/scheduler.js';
import type { Changes } from '../lib/expiry/state-file.js';
import { readState } from '../lib/expiry/state-load.js';
import { formatGoTime, parseGoTime } from '../lib/expiry/state-entry.js';
import { FileStateStore } from '../lib/expiry/state-store.js';
import { DirectoryLocks } from '../lib/storage/shared-lock.js';
import { until } from './helpers/until.js';

const HEX = '1525a3b8c7d81ce81e9b3cf8a3f1b2c2c8ddfc6c2a9f0f0e1d7b1c1a2b3c4d5e';
const OFFICIAL = `{"library/busybox@sha256:${HEX}":{"Key":"library/busybox@sha256:${HEX}","ExpiryData":"2026-11-29T13:56:09.412177087Z","EntryType":0},"library/busybox@sha256:${'b'.repeat(64)}":{"Key":"library/busybox@sha256:${'b'.repeat(64)}","ExpiryData":"2026-11-29T14:56:09+01:00","EntryType":1}}`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * A clock the test moves: what is due is decided by it, not by how fast this machine runs the
 * timers (a timer that fires early finds nothing due and is armed again).
 */
function testClock(): { now: () => number; advance(ms: number): void } {
  let t = Date.now();
  return { now: () => t, advance: (ms) => void (t += ms) };
}

describe('TTL scheduler', () => {
  let dir: string;
  let state: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sched-'));
    state = join(dir, 'scheduler-state.json');
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  const scheduler = (onExpire: (e: Entry) => Promise<void>, extra: Partial<ConstructorParameters<typeof TtlScheduler>[0]> = {}) =>
    new TtlScheduler({ statePath: state, onExpire, flushIntervalMs: 20, ...extra });

  test('a state file written by distribution is read, and ours is in its format', async () => {
    await writeFile(state, OFFICIAL);
    const { entries, problem } = await readState(state);
    expect(problem).toBeUndefined();
    expect(entries.get(`library/busybox@sha256:${HEX}`)).toEqual({
      key: `library/busybox@sha256:${HEX}`,
      expiry: new Date('2026-11-29T13:56:09.412Z'),
      type: 'blob',
    });
    expect(entries.get(`library/busybox@sha256:${'b'.repeat(64)}`)?.expiry.toISOString()).toBe('2026-11-29T13:56:09.000Z');
    const s = scheduler(async () => undefined);
    await s.start();
    s.add('org/app', `sha256:${'c'.repeat(64)}`, 'manifest', 3600_000);
    await s.stop();
    const written = JSON.parse(await readFile(state, 'utf8')) as Record<string, { Key: string; ExpiryData: string; EntryType: number }>;
    // An entry not changed is copied as distribution wrote it, nanoseconds included.
    expect(written[`library/busybox@sha256:${HEX}`]).toEqual({
      Key: `library/busybox@sha256:${HEX}`,
      ExpiryData: '2026-11-29T13:56:09.412177087Z',
      EntryType: 0,
    });
    expect(written[`org/app@sha256:${'c'.repeat(64)}`]!.EntryType).toBe(1);
    expect(formatGoTime(new Date('2026-01-01T00:00:00.000Z'))).toBe('2026-01-01T00:00:00Z');
    expect(formatGoTime(new Date('2026-01-01T00:00:00.120Z'))).toBe('2026-01-01T00:00:00.12Z');
    expect(parseGoTime('2026-11-29T14:56:09.5-01:30')?.toISOString()).toBe('2026-11-29T16:26:09.500Z');
    expect(parseGoTime('2026-11-29 14:56:09Z')).toBeUndefined();
    expect(parseGoTime('2026-11-29T13:56:09.412177087Z')?.getTime()).toBe(Date.parse('2026-11-29T13:56:09.412Z'));
    expect(parseKey('a/b@sha256:x')).toEqual({ repo: 'a/b', digest: 'sha256:x' });
  });

  test('entries expire on time, and a restart fires what came due while stopped', async () => {
    const expired: string[] = [];
    const clock = testClock();
    const s = scheduler(async (e) => void expired.push(e.key), { now: clock.now });
    await s.start();
    s.add('a', 'sha256:1', 'blob', 50);
    s.add('b', 'sha256:2', 'blob', 5000);
    await sleep(100);
    expect(expired).toEqual([]);
    clock.advance(200);
    await until(() => expired.length > 0, 'the first expiry');
    await sleep(100);
    expect(expired).toEqual(['a@sha256:1']);
    await s.stop();
    const again = scheduler(async (e) => void expired.push(e.key), { now: () => clock.now() + 10_000 });
    expect(await again.start()).toEqual({ loaded: 1 });
    expect(expired).toEqual(['a@sha256:1']);
    await until(() => expired.length === 2, 'the expiry come due while stopped');
    expect(expired).toEqual(['a@sha256:1', 'b@sha256:2']);
    await again.stop();
    expect(JSON.parse(await readFile(state, 'utf8'))).toEqual({});
  });

  test('a failing expiry is kept and retried, not dropped', async () => {
    let calls = 0;
    const clock = testClock();
    const s = scheduler(
      async () => {
        calls++;
        if (calls === 1) throw new Error('disk busy');
      },
      { retryMs: 400, now: clock.now },
    );
    await s.start();
    s.add('a', 'sha256:1', 'blob', 10);
    clock.advance(10);
    await until(() => s.get('a@sha256:1')!.expiry.getTime() > clock.now(), 'the failed expiry');
    expect(calls).toBe(1);
    expect(s.get('a@sha256:1')!.expiry.getTime()).toBe(clock.now() + 400);
    await sleep(500);
    expect(calls).toBe(1);
    clock.advance(400);
    await until(() => !s.has('a@sha256:1'), 'the retried expiry');
    expect(calls).toBe(2);
    await s.stop();
  });

  test('repeated failures back off, doubling up to the cap', async () => {
    let calls = 0;
    const clock = testClock();
    const s = scheduler(
      async () => {
        calls++;
        if (calls < 4) throw new Error('still busy');
      },
      { retryMs: 60, maxRetryMs: 130, now: clock.now },
    );
    await s.start();
    s.add('a', 'sha256:1', 'blob', 1);
    clock.advance(1);
    // Each failure moves the entry to now + the delay: 60, doubled to 120, capped at 130.
    for (const [n, delay] of [
      [1, 60],
      [2, 120],
      [3, 130],
    ] as const) {
      await until(() => calls === n && s.get('a@sha256:1')!.expiry.getTime() > clock.now(), `failure ${n}`);
      expect(s.get('a@sha256:1')!.expiry.getTime()).toBe(clock.now() + delay);
      clock.advance(delay);
    }
    await until(() => s.size === 0, 'the fourth attempt');
    expect(calls).toBe(4);
    await s.stop();
  });

  test('at most four expiries run at once, never two for one key', async () => {
    let active = 0;
    let peak = 0;
    const seen = new Map<string, number>();
    const s = scheduler(async (e) => {
      active++;
      peak = Math.max(peak, active);
      seen.set(e.key, (seen.get(e.key) ?? 0) + 1);
      await sleep(30);
      active--;
    });
    await s.start();
    for (let i = 0; i < 12; i++) s.add(`r${i}`, 'sha256:1', 'blob', 1);
    await until(() => seen.size === 12 && s.size === 0, 'the twelve expiries');
    expect(peak).toBe(4);
    expect(seen.size).toBe(12);
    expect([...seen.values()].every((n) => n === 1)).toBe(true);
    expect(s.size).toBe(0);
    await s.stop();
  });

  test('touch extends an expiry', async () => {
    const expired: string[] = [];
    const clock = testClock();
    const s = scheduler(async (e) => void expired.push(e.key), { now: clock.now });
    await s.start();
    s.add('a', 'sha256:1', 'blob', 100);
    clock.advance(60);
    s.touch('a', 'sha256:1', 'blob', 300);
    clock.advance(100);
    // Past the first expiry, before the extended one: the timers fire and find nothing due.
    await sleep(200);
    expect(expired).toEqual([]);
    clock.advance(300);
    await until(() => expired.length > 0, 'the extended expiry');
    expect(expired).toEqual(['a@sha256:1']);
    await s.stop();
  });

  test('a schedule stopped before its start (a registry closed during start-up) starts no writer thread and no timer', async () => {
    const before = process.getActiveResourcesInfo().filter((r) => r === 'MessagePort').length;
    const locks = new DirectoryLocks(dir, 2000);
    const s = new TtlScheduler({ statePath: state, onExpire: async () => undefined, shared: { locks } });
    const starting = s.start();
    await s.stop();
    expect(await starting).toEqual({ loaded: 0 });
    await sleep(100);
    // A thread left running keeps the process from exiting (jest: "a worker process has failed to exit").
    expect(process.getActiveResourcesInfo().filter((r) => r === 'MessagePort').length).toBe(before);
  });

  test('a hit never creates an entry: touch of content that is not scheduled leaves it unscheduled', async () => {
    const s = scheduler(async () => undefined);
    await s.start();
    s.touch('a', 'sha256:1', 'blob', 300);
    expect(s.has('a@sha256:1')).toBe(false);
    await s.stop();
    expect((await readState(state)).entries.size).toBe(0);
  });

  test('shared mode: a hit on an entry another replica scheduled extends it in the file, and creates none', async () => {
    const locks = new DirectoryLocks(dir, 2000);
    const a = new TtlScheduler({ statePath: state, onExpire: async () => undefined, flushIntervalMs: 20, shared: { locks } });
    const b = new TtlScheduler({ statePath: state, onExpire: async () => undefined, flushIntervalMs: 20, shared: { locks } });
    await a.start();
    await b.start();
    try {
      // a schedules after b has read the file: b does not know the entry.
      a.add('repo/a', 'sha256:aa', 'blob', 60_000);
      await a.flush();
      const first = (await readState(state)).entries.get('repo/a@sha256:aa')!.expiry.getTime();
      await sleep(30);
      b.touch('repo/a', 'sha256:aa', 'blob', 3600_000);
      b.touch('repo/never', 'sha256:bb', 'blob', 3600_000);
      // b reports the hits in its journal; a, the lease holder, applies them to what it has.
      await b.flush();
      await a.flush();
      const entries = (await readState(state)).entries;
      expect(entries.get('repo/a@sha256:aa')!.expiry.getTime()).toBeGreaterThan(first + 3000_000);
      expect(entries.has('repo/never@sha256:bb')).toBe(false);
      expect(a.get('repo/a@sha256:aa')!.expiry.getTime()).toBeGreaterThan(first + 3000_000);
      expect(a.has('repo/never@sha256:bb')).toBe(false);
    } finally {
      await a.stop();
      await b.stop();
    }
  });

  test.each([
    ['purged (the report was older than the purge): dropped, not expired a second time', false],
    ['linked again (a pull after the purge): kept with its new time', true],
  ])('shared mode: an entry a replica renews while the holder expires it, its content %s', async (_kind, relinked) => {
    const locks = new DirectoryLocks(dir, 2000);
    const key = 'repo/a@sha256:aa';
    let started!: () => void;
    const expiring = new Promise<void>((r) => (started = r));
    let finish!: () => void;
    const purged = new Promise<void>((r) => (finish = r));
    let asked = false;
    const expired: string[] = [];
    const a = new TtlScheduler({
      statePath: state,
      flushIntervalMs: 20,
      onExpire: async (e) => {
        expired.push(e.key);
        started();
        await purged;
      },
      stillCached: async () => {
        asked = true;
        return relinked;
      },
      shared: { locks },
    });
    const b = new TtlScheduler({ statePath: state, onExpire: async () => undefined, flushIntervalMs: 20, shared: { locks } });
    await a.start();
    await b.start();
    try {
      a.add('repo/a', 'sha256:aa', 'blob', 20);
      await expiring;
      // b served a hit (it does not know the entry: a hit for the holder) while a purges the content.
      b.touch('repo/a', 'sha256:aa', 'blob', 3600_000);
      await b.flush();
      await a.flush();
      expect(a.get(key)!.expiry.getTime()).toBeGreaterThan(Date.now() + 3000_000);
      finish();
      // After the purge, the holder asks whether the content is still linked.
      await until(() => asked, 'the question whether the content is still linked');
      await new Promise((r) => setImmediate(r));
      await a.flush();
      expect(a.has(key)).toBe(relinked);
      expect((await readState(state)).entries.has(key)).toBe(relinked);
      expect(expired).toEqual([key]);
    } finally {
      finish();
      await a.stop();
      await b.stop();
    }
  });

  test.each([
    ['empty', ''],
    ['truncated', OFFICIAL.slice(0, 80)],
    ['garbage', Buffer.from([0x00, 0xff, 0xfe, 0x10, 0x80, 0x7b])],
    ['whitespace-only', '  \n'],
    ['a JSON string', '"hello"'],
    ['an array', '[1,2,3]'],
  ])('a state file that is %s is set aside and the schedule rebuilt', async (_kind, content) => {
    await writeFile(state, content);
    const s = scheduler(async () => undefined);
    const { problem, loaded } = await s.start();
    expect(problem).toMatch(/moved to/);
    expect(loaded).toBe(0);
    expect((await readdir(dir)).some((n) => n.startsWith('scheduler-state.json.corrupt-'))).toBe(true);
    s.rebuild([{ repo: 'a', digest: 'sha256:1', type: 'blob' }], 60_000);
    expect(s.has('a@sha256:1')).toBe(true);
    await s.stop();
    expect(Object.keys(JSON.parse(await readFile(state, 'utf8')))).toEqual(['a@sha256:1']);
  });

  test('a state file with a bad entry is set aside, the rest loaded and written back', async () => {
    const future = '2030-01-01T00:00:00Z';
    await writeFile(
      state,
      JSON.stringify({
        'a@sha256:1': { Key: 'a@sha256:1', ExpiryData: 'not a time', EntryType: 0 },
        'b@sha256:2': { Key: 'b@sha256:2', ExpiryData: future, EntryType: 1 },
      }),
    );
    const s = scheduler(async () => undefined);
    const { problem, loaded } = await s.start();
    expect(problem).toMatch(/1 malformed entry.*moved to/);
    expect(loaded).toBe(1);
    expect((await readdir(dir)).some((n) => n.startsWith('scheduler-state.json.corrupt-'))).toBe(true);
    s.rebuild(
      [
        { repo: 'a', digest: 'sha256:1', type: 'blob' },
        { repo: 'b', digest: 'sha256:2', type: 'manifest' },
      ],
      60_000,
    );
    expect(s.get('b@sha256:2')?.expiry.toISOString()).toBe('2030-01-01T00:00:00.000Z');
    await s.stop();
    const written = JSON.parse(await readFile(state, 'utf8')) as Record<string, { ExpiryData: string; EntryType: number }>;
    expect(Object.keys(written).sort()).toEqual(['a@sha256:1', 'b@sha256:2']);
    expect(written['b@sha256:2']).toMatchObject({ ExpiryData: future, EntryType: 1 });
  });

  test('malformed entries are skipped with a note', async () => {
    await writeFile(
      state,
      JSON.stringify({
        'a@sha256:1': { Key: 'a@sha256:1', ExpiryData: 'tomorrow', EntryType: 0 },
        'b@sha256:2': { Key: 'b@sha256:2', ExpiryData: '2030-01-01T00:00:00Z', EntryType: 1 },
      }),
    );
    const { entries, problem } = await readState(state);
    expect([...entries.keys()]).toEqual(['b@sha256:2']);
    expect(problem).toMatch(/1 malformed entry/);
  });

  test('two processes flushing one file never leave invalid JSON', async () => {
    const a = scheduler(async () => undefined);
    const b = scheduler(async () => undefined);
    await a.start();
    await b.start();
    let reads = 0;
    const writes = Array.from({ length: 300 }, async (_, i) => {
      (i % 2 ? a : b).add(`r${i}`, 'sha256:1', 'blob', 60_000);
      await (i % 2 ? a : b).flush();
      const text = await readFile(state, 'utf8');
      JSON.parse(text);
      reads++;
    });
    await Promise.all(writes);
    expect(reads).toBe(300);
    expect((await readdir(dir)).filter((n) => n.endsWith('.tmp') || n.endsWith('.lock'))).toEqual([]);
    await a.stop();
    await b.stop();
  });

  test('many changes cause few writes', async () => {
    let writes = 0;
    const store = new (class extends FileStateStore {
      override write(changes: Changes, opts?: { replace?: boolean }) {
        writes++;
        return super.write(changes, opts);
      }
    })(state);
    const s = scheduler(async () => undefined, { flushIntervalMs: 100, store });
    await s.start();
    for (let i = 0; i < 500; i++) {
      s.add(`r${i}`, 'sha256:1', 'blob', 60_000);
      if (i % 100 === 0) await sleep(10);
    }
    // On a loaded machine the loop outlasts several flush intervals: wait for the file, then count.
    const written = (): number => {
      try {
        return Object.keys(JSON.parse(readFileSync(state, 'utf8')) as object).length;
      } catch {
        return 0;
      }
    };
    await until(() => written() === 500, 'all 500 entries in the state file');
    expect(writes).toBeGreaterThanOrEqual(1);
    expect(writes).toBeLessThanOrEqual(2);
    await s.stop();
    expect(writes).toBeLessThanOrEqual(2);
  });

  test('shared mode: the lease holder whose writes are slow rewrites the file at most every 19 times a write, however often things change', async () => {
    const WRITE_MS = 100;
    let writes = 0;
    const store = new (class extends FileStateStore {
      // A write that takes WRITE_MS (a large file's): the schedule reads its duration from the result.
      override async write(changes: Changes, opts?: { replace?: boolean }) {
        writes++;
        await sleep(WRITE_MS);
        const r = await super.write(changes, opts);
        return { ...r, ms: r.ms + WRITE_MS };
      }
    })(state);
    const s = scheduler(async () => undefined, { flushIntervalMs: 20, store, shared: { locks: new DirectoryLocks(dir, 2000) } });
    await s.start();
    try {
      expect(s.expiring).toBe(true);
      const started = Date.now();
      for (let i = 0; i < 150; i++) {
        s.add(`r${i}`, 'sha256:1', 'blob', 60_000);
        await sleep(20);
      }
      const elapsed = Date.now() - started;
      // One write at the first change, then one per stretched interval (19 x 100 ms) at most.
      expect(writes).toBeLessThanOrEqual(2 + Math.floor(elapsed / (19 * WRITE_MS)));
      await s.stop();
      expect((await readState(state)).entries.size).toBe(150);
    } finally {
      await s.stop();
    }
  });

  test('shared mode: two processes merge their entries, removals are not undone, one holds the expiry lease until it stops', async () => {
    const locks = new DirectoryLocks(dir, 2000);
    const expired: string[] = [];
    const a = new TtlScheduler({ statePath: state, onExpire: async (e) => void expired.push(`a ${e.key}`), flushIntervalMs: 20, shared: { locks } });
    await a.start();
    const b = new TtlScheduler({ statePath: state, onExpire: async (e) => void expired.push(`b ${e.key}`), flushIntervalMs: 20, shared: { locks } });
    await b.start();
    try {
      expect([a.expiring, b.expiring]).toEqual([true, false]);
      a.add('repo/a', 'sha256:aa', 'blob', 3600_000);
      b.add('repo/b', 'sha256:bb', 'manifest', 3600_000);
      b.add('repo/gone', 'sha256:cc', 'blob', 3600_000);
      await b.flush();
      await a.flush();
      expect([...(await readState(state)).entries.keys()].sort()).toEqual(['repo/a@sha256:aa', 'repo/b@sha256:bb', 'repo/gone@sha256:cc']);
      // a learnt of b's entries, removes one; b's next write must not bring it back.
      a.remove('repo/gone@sha256:cc');
      await a.flush();
      b.add('repo/b2', 'sha256:dd', 'blob', 3600_000);
      // b writes its journal, a (the lease holder) takes it into the file.
      await b.flush();
      await a.flush();
      expect([...(await readState(state)).entries.keys()].sort()).toEqual(['repo/a@sha256:aa', 'repo/b2@sha256:dd', 'repo/b@sha256:bb']);
      // Only the lease holder expires, whoever scheduled the entry.
      b.add('repo/soon', 'sha256:ee', 'blob', 50);
      await b.flush();
      await a.flush();
      await until(() => expired.length > 0, 'the expiry of repo/soon');
      expect(expired).toEqual(['a repo/soon@sha256:ee']);
      await a.stop();
      const deadline = Date.now() + 20_000;
      while (!b.expiring && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      expect(b.expiring).toBe(true);
    } finally {
      await a.stop();
      await b.stop();
    }
  });
});
