/**
 * The repository catalog (distribution `registry/storage/catalog.go`): a walk of `repositories/`
 * in which a directory holding `_manifests` is a repository and `_`-prefixed directories are not
 * descended into. Names come out in lexical order.
 */
import type { StorageDriver } from './driver.js';
import { listOrEmpty } from './blob-store.js';
import { MANIFESTS_ENTRY, RESERVED_PREFIX, repositoriesRoot } from './paths.js';
import { isValidName } from '../distribution/reference.js';

/** Repository names after `last` (exclusive), at most `n` (all when undefined). */
export async function listRepositories(driver: StorageDriver, page: { n?: number; last?: string }): Promise<string[]> {
  const found: string[] = [];
  const limit = page.n ?? Number.POSITIVE_INFINITY;
  const walk = async (prefix: string): Promise<boolean> => {
    const dir = prefix ? `${repositoriesRoot()}/${prefix}` : repositoriesRoot();
    const entries = (await listOrEmpty(driver, dir)).sort();
    if (prefix && entries.includes(MANIFESTS_ENTRY) && isValidName(prefix) && (page.last === undefined || prefix > page.last)) {
      found.push(prefix);
      if (found.length >= limit) return false;
    }
    for (const entry of entries) {
      if (entry.startsWith(RESERVED_PREFIX)) continue;
      const child = prefix ? `${prefix}/${entry}` : entry;
      // Skip subtrees that sort entirely before `last`: every name in them starts with `child/`.
      if (page.last !== undefined && child < page.last && !page.last.startsWith(`${child}/`) && `${child}/` < page.last) continue;
      const info = await driver.stat(`${repositoriesRoot()}/${child}`);
      if (!info?.isDir) continue;
      if (!(await walk(child))) return false;
    }
    return true;
  };
  await walk('');
  return found;
}
