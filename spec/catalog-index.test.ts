/**
 * The catalog from memory (lib/storage/repository-index.ts): the same pages as the walk of the
 * storage, this process's own changes at once, other writers' (here the test itself, writing the
 * directories as a replica or a registry:2 would) within the index's documented bound.
 */
import { mkdtemp, mkdir, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FilesystemDriver } from '../lib/storage/filesystem.js';
import { listRepositories } from '../lib/storage/catalog.js';
import { RepositoryIndex } from '../lib/storage/repository-index.js';
import { LinkIndex, ObservedRepositoryStore } from '../lib/storage/link-index.js';
import { monotonicMs, RACY_MS, RepositoryTree } from '../lib/storage/repository-tree.js';
import { parseDigest } from '../lib/distribution/digest.js';
import { until } from './helpers/until.js';

const REPOS = 'docker/registry/v2/repositories';

describe('the catalog index', () => {
  let dir: string;
  let repos: string;
  let driver: FilesystemDriver;
  let index: RepositoryIndex;
  const names = ['a/b', 'a/b/c', 'a-x/y', 'internal/app', 'internal/tools/ci', 'library/busybox', 'z'];
  const repo = (name: string): Promise<string | undefined> => mkdir(join(repos, name, '_manifests/revisions'), { recursive: true });

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'catalog-index-'));
    repos = join(dir, REPOS);
    for (const n of names) await repo(n);
    // Not repositories: a directory without _manifests, a stray file, an upload area, a name that
    // is not valid (upper case) and one under a reserved directory.
    await mkdir(join(repos, 'empty/dir'), { recursive: true });
    await writeFile(join(repos, 'library/README'), 'not a repository');
    await mkdir(join(repos, 'library/busybox/_uploads/x'), { recursive: true });
    await repo('Upper/case');
    await repo('library/busybox/_layers/x');
    driver = new FilesystemDriver(dir);
    index = new RepositoryIndex(join(repos));
    index.start();
    await until(() => index.built, 'the index to be built', 30_000);
  });
  afterEach(async () => {
    await index.stop();
    await rm(dir, { recursive: true, force: true });
  });

  /** Every page the walk gives for every `n` and `last` tried, and the index's, side by side. */
  const pagesOf = async (source: (p: { n?: number; last?: string }) => Promise<string[] | undefined>): Promise<unknown[]> => {
    const lasts = [undefined, '', 'a', 'a/', 'a/b', 'a/b/c', 'a-', 'a-x', 'a0', 'internal/tools', 'library/busybox/x', 'z', 'zz', '~'];
    const pages: unknown[] = [];
    for (const n of [undefined, 1, 2, 3, 100]) for (const last of lasts) pages.push([n, last, await source({ n, last })]);
    return pages;
  };
  const walked = (): Promise<unknown[]> => pagesOf((p) => listRepositories(driver, p));

  test('every page is the walk’s page, in distribution’s order', async () => {
    expect(await index.page({})).toEqual(names);
    expect(await pagesOf((p) => index.page(p))).toEqual(await walked());
  });

  test('this process’s own changes are in the next page at once', async () => {
    const d = parseDigest(`sha256:${'a'.repeat(64)}`)!;
    const links = new LinkIndex();
    await new ObservedRepositoryStore(driver, 'library/new', links, index).linkRevision(d);
    await new ObservedRepositoryStore(driver, 'b/tagged', links, index).tag('v1', d);
    expect(await index.page({ n: 100, last: 'a-x/y' })).toEqual(['b/tagged', 'internal/app', 'internal/tools/ci', 'library/busybox', 'library/new', 'z']);
    // A repository deleted goes with the repositories nested in it.
    await new ObservedRepositoryStore(driver, 'a/b', links, index).delete();
    expect(await index.page({ n: 2 })).toEqual(['a-x/y', 'b/tagged']);
    expect(await pagesOf((p) => index.page(p))).toEqual(await walked());
  });

  test('another writer’s new and deleted repositories show within the bound', async () => {
    // Changes as another process would make them: straight on the volume.
    const changedAt = monotonicMs();
    await repo('c/new');
    await repo('empty/dir/now-one');
    await rm(join(repos, 'internal'), { recursive: true });
    await rm(join(repos, 'z/_manifests'), { recursive: true });
    await writeFile(join(repos, 'a-x/y/_manifests-not'), '');
    // One page asked once the bound has passed sees all of it, whether a pass ran meanwhile or not.
    while (monotonicMs() - changedAt < index.bound) await new Promise((r) => setTimeout(r, 50));
    expect(await index.page({})).toEqual(['a/b', 'a/b/c', 'a-x/y', 'c/new', 'empty/dir/now-one', 'library/busybox']);
    expect(await pagesOf((p) => index.page(p))).toEqual(await walked());
  });

  test('asked for after its passes stopped, a page waits for a pass of its own', async () => {
    await index.stop();
    index = new RepositoryIndex(repos, undefined, { activeMs: 0 });
    index.start();
    await until(() => index.built, 'the index to be built', 30_000);
    // No page asked: no pass after the second reads of the build's listings (RACY_MS). Once the
    // last pass is older than a page may be...
    const built = monotonicMs();
    while (monotonicMs() - built < RACY_MS + 1000 + index.interval + 1500) await new Promise((r) => setTimeout(r, 50));
    await repo('late/one');
    // ... the next page does not come from memory as it is: it reflects a write made just before it.
    expect(await index.page({ last: 'internal/tools/ci' })).toEqual(['late/one', 'library/busybox', 'z']);
  });

  test('until it is built, and once stopped, there is no page from memory (the caller walks)', async () => {
    const later = new RepositoryIndex(repos);
    expect(await later.page({})).toBeUndefined();
    await index.stop();
    expect(await index.page({})).toBeUndefined();
  });

  test('the storage root missing: an empty catalog, as the walk says, then the repositories once they come', async () => {
    await index.stop();
    await rm(join(dir, 'docker'), { recursive: true });
    index = new RepositoryIndex(repos);
    index.start();
    await until(() => index.built, 'the index to be built', 30_000);
    expect(await index.page({})).toEqual([]);
    const changedAt = monotonicMs();
    await repo('first/one');
    while (monotonicMs() - changedAt < index.bound) await new Promise((r) => setTimeout(r, 50));
    expect(await index.page({})).toEqual(['first/one']);
  });

  test('a pass lists only the directories whose mtime changed, and reads again a listing made in its mtime’s tick', async () => {
    const tree = new RepositoryTree(repos);
    const all = tree.pass();
    expect(
      [...all]
        .filter(([, present]) => present)
        .map(([name]) => name)
        .sort(),
    ).toEqual([...names].sort());
    const directories = tree.lastReads;
    expect(directories).toBeGreaterThan(names.length);
    // Nothing changed: stats only, no change to post.
    expect(tree.pass().size).toBe(0);
    expect(tree.lastReads).toBe(0);
    // Each listing is read once more RACY_MS after its first read, then trusted.
    await new Promise((r) => setTimeout(r, RACY_MS + 50));
    expect(tree.pass().size).toBe(0);
    expect(tree.lastReads).toBe(directories);
    expect(tree.pass().size).toBe(0);
    expect(tree.lastReads).toBe(0);
    // A new repository: its parent's listing and its own are read, nothing else.
    await repo('a-x/z');
    expect([...tree.pass()]).toEqual([['a-x/z', true]]);
    expect(tree.lastReads).toBe(2);
    // A change that leaves the mtime as it was (made within the tick of the read): seen by the
    // second read, RACY_MS after the first.
    const team = join(repos, 'internal');
    await utimes(team, 1_700_000_000, 1_700_000_000);
    tree.pass();
    await repo('internal/same-tick');
    await utimes(team, 1_700_000_000, 1_700_000_000);
    expect(tree.pass().size).toBe(0);
    await new Promise((r) => setTimeout(r, RACY_MS + 50));
    expect([...tree.pass()]).toContainEqual(['internal/same-tick', true]);
  });

  test('a pass that cannot read the storage leaves the catalog to the walk until one can', async () => {
    // A symbolic link to itself: stat and readdir fail with ELOOP, for the walk as for the thread.
    await symlink('loop', join(repos, 'loop'));
    const changedAt = monotonicMs();
    while (monotonicMs() - changedAt < index.bound) await new Promise((r) => setTimeout(r, 50));
    expect(await index.page({})).toBeUndefined();
    await expect(listRepositories(driver, {})).rejects.toThrow(/ELOOP/);
    await rm(join(repos, 'loop'));
    await until(async () => (await index.page({})) !== undefined, 'the index to be built again', 30_000);
    expect(await pagesOf((p) => index.page(p))).toEqual(await walked());
  });
});
