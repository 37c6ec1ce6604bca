/**
 * The repository catalog (distribution `registry/storage/catalog.go`): a walk of `repositories/`
 * in which a directory holding `_manifests` is a repository and `_`-prefixed directories are not
 * descended into. Names come out in distribution's order: lexical by path component (`a/b` and
 * its subtree before `a-x`), which paging by `last` follows too.
 *
 * One directory listing per directory visited and nothing else: a file met on the way lists as
 * empty (no `stat` per entry), subtrees before the page's `last` are skipped, and the listings of
 * the next siblings are read ahead, a few at a time, while the walk consumes them in order.
 */
import type { StorageDriver } from './driver.js';
import { listOrEmpty } from './blob-store.js';
import { MANIFESTS_ENTRY, RESERVED_PREFIX, repositoriesRoot } from './paths.js';
import { isValidName } from '../distribution/reference.js';
import { throwIfStopping } from '../errors.js';

/** Directory listings read ahead per directory. */
const READ_AHEAD = 16;

/**
 * Maps `items` through `fn` with at most `limit` calls in flight, handing each result to `use` in
 * the items' order; `use` returning false stops it (calls already started are left to finish).
 */
export async function forEachInOrder<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<R>,
  use: (result: R, item: T) => boolean | void | Promise<boolean | void>,
): Promise<boolean> {
  const started: Array<Promise<R>> = [];
  let next = 0;
  const fill = (): void => {
    while (next < items.length && started.length - consumed < limit) {
      const p = fn(items[next++]!);
      // Results abandoned by a stop must not become unhandled rejections.
      p.catch(() => undefined);
      started.push(p);
    }
  };
  let consumed = 0;
  for (let i = 0; i < items.length; i++) {
    fill();
    const result = await started[i]!;
    consumed++;
    if ((await use(result, items[i]!)) === false) return false;
  }
  return true;
}

/** Which part of the catalog: after `last` (exclusive), at most `n`, only under directories `within` accepts. */
export interface CatalogPage {
  readonly n?: number;
  readonly last?: string;
  /** Descends into a directory (`team`, `team/app`) only when this accepts its path. */
  readonly within?: (path: string) => boolean;
  /** The registry's stop: the walk ends at its next directory with `StoppingError`. */
  readonly signal?: AbortSignal;
}

/** A name as distribution orders paths: component by component (`/` below every other character). */
const pathKey = (name: string): string => name.replaceAll('/', '\0');

/** Repository names after `last` (exclusive, in path order), at most `n` (all when undefined). */
export async function listRepositories(driver: StorageDriver, page: CatalogPage): Promise<string[]> {
  const found: string[] = [];
  const limit = page.n ?? Number.POSITIVE_INFINITY;
  const root = repositoriesRoot();
  const last = page.last === undefined ? undefined : pathKey(page.last);
  const walk = async (prefix: string, entries: string[]): Promise<boolean> => {
    throwIfStopping(page.signal, 'the walk of the catalog');
    if (prefix && entries.includes(MANIFESTS_ENTRY) && isValidName(prefix) && (last === undefined || pathKey(prefix) > last)) {
      found.push(prefix);
      if (found.length >= limit) return false;
    }
    const children: string[] = [];
    for (const entry of entries.sort()) {
      if (entry.startsWith(RESERVED_PREFIX)) continue;
      const child = prefix ? `${prefix}/${entry}` : entry;
      // Skip subtrees that sort entirely before `last`: every name in them starts with `child/`.
      if (last !== undefined) {
        const key = pathKey(child);
        if (key < last && !last.startsWith(`${key}\0`)) continue;
      }
      if (page.within && !page.within(child)) continue;
      children.push(child);
    }
    return forEachInOrder(
      children,
      READ_AHEAD,
      (child) => listOrEmpty(driver, `${root}/${child}`),
      (list, child) => (list.length === 0 ? true : walk(child, list)),
    );
  };
  await walk('', await listOrEmpty(driver, root));
  return found;
}
