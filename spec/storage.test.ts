/**
 * The filesystem driver and distribution's on-disk layout: atomic writes, byte-exact link files,
 * tags, the catalog walk, and refusal of any path that could leave the root.
 */
import { mkdtemp, mkdir, readFile, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { FilesystemDriver } from '../lib/storage/filesystem.js';
import { BlobStore } from '../lib/storage/blob-store.js';
import { RepositoryStore } from '../lib/storage/repository-store.js';
import { listRepositories } from '../lib/storage/catalog.js';
import { PathNotFoundError } from '../lib/storage/driver.js';
import { parseDigest, sha256Of } from '../lib/distribution/digest.js';
import * as paths from '../lib/storage/paths.js';
import { ownerTag, thisProcess } from '../lib/storage/owner.js';
import { procStart, startZombie } from './helpers/processes.js';

const V2 = 'docker/registry/v2';

describe('storage', () => {
  let root: string;
  let driver: FilesystemDriver;
  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'storage-'));
    driver = new FilesystemDriver(root);
  });
  afterEach(() => rm(root, { recursive: true, force: true }));

  test('putContent is atomic and leaves no temporary file', async () => {
    await driver.putContent('/a/b/c', 'hello');
    expect(await readFile(join(root, 'a/b/c'), 'utf8')).toBe('hello');
    expect(await readdir(driver.tempDir)).toEqual([]);
  });

  test('a writer commits by rename and cancel removes its file', async () => {
    const w = await driver.writer('/x/data');
    expect(await readdir(driver.tempDir)).toHaveLength(1);
    await w.write(Buffer.from('abc'));
    await w.write(Buffer.from('def'));
    expect(w.size).toBe(6);
    expect(existsSync(join(root, 'x/data'))).toBe(false);
    await w.commit();
    expect(await readFile(join(root, 'x/data'), 'utf8')).toBe('abcdef');
    const c = await driver.writer('/y/data');
    await c.write(Buffer.from('zzz'));
    await c.cancel();
    expect(await readdir(driver.tempDir)).toEqual([]);
    expect(existsSync(join(root, 'y/data'))).toBe(false);
  });

  test("a write after the process's temporary directory was removed makes it again", async () => {
    await driver.putContent('/first', 'one');
    await rm(driver.tempDir, { recursive: true });
    await driver.putContent('/second', 'two');
    expect(await readFile(join(root, 'second'), 'utf8')).toBe('two');
    expect(await readdir(driver.tempDir)).toEqual([]);
  });

  test('readers serve inclusive ranges and missing paths raise PathNotFoundError', async () => {
    await driver.putContent('/f', '0123456789');
    const chunks: Buffer[] = [];
    for await (const c of await driver.reader('/f', { start: 2, end: 5 })) chunks.push(c as Buffer);
    expect(Buffer.concat(chunks).toString()).toBe('2345');
    await expect(driver.reader('/missing')).rejects.toBeInstanceOf(PathNotFoundError);
    await expect(driver.getContent('/missing')).rejects.toBeInstanceOf(PathNotFoundError);
    await expect(driver.list('/missing')).rejects.toBeInstanceOf(PathNotFoundError);
    expect(await driver.stat('/missing')).toBeUndefined();
  });

  test.each(['/../etc/passwd', '/a/../../b', 'relative', '/a/\0b', '/./a'])('path %j is refused', async (p) => {
    await expect(driver.getContent(p)).rejects.toMatchObject({ code: 'ERR_INVALID_PATH_COMPONENT' });
  });

  test('layout builders refuse invalid names, tags and digests', () => {
    const d = parseDigest(sha256Of('x'))!;
    expect(() => paths.repositoryDir('../etc')).toThrow();
    expect(() => paths.tagCurrentLinkPath('library/busybox', '../x')).toThrow();
    expect(() => paths.blobDataPath({ algorithm: 'sha256', hex: '../../x', value: 'sha256:../../x' })).toThrow();
    expect(paths.blobDataPath(d)).toBe(`/${V2}/blobs/sha256/${d.hex.slice(0, 2)}/${d.hex}/data`);
  });

  test('cleanup removes what dead processes left and keeps the live ones', async () => {
    const me = thisProcess();
    const tmp = (name: string): string => join(root, '.tmp', name);
    const sibling = new FilesystemDriver(root);
    // The zombie first, then the writers, each ended in `finally` whatever fails after it.
    const zombie = await startZombie();
    const other = await sibling.writer('/x/data').catch(async (err: unknown) => {
      await zombie.stop();
      throw err;
    });
    let live: Awaited<ReturnType<FilesystemDriver['writer']>> | undefined;
    try {
      await other.write(Buffer.from('another driver of this live process'));
      live = await driver.writer('/x/data');
      await live.write(Buffer.from('in progress'));
      const parentStart = procStart(process.ppid);
      const liveOther = tmp(`${ownerTag({ ...me, pid: process.ppid, start: parentStart })}-0123abcd`);
      const liveOlder = tmp(`${me.host}-${process.ppid}-0123abcd`);
      const deadOther = tmp(`${ownerTag({ ...me, pid: 999999999 })}-0123abcd`);
      const deadOlder = tmp(`${me.host}-999999999-0123abcd`);
      // A restarted container: its new process has the old one's pid, started at another time.
      const restarted = tmp(`${ownerTag({ ...me, start: String(Number(me.start) - 100) })}-0123abcd`);
      // A pid handed to an unrelated process since.
      const reused = tmp(`${ownerTag({ ...me, pid: process.ppid, start: String(Number(parentStart) + 1) })}-0123abcd`);
      const zombieDir = tmp(`${ownerTag({ ...me, pid: zombie.pid, start: zombie.start })}-0123abcd`);
      // Another host, or another container on this host (another scope): only ten minutes without change tell.
      const freshForeign = tmp('other-host-42-0123abcd');
      const otherScope = tmp(`${ownerTag({ ...me, pid: 999999999, scope: '00000000' })}-0123abcd`);
      const oldForeign = tmp('gone-host-42-0123abcd');
      for (const d of [liveOther, liveOlder, deadOther, deadOlder, restarted, reused, zombieDir, freshForeign, otherScope, oldForeign])
        await mkdir(d, { recursive: true });
      await utimes(oldForeign, new Date(Date.now() - 3600_000), new Date(Date.now() - 3600_000));
      await writeFile(join(root, '.tmp', 'loose-file-from-an-old-version'), 'x');
      expect(await driver.cleanup()).toBe(7);
      const kept = [driver.tempDir, sibling.tempDir, liveOther, liveOlder, freshForeign, otherScope].map((d) => basename(d));
      expect((await readdir(join(root, '.tmp'))).sort()).toEqual(kept.sort());
    } finally {
      await zombie.stop();
      await other.cancel();
      await live?.commit();
    }
  });

  test('blobs are verified before they are stored', async () => {
    const blobs = new BlobStore(driver);
    const d = parseDigest(sha256Of('content'))!;
    await expect(blobs.put(d, Buffer.from('other'))).rejects.toMatchObject({ code: 'ERR_DIGEST_MISMATCH' });
    expect(await blobs.stat(d)).toBeUndefined();
    await blobs.put(d, Buffer.from('content'));
    expect((await blobs.get(d)).toString()).toBe('content');
    expect((await blobs.list()).map((x) => x.value)).toEqual([d.value]);
    await blobs.delete(d);
    expect(await blobs.stat(d)).toBeUndefined();
  });

  test('links are written byte-exactly at distribution paths', async () => {
    const repo = new RepositoryStore(driver, 'library/busybox');
    const d = parseDigest(sha256Of('manifest'))!;
    await repo.linkLayer(d);
    await repo.linkRevision(d);
    await repo.tag('latest', d);
    const base = join(root, V2, 'repositories/library/busybox');
    expect(await readFile(join(base, '_layers/sha256', d.hex, 'link'), 'utf8')).toBe(d.value);
    expect(await readFile(join(base, '_manifests/revisions/sha256', d.hex, 'link'), 'utf8')).toBe(d.value);
    expect(await readFile(join(base, '_manifests/tags/latest/current/link'), 'utf8')).toBe(d.value);
    expect(await readFile(join(base, '_manifests/tags/latest/index/sha256', d.hex, 'link'), 'utf8')).toBe(d.value);
    expect(await repo.hasLayer(d)).toBe(true);
    expect(await repo.tagsFor(d)).toEqual(['latest']);
    await repo.untag('latest');
    expect(await repo.resolveTag('latest')).toBeUndefined();
    await repo.unlinkLayer(d);
    expect(await repo.hasLayer(d)).toBe(false);
  });

  test('a repository laid out by registry:2 is read, and garbled links count as absent', async () => {
    const d = parseDigest(sha256Of('m'))!;
    const base = join(root, V2, 'repositories/org/app/_manifests');
    await mkdir(join(base, 'tags/v1/current'), { recursive: true });
    await writeFile(join(base, 'tags/v1/current/link'), d.value);
    await mkdir(join(base, 'tags/v2/current'), { recursive: true });
    await writeFile(join(base, 'tags/v2/current/link'), 'garbage');
    await mkdir(join(base, 'revisions/sha256', d.hex), { recursive: true });
    await writeFile(join(base, 'revisions/sha256', d.hex, 'link'), d.value);
    const repo = new RepositoryStore(driver, 'org/app');
    expect(await repo.listTags()).toEqual(['v1']);
    expect((await repo.resolveTag('v1'))?.value).toBe(d.value);
    expect((await repo.listRevisions()).map((x) => x.value)).toEqual([d.value]);
  });

  test('the catalog walks nested repositories in lexical order with pagination', async () => {
    const d = parseDigest(sha256Of('m'))!;
    for (const name of ['x-y/z', 'a', 'a/b', 'library/busybox', 'library/alpine', 'b/c/d']) {
      await new RepositoryStore(driver, name).linkRevision(d);
    }
    await mkdir(join(root, V2, 'repositories/empty/dir'), { recursive: true });
    expect(await listRepositories(driver, {})).toEqual(['a', 'a/b', 'b/c/d', 'library/alpine', 'library/busybox', 'x-y/z']);
    expect(await listRepositories(driver, { n: 2 })).toEqual(['a', 'a/b']);
    expect(await listRepositories(driver, { n: 2, last: 'a/b' })).toEqual(['b/c/d', 'library/alpine']);
    expect(await listRepositories(driver, { last: 'library/busybox' })).toEqual(['x-y/z']);
  });
});
