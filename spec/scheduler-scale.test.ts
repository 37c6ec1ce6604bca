/**
 * The schedule at the size of a cache that has run for months: the index's order, a load and a
 * write of 100,000 entries that never hold the event loop (checked by its delay, not by the wall
 * time of the test), a file complete in registry:2's format at every moment, no entry older than
 * the flush interval lost across kill -9, and replicas whose changes travel as journals.
 */
import { mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { ExpiryIndex } from '../lib/expiry/expiry-index.js';
import { TtlScheduler } from '../lib/expiry/scheduler.js';
import { readState } from '../lib/expiry/state-load.js';
import { DirectoryLocks } from '../lib/storage/shared-lock.js';
import { spawnChild } from './helpers/children.js';
import { until } from './helpers/until.js';
import request from 'supertest';
import { startFakeUpstream } from './helpers/fake-upstream.js';
import { startMirror } from './helpers/mirror.js';

const hex = (i: number): string => i.toString(16).padStart(64, '0');
const DAY = 24 * 3600_000;

/** A state file as registry:2 writes it, with `n` entries expiring over the next week. */
async function writeBigState(path: string, n: number): Promise<void> {
  const now = Date.now();
  const parts: string[] = [];
  for (let i = 0; i < n; i++) {
    const key = `team-${i % 50}/app-${Math.floor(i / 50)}@sha256:${hex(i)}`;
    parts.push(`"${key}":{"Key":"${key}","ExpiryData":"${new Date(now + DAY + ((i * 7919) % (6 * DAY))).toISOString()}","EntryType":${i % 5 === 0 ? 1 : 0}}`);
  }
  await writeFile(path, `{${parts.join(',')}}`);
}

/**
 * Runs `work` while the event loop's delay is recorded and a local HTTP server is asked for a tiny
 * answer again and again (the concurrent requests); resolves with the largest delay seen (ms), the
 * slowest answer (ms, for the failure message) and the number of answers.
 */
async function underWatch(work: () => Promise<void>): Promise<{ maxDelayMs: number; slowestRequestMs: number; requests: number }> {
  const server = http.createServer((_req, res) => res.end('ok'));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  let running = true;
  let slowest = 0;
  let requests = 0;
  const client = (async () => {
    while (running) {
      const t = performance.now();
      await new Promise<void>((r) => http.get({ port, host: '127.0.0.1', agent }, (res) => res.resume().on('end', r)).on('error', () => r()));
      slowest = Math.max(slowest, performance.now() - t);
      requests++;
    }
  })();
  const h = monitorEventLoopDelay({ resolution: 5 });
  h.enable();
  try {
    await work();
  } finally {
    h.disable();
    running = false;
    await client;
    agent.destroy();
    await new Promise((r) => server.close(r));
  }
  return { maxDelayMs: h.max / 1e6, slowestRequestMs: slowest, requests };
}

/**
 * The bound on the event loop's delay. The old implementation held the loop for the whole
 * `JSON.stringify` of the schedule at every write (24 MB at 100,000 entries: 820-1,410 ms here,
 * measured alone) and for the `JSON.parse` of its load. Now the loop only hands the changes to the
 * writer thread, and parses the file in 64 KiB slices of a few milliseconds; the bound leaves room
 * for a machine shared with other work (delays over 100 ms were seen here at a load average of 14,
 * the writer thread and other processes taking both cores).
 */
const BOUND_MS = 200;

/**
 * The bound under load: a loaded machine stretches every delay, so the bound is also a third of
 * what holding the loop for the whole work (the old implementation) costs now, measured in the same
 * test: `JSON.parse` or `JSON.stringify` of the same schedule at once. The old implementation's
 * delay is that whole hold, whatever the load; the sliced one stays far below it.
 */
function boundNow(hold: () => unknown): number {
  const t = performance.now();
  hold();
  return Math.max(BOUND_MS, (performance.now() - t) / 3);
}

/**
 * Runs `measure` and, if its delay reaches `bound`, once more: a hold of the loop by the code under
 * test recurs on every try, while a stall of the machine (the OS running the hog or the other test
 * worker, a collection) seldom lands twice. Resolves with the try of the smaller delay.
 */
async function smallerOfTwo<T extends { maxDelayMs: number }>(bound: number, measure: () => Promise<T>): Promise<T> {
  const first = await measure();
  if (first.maxDelayMs < bound) return first;
  const second = await measure();
  return second.maxDelayMs < first.maxDelayMs ? second : first;
}

describe('the schedule at scale', () => {
  let dir: string;
  let state: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sched-scale-'));
    state = join(dir, 'scheduler-state.json');
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  test('the index keeps the earliest expiry first through adds, moves and removals', () => {
    const index = new ExpiryIndex();
    const model = new Map<string, number>();
    let seed = 42;
    const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    for (let step = 0; step < 5000; step++) {
      const key = `k${Math.floor(random() * 500)}`;
      const r = random();
      if (r < 0.6) {
        const at = Math.floor(random() * 1e6);
        index.set(key, at, r < 0.3 ? 'blob' : 'manifest');
        model.set(key, at);
      } else if (r < 0.8) {
        expect(index.delete(key)).toBe(model.delete(key));
      } else if (r < 0.9 && model.has(key)) {
        // Out of the order (being expired) and back.
        index.setQueued(key, false);
        expect(index.peek()?.key).not.toBe(key);
        index.setQueued(key, true);
      }
      expect(index.size).toBe(model.size);
      const min = Math.min(...model.values());
      expect(index.peek()?.expiry ?? Infinity).toBe(model.size ? min : Infinity);
    }
    for (const [k, at] of model) expect(index.get(k)?.expiry).toBe(at);
  });

  test('the index gives back every key as it was set: compacted digests, other algorithms, upper-case hex, repositories that come and go', () => {
    const index = new ExpiryIndex();
    const keys = [
      `library/busybox@sha256:${hex(1)}`,
      `library/busybox@sha256:${hex(2)}`,
      `a/b/c@sha256:${'ab'.repeat(32)}`,
      `library/busybox@sha512:${'c'.repeat(128)}`,
      `library/busybox@sha256:${'AB'.repeat(32)}`,
      `library/busybox@sha256:${'ab'.repeat(31)}`,
      `odd@name@sha256:${hex(3)}`,
    ];
    keys.forEach((k, i) => index.set(k, 1000 + i, i % 2 ? 'manifest' : 'blob'));
    expect(index.size).toBe(keys.length);
    expect(new Set([...index.entries()].map((e) => e.key))).toEqual(new Set(keys));
    keys.forEach((k, i) => {
      expect(index.get(k)).toMatchObject({ key: k, expiry: 1000 + i, type: i % 2 ? 'manifest' : 'blob' });
      expect(index.expiryOf(k)).toBe(1000 + i);
    });
    // The same digest in upper case is another key, as in distribution's map.
    expect(index.has(`library/busybox@sha256:${'ab'.repeat(32)}`)).toBe(false);
    expect(index.has(`unknown/repo@sha256:${hex(1)}`)).toBe(false);
    // A repository's number is given up with its last key and reused by the next one.
    expect(index.delete(`a/b/c@sha256:${'ab'.repeat(32)}`)).toBe(true);
    expect(index.has(`a/b/c@sha256:${'ab'.repeat(32)}`)).toBe(false);
    index.set(`other/repo@sha256:${hex(9)}`, 5, 'blob');
    expect(index.peek()).toMatchObject({ key: `other/repo@sha256:${hex(9)}`, expiry: 5 });
    expect(index.get(`a/b/c@sha256:${'ab'.repeat(32)}`)).toBeUndefined();
    expect(index.get(`library/busybox@sha256:${hex(2)}`)?.key).toBe(`library/busybox@sha256:${hex(2)}`);
    index.set(`a/b/c@sha256:${'ab'.repeat(32)}`, 7, 'manifest');
    expect(index.get(`a/b/c@sha256:${'ab'.repeat(32)}`)).toMatchObject({ expiry: 7, type: 'manifest' });
    expect(index.get(`other/repo@sha256:${hex(9)}`)?.expiry).toBe(5);
    index.clear();
    expect(index.size).toBe(0);
    expect(index.has(`library/busybox@sha256:${hex(1)}`)).toBe(false);
  });

  test('the index finds every digest key through growth, removals and reuse of its table (a model map agrees at every step)', () => {
    const index = new ExpiryIndex();
    const model = new Map<string, number>();
    let seed = 7;
    const random = (n: number): number => Math.floor(((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) * n);
    // Few digests under many repositories (one blob linked everywhere) and many digests under few,
    // whose first words collide (`hex` pads with zeros): long probe runs, moved back on removals.
    const keyOf = (): string => `repo-${random(30)}@sha256:${random(4) === 0 ? 'f'.repeat(56) + hex(random(8)).slice(-8) : hex(random(6000))}`;
    for (let step = 0; step < 60_000; step++) {
      const key = keyOf();
      if (random(10) < 6) {
        index.set(key, step, 'blob');
        model.set(key, step);
      } else {
        expect(index.delete(key)).toBe(model.delete(key));
      }
      if (step % 5000 === 4999) {
        expect(index.size).toBe(model.size);
        for (const [k, at] of model) expect(index.expiryOf(k)).toBe(at);
        expect(new Set([...index.entries()].map((e) => e.key))).toEqual(new Set(model.keys()));
      }
    }
    for (const k of [...model.keys()]) expect(index.delete(k)).toBe(true);
    expect(index.size).toBe(0);
    expect([...index.entries()]).toEqual([]);
    expect(index.peek()).toBeUndefined();
  });

  test(`loading 100,000 entries and writing changes to them never delays a concurrent request by more than ${BOUND_MS} ms (or a third of holding the loop for the whole work, on a loaded machine)`, async () => {
    await writeBigState(state, 100_000);
    const text = await readFile(state, 'utf8');
    let parsed: unknown;
    const loadBound = boundNow(() => (parsed = JSON.parse(text)));
    const writeBound = boundNow(() => JSON.stringify(parsed));
    const scheduler = (): TtlScheduler => new TtlScheduler({ statePath: state, onExpire: async () => undefined, flushIntervalMs: 60_000 });
    let s = scheduler();
    let loaded = 0;
    const load = await smallerOfTwo(loadBound, async () => {
      if (loaded > 0) {
        await s.stop();
        s = scheduler();
      }
      return underWatch(async () => {
        loaded = (await s.start()).loaded;
      });
    });
    expect(loaded).toBe(100_000);
    expect(load.requests).toBeGreaterThan(10);
    expect(load.maxDelayMs).toBeLessThan(loadBound);

    // Three rounds of 1,000 changes, each written at once: the whole file is rewritten each time.
    const write = await smallerOfTwo(writeBound, () =>
      underWatch(async () => {
        for (let round = 0; round < 3; round++) {
          for (let i = round * 1000; i < (round + 1) * 1000; i++) s.touch(`team-${i % 50}/app-${Math.floor(i / 50)}`, `sha256:${hex(i)}`, 'blob', 14 * DAY);
          await s.flush();
        }
      }),
    );
    expect(write.requests).toBeGreaterThan(10);
    expect(write.maxDelayMs).toBeLessThan(writeBound);
    await s.stop();
    const { entries } = await readState(state);
    expect(entries.size).toBe(100_000);
    expect(entries.get(`team-0/app-0@sha256:${hex(0)}`)!.expiry.getTime()).toBeGreaterThan(Date.now() + 13 * DAY);
  }, 120_000);

  test('adds while the file loads are kept, and nothing expires before the load is done', async () => {
    await writeBigState(state, 50_000);
    // Some entries are due already.
    const due = `team-1/app-0@sha256:${hex(1)}`;
    const text = (await readFile(state, 'utf8')).replace(`"Key":"${due}","ExpiryData":"`, (m) => `${m}2020-01-01T00:00:00Z","Was":"`);
    await writeFile(state, text);
    const expired: string[] = [];
    let loadedAtExpiry: boolean | undefined;
    const s = new TtlScheduler({
      statePath: state,
      onExpire: async (e) => {
        loadedAtExpiry = s.ready;
        expired.push(e.key);
      },
      flushIntervalMs: 60_000,
    });
    const starting = s.start();
    s.add('during/load', 'sha256:aa', 'manifest', DAY);
    expect(s.ready).toBe(false);
    expect(expired).toEqual([]);
    expect((await starting).loaded).toBe(50_000);
    await until(() => expired.length === 1, 'the expiry due at start-up');
    expect(expired).toEqual([due]);
    expect(loadedAtExpiry).toBe(true);
    expect(s.has('during/load@sha256:aa')).toBe(true);
    expect(s.size).toBe(50_000);
    await s.stop();
    expect((await readState(state)).entries.has('during/load@sha256:aa')).toBe(true);
  }, 60_000);

  test('the registry answers before its schedule of 100,000 entries is loaded: start-up waits for no walk of the cache', async () => {
    const upstream = await startFakeUpstream();
    await writeBigState(state, 100_000);
    const mirror = await startMirror(upstream.url, { root: dir, proxyYaml: 'ttl: 168h' });
    try {
      await request(mirror.url).get('/v2/').expect(200);
      const answeredAt = mirror.logs().length;
      await until(() => /msg="schedule loaded" duration\.ms=\d+ entries=100000/.test(mirror.logs()), 'the schedule loaded', 60_000);
      const logs = mirror.logs();
      // Listening, and the first answer, came before the load finished.
      expect(logs.indexOf('listening on')).toBeLessThan(logs.indexOf('schedule loaded'));
      expect(logs.indexOf('schedule loaded')).toBeGreaterThanOrEqual(answeredAt);
      await until(() => /cache walked/.test(mirror.logs()), 'the walk of the cache', 60_000);
    } finally {
      await mirror.close({ keepRoot: true });
      await upstream.close();
    }
  }, 120_000);

  test("the state file is complete JSON in registry:2's format at every moment of repeated rewrites", async () => {
    await writeBigState(state, 30_000);
    const s = new TtlScheduler({ statePath: state, onExpire: async () => undefined, flushIntervalMs: 60_000 });
    await s.start();
    const problems: string[] = [];
    let reads = 0;
    let watching = true;
    const format = /^\{"Key":"[^"]+","ExpiryData":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z","EntryType":[01]\}$/;
    const watcher = (async () => {
      while (watching) {
        const text = await readFile(state, 'utf8');
        reads++;
        try {
          const doc = JSON.parse(text) as Record<string, { Key: string }>;
          const keys = Object.keys(doc);
          if (keys.length < 30_000) problems.push(`only ${keys.length} entries`);
          for (const k of [keys[0]!, keys[keys.length >> 1]!, keys[keys.length - 1]!]) {
            if (!format.test(JSON.stringify(doc[k])) || doc[k]!.Key !== k) problems.push(`bad entry ${k}: ${JSON.stringify(doc[k])}`);
          }
        } catch (err) {
          problems.push(`not JSON (${(err as Error).message}): ${text.slice(0, 60)}...${text.slice(-60)}`);
        }
      }
    })();
    for (let round = 0; round < 10; round++) {
      for (let i = 0; i < 500; i++) s.add(`new/r${round}`, `sha256:${hex(i)}`, 'manifest', 7 * DAY);
      await s.flush();
    }
    watching = false;
    await watcher;
    await s.stop();
    expect(problems).toEqual([]);
    expect(reads).toBeGreaterThan(5);
    expect((await readState(state)).entries.size).toBe(35_000);
    expect((await readdir(dir)).filter((n) => n.endsWith('.tmp'))).toEqual([]);
  }, 120_000);

  test('after kill -9, a restart has every entry older than the flush interval', async () => {
    const lib = resolve('dist/expiry/scheduler.js');
    // A child process schedules 300 entries, waits five flush intervals, schedules 300 more and
    // says so; it is killed at once.
    const child = spawnChild(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `import { TtlScheduler } from ${JSON.stringify(lib)};
         const s = new TtlScheduler({ statePath: ${JSON.stringify(state)}, onExpire: async () => {}, flushIntervalMs: 300 });
         await s.start();
         for (let i = 0; i < 300; i++) s.add('old/r' + i, 'sha256:1', 'blob', 86400000);
         await new Promise((r) => setTimeout(r, 1500));
         for (let i = 0; i < 300; i++) s.add('new/r' + i, 'sha256:1', 'blob', 86400000);
         process.stdout.write('added\\n');
         setInterval(() => {}, 1000);`,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    try {
      await new Promise<void>((r) => child.process.stdout!.on('data', (c: Buffer) => c.toString().includes('added') && r()));
    } finally {
      await child.kill();
    }
    const again = new TtlScheduler({ statePath: state, onExpire: async () => undefined });
    await again.start();
    for (let i = 0; i < 300; i++) expect(again.has(`old/r${i}@sha256:1`)).toBe(true);
    await again.stop();
    // The file written at any moment is complete.
    JSON.parse(await readFile(state, 'utf8'));
  }, 30_000);

  test('a replica without the lease writes journals, never the state file; the holder takes them in', async () => {
    const locks = new DirectoryLocks(dir, 2000);
    const a = new TtlScheduler({ statePath: state, onExpire: async () => undefined, flushIntervalMs: 60_000, shared: { locks } });
    const b = new TtlScheduler({ statePath: state, onExpire: async () => undefined, flushIntervalMs: 60_000, shared: { locks } });
    await a.start();
    await b.start();
    try {
      a.add('repo/a', 'sha256:aa', 'blob', DAY);
      await a.flush();
      const before = await stat(state);
      for (let i = 0; i < 100; i++) b.add(`repo/b${i}`, 'sha256:bb', 'manifest', DAY);
      await b.flush();
      const journals = await readdir(join(dir, '.scheduler-journal'));
      expect(journals.filter((n) => n.endsWith('.journal'))).toHaveLength(1);
      // b did not touch the state file.
      expect((await stat(state)).ino).toBe(before.ino);
      expect((await stat(state)).mtimeMs).toBe(before.mtimeMs);
      await a.flush();
      const { entries } = await readState(state);
      expect(entries.size).toBe(101);
      expect(a.has('repo/b99@sha256:bb')).toBe(true);
      expect((await readdir(join(dir, '.scheduler-journal'))).filter((n) => n.endsWith('.journal'))).toEqual([]);
    } finally {
      await b.stop();
      await a.stop();
    }
  });
});
