/**
 * The schedule's file store: a small state file is merged on the event loop (no writer thread and
 * its memory), a large one by the writer thread, and a file that shrinks well below the threshold
 * gives the thread back; both ways write the same file.
 */
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Changes } from '../lib/expiry/state-file.js';
import { readState } from '../lib/expiry/state-load.js';
import { FileStateStore, THREAD_FROM_BYTES } from '../lib/expiry/state-store.js';

const hex = (i: number): string => i.toString(16).padStart(64, '0');
const key = (i: number): string => `library/repo${i % 7}@sha256:${hex(i)}`;
const EXPIRY = Date.parse('2030-01-01T00:00:00Z');

/** `n` new entries from `from` on. */
function added(from: number, n: number): Changes {
  const m = new Map<string, { expiry: number; type: 'blob' | 'manifest' }>();
  for (let i = from; i < from + n; i++) m.set(key(i), { expiry: EXPIRY + i, type: i % 2 ? 'manifest' : 'blob' });
  return m;
}

/** Removals of the entries from `from` to `from + n`. */
function removed(from: number, n: number): Changes {
  const m = new Map<string, null>();
  for (let i = from; i < from + n; i++) m.set(key(i), null);
  return m;
}

/** The writer threads of this test process: each holds a MessagePort while it runs. */
const ports = (): number => process.getActiveResourcesInfo().filter((r) => r === 'MessagePort').length;

describe('the schedule file store', () => {
  let dir: string;
  let state: string;
  const stores: FileStateStore[] = [];
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'state-store-'));
    state = join(dir, 'scheduler-state.json');
  });
  afterEach(async () => {
    for (const s of stores.splice(0)) await s.close();
    await rm(dir, { recursive: true, force: true });
  });
  const store = (threadFromBytes?: number): FileStateStore => {
    const s = new FileStateStore(state, undefined, threadFromBytes);
    stores.push(s);
    return s;
  };

  test('a small file is merged without a writer thread', async () => {
    const before = ports();
    const s = store();
    expect(await s.load(() => undefined)).toEqual({ loaded: 0 });
    const r = await s.write(added(0, 100));
    expect(r.entries).toBe(100);
    expect(r.bytes).toBe((await stat(state)).size);
    await s.write(removed(0, 10));
    expect(s.threaded).toBe(false);
    expect(ports()).toBe(before);
    const { entries } = await readState(state);
    expect(entries.size).toBe(90);
    expect(entries.get(key(11))).toEqual({ key: key(11), expiry: new Date(EXPIRY + 11), type: 'manifest' });
    expect(entries.has(key(9))).toBe(false);
  });

  test('a file past the threshold is merged by the writer thread, which ends once the file is under half of it', async () => {
    const s = store(64 * 1024);
    await s.load(() => undefined);
    await s.write(added(0, 100));
    expect(s.threaded).toBe(false);
    // 24 KiB + 300 x 256 bytes: past 64 KiB.
    const r = await s.write(added(100, 300));
    expect(r.entries).toBe(400);
    expect(s.threaded).toBe(true);
    await s.write(removed(0, 200));
    expect(s.threaded).toBe(true);
    // 48 KiB left, then 24 KiB: under half the threshold, the thread is given back.
    const last = await s.write(removed(200, 100));
    expect(last.bytes).toBeLessThan(32 * 1024);
    expect(s.threaded).toBe(false);
    const { entries } = await readState(state);
    expect([...entries.keys()].sort()).toEqual([...added(300, 100).keys()].sort());
  });

  test('a large file found at the load starts the thread, and both ways write the same bytes', async () => {
    const threaded = store(1);
    await threaded.load(() => undefined);
    expect(threaded.threaded).toBe(false);
    await threaded.write(added(0, 50));
    expect(threaded.threaded).toBe(true);
    await threaded.write(removed(10, 5));
    const viaThread = (await readState(state)).entries;
    await threaded.close();

    await rm(state);
    const here = store();
    await here.load(() => undefined);
    await here.write(added(0, 50));
    await here.write(removed(10, 5));
    expect(here.threaded).toBe(false);
    expect((await readState(state)).entries).toEqual(viaThread);

    const again = store(1);
    await again.load(() => undefined);
    expect(again.threaded).toBe(true);
  });

  test('a file that is not a state file fails the merge with `base` set, either way', async () => {
    for (const threshold of [THREAD_FROM_BYTES, 1]) {
      await writeFile(state, '{"not":');
      const s = store(threshold);
      await s.load(() => undefined);
      // The load moved the damaged file aside; damage it again for the merge.
      await writeFile(state, '{"not":');
      await expect(s.write(added(0, 1))).rejects.toMatchObject({ base: true });
      // Written whole with `replace`, as the schedule does then.
      await s.write(added(0, 3), { replace: true });
      expect((await readState(state)).entries.size).toBe(3);
    }
  });
});
