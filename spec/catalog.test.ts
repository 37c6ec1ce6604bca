/**
 * The catalog walk: lexical order, paging by `last`, files and `_` directories met on the way,
 * and the `within` filter (the hosted repositories a deletion asks about).
 */
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FilesystemDriver } from '../lib/storage/filesystem.js';
import { forEachInOrder, listRepositories } from '../lib/storage/catalog.js';

describe('the catalog', () => {
  let dir: string;
  let driver: FilesystemDriver;
  const names = ['a/b', 'a/b/c', 'a-x/y', 'internal/app', 'internal/tools/ci', 'library/busybox', 'z'];
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'catalog-'));
    const repos = join(dir, 'docker/registry/v2/repositories');
    for (const n of names) await mkdir(join(repos, n, '_manifests/revisions'), { recursive: true });
    // Not repositories: a directory without _manifests, a stray file, an upload area.
    await mkdir(join(repos, 'empty/dir'), { recursive: true });
    await writeFile(join(repos, 'library/README'), 'not a repository');
    await mkdir(join(repos, 'library/busybox/_uploads/x'), { recursive: true });
    driver = new FilesystemDriver(dir);
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  test('every repository in lexical order, then page by page', async () => {
    expect(await listRepositories(driver, {})).toEqual(names);
    const pages: string[][] = [];
    let last: string | undefined;
    for (;;) {
      const page = await listRepositories(driver, { n: 2, last });
      if (page.length === 0) break;
      pages.push(page);
      last = page[page.length - 1];
    }
    expect(pages).toEqual([['a/b', 'a/b/c'], ['a-x/y', 'internal/app'], ['internal/tools/ci', 'library/busybox'], ['z']]);
  });

  test('within: only the subtrees it accepts are walked', async () => {
    const seen: string[] = [];
    const found = await listRepositories(driver, { within: (p) => (seen.push(p), 'internal/'.startsWith(p) || p.startsWith('internal/')) });
    expect(found).toEqual(['internal/app', 'internal/tools/ci']);
    expect(seen).not.toContain('library/busybox');
  });

  test('forEachInOrder keeps the order whatever finishes first, and stops when told', async () => {
    const used: number[] = [];
    let inFlight = 0;
    let peak = 0;
    const done = await forEachInOrder(
      [5, 1, 4, 2, 3, 0, 6],
      3,
      async (n) => {
        peak = Math.max(peak, ++inFlight);
        await new Promise((r) => setTimeout(r, n * 5));
        inFlight--;
        return n;
      },
      (n) => (used.push(n), n !== 0),
    );
    expect(done).toBe(false);
    expect(used).toEqual([5, 1, 4, 2, 3, 0]);
    expect(peak).toBeLessThanOrEqual(3);
  });
});
