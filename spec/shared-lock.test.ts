/**
 * Lock directories that say who holds them: taken over at once when the holder is provably dead on
 * this host (killed, its pid reused, a zombie), after the stale time otherwise; one winner when
 * several processes take over together; a holder is told when it lost its lock. And the work done
 * once across processes on them: a stop ends a wait and takes no lock, and a stop waits for the
 * work done holding one until its release.
 */
import { mkdtemp, mkdir, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { StoppingError } from '../lib/errors.js';
import { onceAcrossProcesses, Underway } from '../lib/proxy/once.js';
import { DirectoryLocks } from '../lib/storage/shared-lock.js';
import { thisProcess } from '../lib/storage/owner.js';
import { spawnChild } from './helpers/children.js';
import { procStart, startZombie } from './helpers/processes.js';

const KEY = 'blobs/sha256/abc';

describe('owner-aware lock directories', () => {
  let root: string;
  let locks: DirectoryLocks;
  const lockDir = (): string => join(root, '.locks', `${KEY}.lock`);
  /** A lock as another process would have left it. */
  const plant = async (owner: object | undefined, ageMs = 0): Promise<void> => {
    await mkdir(lockDir(), { recursive: true });
    if (owner) await writeFile(join(lockDir(), 'owner.json'), JSON.stringify({ token: 'theirs', ...owner }));
    if (ageMs) await utimes(lockDir(), new Date(Date.now() - ageMs), new Date(Date.now() - ageMs));
  };

  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'locks-'));
    locks = new DirectoryLocks(root, 10_000);
  });
  afterEach(() => rm(root, { recursive: true, force: true }));

  test('a lock records its holder; a second taker (even in the same process) is refused until it is released', async () => {
    const release = await locks.tryAcquire(KEY);
    expect(release).toBeDefined();
    const owner = JSON.parse(await readFile(join(lockDir(), 'owner.json'), 'utf8')) as Record<string, unknown>;
    const me = thisProcess();
    expect(owner).toMatchObject({ host: me.host, pid: process.pid, start: me.start, scope: me.scope });
    expect(me.start).toMatch(/^\d+$/);
    expect(await locks.tryAcquire(KEY)).toBeUndefined();
    expect(await locks.isHeld(KEY)).toBe(true);
    await release!();
    expect(await locks.isHeld(KEY)).toBe(false);
    const again = await locks.tryAcquire(KEY);
    expect(again).toBeDefined();
    await again!();
  });

  test('the lock of a process killed with SIGKILL is taken at once', async () => {
    const script = `import('${resolve('dist/storage/shared-lock.js')}').then(async ({ DirectoryLocks }) => {
      const r = await new DirectoryLocks(${JSON.stringify(root)}, 10000).tryAcquire(${JSON.stringify(KEY)});
      process.stdout.write(r ? 'held' : 'refused');
      setInterval(() => undefined, 1000);
    })`;
    const child = spawnChild(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      const said = await new Promise<string>((r) => child.process.stdout!.once('data', (c: Buffer) => r(c.toString())));
      expect(said).toBe('held');
      expect(await locks.isHeld(KEY)).toBe(true);
      expect(await locks.tryAcquire(KEY)).toBeUndefined();
    } finally {
      await child.kill();
    }
    // Free at the first look and taken at the first attempt: its holder refreshed it less than the
    // stale time (10 s) ago, so only its owner record, naming a dead process, lets it go.
    expect(await locks.isHeld(KEY)).toBe(false);
    const release = await locks.tryAcquire(KEY);
    expect(release).toBeDefined();
    await release!();
  });

  test('a holder whose pid now belongs to a process started later is dead; one with its own start time is alive', async () => {
    const me = thisProcess();
    await plant({ ...me, pid: process.ppid, start: String(Number(procStart(process.ppid)) - 1) });
    expect(await locks.isHeld(KEY)).toBe(false);
    await rm(lockDir(), { recursive: true });
    await plant({ ...me, pid: process.ppid, start: procStart(process.ppid) });
    expect(await locks.isHeld(KEY)).toBe(true);
    expect(await locks.tryAcquire(KEY)).toBeUndefined();
  });

  test('a zombie holder is dead', async () => {
    const zombie = await startZombie();
    try {
      await plant({ ...thisProcess(), pid: zombie.pid, start: zombie.start });
      const release = await locks.tryAcquire(KEY);
      expect(release).toBeDefined();
      await release!();
    } finally {
      await zombie.stop();
    }
  });

  test.each([
    ['another host', { host: 'elsewhere', pid: 999999999, start: '1', scope: 'abcdef01' }],
    ['another container of this host (another pid namespace)', { ...thisProcess(), pid: 999999999, scope: '00000000' }],
    ['an older version (no owner file)', undefined],
  ])('a holder on %s is taken over only once stale', async (_what, owner) => {
    await plant(owner);
    expect(await locks.tryAcquire(KEY)).toBeUndefined();
    expect(await locks.isHeld(KEY)).toBe(true);
    await utimes(lockDir(), new Date(Date.now() - 11_000), new Date(Date.now() - 11_000));
    expect(await locks.isHeld(KEY)).toBe(false);
    const release = await locks.tryAcquire(KEY);
    expect(release).toBeDefined();
    await release!();
  });

  test("ten takers of a dead holder's lock at once: exactly one gets it", async () => {
    await plant({ ...thisProcess(), pid: 999999999 });
    const takers = Array.from({ length: 10 }, () => new DirectoryLocks(root, 10_000));
    const got = await Promise.all(takers.map((l) => l.tryAcquire(KEY)));
    expect(got.filter((r) => r !== undefined)).toHaveLength(1);
    await got.find((r) => r)!();
  });

  test("a dead holder's lock taken over while another process judges it too: never an error", async () => {
    // The other process's side of removeLock, as fast as it goes: `reaping` made and removed.
    const reaping = join(lockDir(), 'reaping');
    const other = spawnChild('bash', ['-c', `while true; do mkdir '${reaping}' 2>/dev/null && rmdir '${reaping}' 2>/dev/null; done`]);
    try {
      const failures: string[] = [];
      let taken = 0;
      for (let i = 0; i < 300; i++) {
        await plant({ ...thisProcess(), pid: 999999999 });
        try {
          const release = await locks.tryAcquire(KEY);
          if (release) {
            taken++;
            await release();
          }
        } catch (err) {
          failures.push((err as Error).message);
        }
      }
      // Before: a removal that met the other's `reaping` threw ENOTEMPTY (about 3 in 100).
      expect(failures).toEqual([]);
      expect(taken).toBeGreaterThan(0);
    } finally {
      await other.kill();
    }
  });

  test('the holder is told when another process took its lock over, and its release leaves the new lock alone', async () => {
    const short = new DirectoryLocks(root, 2000);
    const lost: Error[] = [];
    const release = await short.tryAcquire(KEY, (err) => lost.push(err));
    expect(release).toBeDefined();
    // Another process judged it stale and took it.
    await writeFile(join(lockDir(), 'owner.json'), JSON.stringify({ ...thisProcess(), pid: process.ppid, start: procStart(process.ppid), token: 'new' }));
    for (let i = 0; i < 40 && lost.length === 0; i++) await new Promise((r) => setTimeout(r, 100));
    expect(lost).toHaveLength(1);
    expect(lost[0]!.message).toMatch(/took it over/);
    await release!();
    expect(JSON.parse(await readFile(join(lockDir(), 'owner.json'), 'utf8'))).toMatchObject({ token: 'new' });
  });

  test('work done once across processes, stopped: a wait for the holder ends, and no lock is taken after the stop', async () => {
    const holder = await locks.tryAcquire(KEY);
    expect(holder).toBeDefined();
    const underway = new Underway();
    let worked = 0;
    const once = { landed: async () => undefined, work: async () => ++worked, underway };
    const waiting = onceAcrossProcesses(locks, KEY, once);
    await new Promise((r) => setTimeout(r, 200));
    await underway.close();
    await expect(waiting).rejects.toBeInstanceOf(StoppingError);
    await holder!();
    await expect(onceAcrossProcesses(locks, KEY, once)).rejects.toBeInstanceOf(StoppingError);
    expect(worked).toBe(0);
    await expect(readFile(join(lockDir(), 'owner.json'))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  test('work done once across processes, held: settled only once its lock is released', async () => {
    const underway = new Underway();
    let finish!: () => void;
    const download = new Promise<void>((r) => (finish = r));
    const result = await onceAcrossProcesses(locks, KEY, { landed: async () => undefined, work: async () => 'fetch', holdUntil: () => download, underway });
    expect(result).toBe('fetch');
    let settled = false;
    const done = underway.settled().then(() => (settled = true));
    await new Promise((r) => setTimeout(r, 100));
    expect(settled).toBe(false);
    expect(await locks.isHeld(KEY)).toBe(true);
    finish();
    await done;
    expect(await locks.isHeld(KEY)).toBe(false);
  });

  test('work done once without shared locks (S3 without Redis), held: settled only once its holdUntil has', async () => {
    const underway = new Underway();
    let finish!: () => void;
    const download = new Promise<void>((r) => (finish = r));
    const result = await onceAcrossProcesses(undefined, KEY, { landed: async () => undefined, work: async () => 'fetch', holdUntil: () => download, underway });
    expect(result).toBe('fetch');
    let settled = false;
    const done = underway.settled().then(() => (settled = true));
    await new Promise((r) => setTimeout(r, 100));
    expect(settled).toBe(false);
    finish();
    await done;
  });
});
