/**
 * The storage driver contract (lib/storage/driver.ts), the same cases against both drivers: the
 * filesystem driver on a temporary directory and the S3 driver on a real Ceph RADOS Gateway
 * (spec/helpers/ceph.ts), with parts and copy thresholds at S3's 5 MiB minimum so that multipart
 * writes, resumed appends and multipart copies all happen on small data.
 */
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { ListMultipartUploadsCommand } from '@aws-sdk/client-s3';
import { FilesystemDriver } from '../lib/storage/filesystem.js';
import { S3Driver } from '../lib/storage/s3.js';
import { s3Config } from '../lib/config/s3.js';
import { PathNotFoundError, type FileInfo, type StorageDriver } from '../lib/storage/driver.js';
import { spooledWrite } from '../lib/storage/blob-store.js';
import { describeInterop } from './helpers/interop.js';
import { cephAvailable, createBucket, s3Parameters, type CephEndpoint } from './helpers/ceph.js';
import { sharedCeph } from './helpers/ceph-shared.js';

const MiB = 1024 * 1024;

async function read(driver: StorageDriver, path: string, range?: { start: number; end?: number }): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of await driver.reader(path, range)) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** The contract's cases; `make` gives a fresh, empty store; `pending` counts unfinished multipart uploads (S3). */
function contract(make: () => Promise<{ driver: StorageDriver; pending?: () => Promise<number> }>): void {
  let driver: StorageDriver;
  let pending: (() => Promise<number>) | undefined;
  beforeEach(async () => {
    ({ driver, pending } = await make());
  });

  test('content: put, get, replace, stat of files and directories', async () => {
    await driver.putContent('/c/a/file', 'hello');
    expect((await driver.getContent('/c/a/file')).toString()).toBe('hello');
    await driver.putContent('/c/a/file', Buffer.from('hello again'));
    expect((await driver.getContent('/c/a/file')).toString()).toBe('hello again');
    expect(await driver.stat('/c/a/file')).toMatchObject({ path: '/c/a/file', size: 11, isDir: false });
    expect((await driver.stat('/c/a/file'))!.modTime.getTime()).toBeGreaterThan(Date.now() - 600_000);
    expect(await driver.stat('/c/a')).toMatchObject({ isDir: true });
    expect(await driver.stat('/c')).toMatchObject({ isDir: true });
    expect(await driver.stat('/c/missing')).toBeUndefined();
    // A sibling whose name starts with a file's name is not below it.
    expect(await driver.stat('/c/a/fil')).toBeUndefined();
    await expect(driver.getContent('/c/missing')).rejects.toBeInstanceOf(PathNotFoundError);
    await driver.putContent('/c/empty', '');
    expect((await driver.getContent('/c/empty')).length).toBe(0);
  });

  test('reader: from an offset, a range, at the end, and a missing file', async () => {
    await driver.putContent('/r/f', '0123456789');
    expect((await read(driver, '/r/f')).toString()).toBe('0123456789');
    expect((await read(driver, '/r/f', { start: 3 })).toString()).toBe('3456789');
    expect((await read(driver, '/r/f', { start: 2, end: 5 })).toString()).toBe('2345');
    expect((await read(driver, '/r/f', { start: 10 })).length).toBe(0);
    await expect(driver.reader('/r/missing')).rejects.toBeInstanceOf(PathNotFoundError);
  });

  test('writer: nothing is visible before commit, all of it after; cancel leaves nothing', async () => {
    const big = randomBytes(12 * MiB + 12345);
    const w = await driver.writer('/w/big');
    for (let o = 0; o < big.length; o += MiB) await w.write(big.subarray(o, o + MiB));
    expect(w.size).toBe(big.length);
    expect(await driver.stat('/w/big')).toBeUndefined();
    await w.commit();
    expect((await driver.getContent('/w/big')).equals(big)).toBe(true);

    const small = await driver.writer('/w/small');
    await small.write(Buffer.from('tiny'));
    await small.commit();
    expect((await driver.getContent('/w/small')).toString()).toBe('tiny');

    // Replacing: readers see the old content until the commit.
    const replace = await driver.writer('/w/small');
    await replace.write(randomBytes(6 * MiB));
    expect((await driver.getContent('/w/small')).toString()).toBe('tiny');
    await replace.cancel();
    await replace.cancel();
    expect((await driver.getContent('/w/small')).toString()).toBe('tiny');

    const gone = await driver.writer('/w/gone');
    await gone.write(randomBytes(6 * MiB));
    await gone.cancel();
    expect(await driver.stat('/w/gone')).toBeUndefined();
    if (pending) expect(await pending()).toBe(0);
  });

  test('writer: the caller refills one buffer after each write, write after write and writer after writer', async () => {
    // S3 copies each write into a part buffer of its own, reused from one part (and one writer) to the next.
    for (const name of ['first', 'second']) {
      const expected = randomBytes(6 * MiB + 777);
      const chunk = Buffer.alloc(MiB);
      const w = await driver.writer(`/reuse/${name}`);
      for (let o = 0; o < expected.length; o += MiB) {
        const n = expected.copy(chunk, 0, o, o + MiB);
        await w.write(chunk.subarray(0, n));
        chunk.fill(0xee);
      }
      await w.commit();
      expect((await driver.getContent(`/reuse/${name}`)).equals(expected)).toBe(true);
    }
    const small = await driver.writer('/reuse/small');
    const bytes = Buffer.from('small write');
    await small.write(bytes);
    bytes.fill(0);
    await small.commit();
    expect((await driver.getContent('/reuse/small')).toString()).toBe('small write');
  });

  test('writeFrom, where a driver has it: a whole block, a short last one, a small whole write closed and resumed, after buffered bytes', async () => {
    const probe = await driver.writer('/wf/probe');
    await probe.cancel();
    const block = probe.blockSize;
    if (!probe.writeFrom || !block) return;
    const dir = await mkdtemp(join(tmpdir(), 'write-from-'));
    const file = join(dir, 'source');
    try {
      const bytes = randomBytes(block + 123);
      await writeFile(file, bytes);
      const handle = await open(file, 'r');
      const source = { read: async (b: Buffer, o: number, l: number, p: number) => (await handle.read(b, o, l, p)).bytesRead, close: () => handle.close() };
      try {
        // A whole block, then the last bytes.
        const w = await driver.writer('/wf/blocks');
        await w.writeFrom!(source, 0, block);
        await w.writeFrom!(source, block, 123);
        expect(w.size).toBe(bytes.length);
        await expect(w.writeFrom!(source, 0, 1)).rejects.toThrow();
        await w.commit();
        expect((await driver.getContent('/wf/blocks')).equals(bytes)).toBe(true);
        // Smaller than a block: nothing visible before commit.
        const small = await driver.writer('/wf/small');
        await small.writeFrom!(source, 5, 1000);
        expect(await driver.stat('/wf/small')).toBeUndefined();
        await small.commit();
        expect((await driver.getContent('/wf/small')).equals(bytes.subarray(5, 1005))).toBe(true);
        // Closed, resumed and finished by an append writer.
        const first = await driver.writer('/wf/resumed');
        await first.writeFrom!(source, 0, 1000);
        await first.close();
        const next = await driver.writer('/wf/resumed', { append: true });
        expect(next.size).toBe(1000);
        await next.write(bytes.subarray(1000, 3000));
        await next.commit();
        expect((await driver.getContent('/wf/resumed')).equals(bytes.subarray(0, 3000))).toBe(true);
        // After bytes written from memory: read into the buffer.
        const mixed = await driver.writer('/wf/mixed');
        await mixed.write(bytes.subarray(0, 10));
        await mixed.writeFrom!(source, 10, block + 5);
        await mixed.commit();
        expect((await driver.getContent('/wf/mixed')).equals(bytes.subarray(0, block + 15))).toBe(true);
      } finally {
        await source.close();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    if (pending) expect(await pending()).toBe(0);
  });

  test('statFile, where a driver has it: a file, and nothing at a missing path or a directory', async () => {
    if (!driver.statFile) return;
    await driver.putContent('/sf/dir/file', 'abc');
    expect(await driver.statFile('/sf/dir/file')).toMatchObject({ path: '/sf/dir/file', size: 3, isDir: false });
    expect(await driver.statFile('/sf/dir')).toBeUndefined();
    expect(await driver.statFile('/sf/missing')).toBeUndefined();
  });

  test('append writer: closed writes resume, small and multipart, and commit as one file', async () => {
    const expected: Buffer[] = [];
    const first = await driver.writer('/u/data');
    await first.close();
    for (const size of [3, 6 * MiB, MiB, 2 * MiB + 7, 0]) {
      const w = await driver.writer('/u/data', { append: true });
      expect(w.size).toBe(expected.reduce((n, b) => n + b.length, 0));
      const bytes = randomBytes(size);
      await w.write(bytes);
      expected.push(bytes);
      await w.close();
    }
    const last = await driver.writer('/u/data', { append: true });
    await last.write(Buffer.from('end'));
    expected.push(Buffer.from('end'));
    await last.commit();
    expect((await driver.getContent('/u/data')).equals(Buffer.concat(expected))).toBe(true);
    if (pending) expect(await pending()).toBe(0);

    await expect(driver.writer('/u/missing', { append: true })).rejects.toBeInstanceOf(PathNotFoundError);
    const dropped = await driver.writer('/u/dropped');
    await dropped.write(Buffer.from('abc'));
    await dropped.close();
    await (await driver.writer('/u/dropped', { append: true })).cancel();
    expect(await driver.stat('/u/dropped')).toBeUndefined();
    await expect(driver.writer('/u/dropped', { append: true })).rejects.toBeInstanceOf(PathNotFoundError);
    if (pending) expect(await pending()).toBe(0);
  });

  test('spooled write: followers read the bytes back while they are written and after commit', async () => {
    const bytes = randomBytes(7 * MiB);
    const { writer, reader } = await spooledWrite(driver, '/s/blob');
    await writer.write(bytes.subarray(0, 3 * MiB));
    const part = Buffer.alloc(100);
    expect(await reader.read(part, 0, 100, 3 * MiB - 100)).toBe(100);
    expect(part.equals(bytes.subarray(3 * MiB - 100, 3 * MiB))).toBe(true);
    await writer.write(bytes.subarray(3 * MiB));
    expect(await driver.stat('/s/blob')).toBeUndefined();
    await writer.commit();
    expect(await reader.read(part, 0, 100, 7 * MiB - 100)).toBe(100);
    expect(part.equals(bytes.subarray(7 * MiB - 100))).toBe(true);
    await reader.close();
    expect((await driver.getContent('/s/blob')).equals(bytes)).toBe(true);

    // Whole parts only, and less than a part (S3: parts, and one PutObject at commit, streamed from the spool).
    for (const size of [5 * MiB, 3 * MiB + 1]) {
      const more = randomBytes(size);
      const w = await spooledWrite(driver, `/s/${size}`);
      for (let o = 0; o < size; o += 256 * 1024) await w.writer.write(more.subarray(o, o + 256 * 1024));
      await w.writer.commit();
      await w.reader.close();
      expect((await driver.getContent(`/s/${size}`)).equals(more)).toBe(true);
    }

    const cancelled = await spooledWrite(driver, '/s/cancelled');
    await cancelled.writer.write(randomBytes(6 * MiB));
    await cancelled.writer.cancel();
    await cancelled.reader.close();
    expect(await driver.stat('/s/cancelled')).toBeUndefined();
    if (pending) expect(await pending()).toBe(0);
  });

  test('list and walk: entries, directories before their contents, skip and stop', async () => {
    for (const p of ['/l/a/1', '/l/a/2', '/l/b/c/3', '/l/d', '/l/b-x/4']) await driver.putContent(p, p);
    expect((await driver.list('/l')).sort()).toEqual(['a', 'b', 'b-x', 'd']);
    expect(await driver.list('/l/b')).toEqual(['c']);
    await expect(driver.list('/l/missing')).rejects.toBeInstanceOf(PathNotFoundError);

    const seen: FileInfo[] = [];
    await driver.walk('/l', (info) => void seen.push(info));
    const paths = seen.map((i) => i.path);
    expect([...paths].sort()).toEqual(['/l/a', '/l/a/1', '/l/a/2', '/l/b', '/l/b-x', '/l/b-x/4', '/l/b/c', '/l/b/c/3', '/l/d']);
    for (const dir of seen.filter((i) => i.isDir)) {
      for (const p of paths.filter((x) => x.startsWith(`${dir.path}/`))) expect(paths.indexOf(p)).toBeGreaterThan(paths.indexOf(dir.path));
    }
    expect(seen.find((i) => i.path === '/l/d')).toMatchObject({ isDir: false, size: 4 });

    const skipped: string[] = [];
    await driver.walk('/l', (info) => {
      skipped.push(info.path);
      return info.path === '/l/b' ? 'skip' : undefined;
    });
    expect(skipped).toContain('/l/b');
    expect(skipped.filter((p) => p.startsWith('/l/b/'))).toEqual([]);
    expect(skipped).toContain('/l/b-x/4');

    let visits = 0;
    await driver.walk('/l', () => (++visits === 2 ? 'stop' : undefined));
    expect(visits).toBe(2);
    const none: string[] = [];
    await driver.walk('/l/missing', (i) => void none.push(i.path));
    expect(none).toEqual([]);
  });

  test('move: small and multipart-copied files; a missing source', async () => {
    await driver.putContent('/m/src', 'moved');
    await driver.move('/m/src', '/m/dir/dst');
    expect((await driver.getContent('/m/dir/dst')).toString()).toBe('moved');
    expect(await driver.stat('/m/src')).toBeUndefined();
    const big = randomBytes(11 * MiB + 3);
    await driver.putContent('/m/big', big);
    await driver.move('/m/big', '/m/other/big');
    expect((await driver.getContent('/m/other/big')).equals(big)).toBe(true);
    expect(await driver.stat('/m/big')).toBeUndefined();
    await expect(driver.move('/m/missing', '/m/x')).rejects.toBeInstanceOf(PathNotFoundError);
    if (pending) expect(await pending()).toBe(0);
  });

  test('delete: a tree, never a sibling sharing its prefix; a missing path is no error', async () => {
    for (const p of ['/d/a/1', '/d/a/b/2', '/d/ab', '/d/a-z']) await driver.putContent(p, 'x');
    await driver.delete('/d/a');
    expect(await driver.stat('/d/a')).toBeUndefined();
    expect(await driver.stat('/d/a/b/2')).toBeUndefined();
    expect(await driver.stat('/d/ab')).toMatchObject({ isDir: false });
    expect(await driver.stat('/d/a-z')).toMatchObject({ isDir: false });
    await driver.delete('/d/ab');
    expect(await driver.stat('/d/ab')).toBeUndefined();
    await driver.delete('/d/never');
  });

  test('paths that could leave the root are refused', async () => {
    for (const p of ['/../etc/passwd', 'relative', '/a/./b', '/a/b/', '/a b']) {
      await expect(driver.getContent(p)).rejects.toMatchObject({ code: 'ERR_INVALID_PATH_COMPONENT' });
    }
  });

  test('health check and redirect URLs', async () => {
    await driver.healthCheck();
    await driver.putContent('/x/blob', 'redirected bytes');
    const get = await driver.redirectURL('GET', '/x/blob');
    const head = await driver.redirectURL('HEAD', '/x/blob');
    expect(await driver.redirectURL('DELETE', '/x/blob')).toBeUndefined();
    if (driver.name === 'filesystem') {
      expect(get).toBeUndefined();
      expect(head).toBeUndefined();
      return;
    }
    const got = await fetch(get!);
    expect(got.status).toBe(200);
    expect(await got.text()).toBe('redirected bytes');
    const headed = await fetch(head!, { method: 'HEAD' });
    expect(headed.status).toBe(200);
    expect(headed.headers.get('content-length')).toBe('16');
    // A URL signed for HEAD does not serve a GET.
    expect((await fetch(head!)).status).toBe(403);
  });
}

describe('storage driver contract: filesystem', () => {
  const roots: string[] = [];
  afterAll(() => Promise.all(roots.map((r) => rm(r, { recursive: true, force: true }))));
  contract(async () => {
    const root = await mkdtemp(join(tmpdir(), 'driver-'));
    roots.push(root);
    return { driver: new FilesystemDriver(root) };
  });
});

describeInterop(
  'storage driver contract: s3 on Ceph RGW',
  () => {
    let ceph: CephEndpoint;
    const drivers: S3Driver[] = [];
    beforeAll(async () => {
      ceph = await sharedCeph();
    }, 120_000);
    afterAll(() => drivers.forEach((d) => d.client.destroy()));
    test('cleanup aborts the multipart uploads dead fetches left under blobs/, not hosted uploads', async () => {
      const bucket = await createBucket(ceph, 'cleanup');
      const driver = new S3Driver(s3Config(s3Parameters(ceph, bucket)));
      drivers.push(driver);
      const left = await driver.writer('/docker/registry/v2/blobs/sha256/ab/abcd/data');
      await left.write(Buffer.from('partial'));
      await left.close();
      await (await driver.writer('/docker/registry/v2/repositories/internal/x/_uploads/0b9f3c2e-8a61-4d55-9d0c-1f2e3d4c5b6a/data')).close();
      expect(await driver.cleanup()).toBe(0);
      expect(await driver.cleanup(0)).toBe(1);
      const uploads = (await driver.client.send(new ListMultipartUploadsCommand({ Bucket: bucket }))).Uploads ?? [];
      expect(uploads.map((u) => u.Key)).toEqual(['registry/docker/registry/v2/repositories/internal/x/_uploads/0b9f3c2e-8a61-4d55-9d0c-1f2e3d4c5b6a/data']);
    });
    contract(async () => {
      const bucket = await createBucket(ceph, 'contract');
      const driver = new S3Driver(
        s3Config(s3Parameters(ceph, bucket, { chunksize: 5 * MiB, multipartcopychunksize: 5 * MiB, multipartcopythresholdsize: 5 * MiB })),
      );
      drivers.push(driver);
      const pending = async (): Promise<number> => (await driver.client.send(new ListMultipartUploadsCommand({ Bucket: bucket }))).Uploads?.length ?? 0;
      return { driver, pending };
    });
  },
  { what: 'Ceph (ceph-mon, ceph-osd, radosgw, ceph-common)', available: cephAvailable },
);
