/**
 * Which repositories link each digest (as a layer or as a manifest revision), so that an expiry
 * or an eviction asks the few repositories that may still link a blob instead of every repository
 * of the cache. Built by the walk of the storage at start-up, in the background; kept up to date by
 * the links this process makes and removes (every link goes through `ObservedRepositoryStore`) and
 * by what other replicas report (their journals). Until it is built, `linkers` answers undefined
 * and a deletion waits for it: "not yet known" never lets data another repository links go.
 */
import { parseDigest, type Digest } from '../distribution/digest.js';
import { DigestTable } from '../distribution/digest-table.js';
import type { StorageDriver } from './driver.js';
import { RepositoryStore } from './repository-store.js';
import { listRepositories } from './catalog.js';
import { StoppingError, throwIfStopping } from '../errors.js';

/** Something the start-up walk reports each link to. */
type LinkVisitor = (repo: string, digest: Digest, type: 'blob' | 'manifest') => void | Promise<void>;

/**
 * The one walk of the cache at start-up, in the background: every repository's layer and manifest
 * link directories, each reported to `visit` (the link index, the size cap's measure). The links
 * are known by their directories' names, not read: a directory whose link is missing or wrong
 * counts as a link, which can only keep data (and costs one listing per repository, not a read per
 * link). Each step awaits the storage, so the walk never holds the event loop; `signal` (the
 * registry's stop) ends it at its next step with `StoppingError`: the index is then never marked
 * built, and, being kept in memory only, is walked anew at the next start.
 */
export async function walkLinks(
  driver: StorageDriver,
  repository: (name: string) => RepositoryStore,
  visit: LinkVisitor,
  signal?: AbortSignal,
  onRepository?: (name: string, repo: RepositoryStore) => Promise<void>,
): Promise<{ repositories: number; links: number }> {
  let repositories = 0;
  let links = 0;
  for (const name of await listRepositories(driver, { signal })) {
    throwIfStopping(signal, 'the walk of the cache');
    repositories++;
    const repo = repository(name);
    await onRepository?.(name, repo);
    for (const [type, names] of [
      ['manifest', await repo.revisionNames()],
      ['blob', await repo.layerNames()],
    ] as const) {
      for (const raw of names) {
        const d = parseDigest(raw);
        if (!d) continue;
        links++;
        await visit(name, d, type);
        throwIfStopping(signal, 'the walk of the cache');
      }
    }
  }
  return { repositories, links };
}

/** Digests to the repositories that link them. */
export class LinkIndex {
  /** The digests linked (a few hundred thousand at scale), numbered. */
  private readonly digests = new DigestTable();
  /** By the digest's slot: the one repository that links it (the usual case), or several. */
  private linkersAt: Array<string | string[] | undefined> = [];
  /** One string per repository name, shared by all its links. */
  private readonly names = new Map<string, string>();
  /** Links per repository: a repository with none is not counted. */
  private readonly perRepository = new Map<string, number>();
  /** Tags per repository, and their sum. */
  private readonly tagsPer = new Map<string, number>();
  private tags = 0;
  private built = false;
  private readonly waiting: Array<() => void> = [];

  /** True once the walk of the storage is done. */
  get ready(): boolean {
    return this.built;
  }

  /** `repo` links `digest` (recorded before the link is written: a deletion in between keeps the data). */
  linked(repo: string, digest: string): void {
    const name = this.intern(repo);
    const { slot, added } = this.digests.add(0, digest);
    const cur = added ? undefined : this.linkersAt[slot];
    if (cur === undefined) this.linkersAt[slot] = name;
    else if (typeof cur === 'string') {
      if (cur === name) return;
      this.linkersAt[slot] = [cur, name];
    } else if (!cur.includes(name)) cur.push(name);
    else return;
    this.perRepository.set(name, (this.perRepository.get(name) ?? 0) + 1);
  }

  /** `repo` no longer links `digest`. */
  unlinked(repo: string, digest: string): void {
    const slot = this.digests.find(0, digest);
    if (slot < 0) return;
    const cur = this.linkersAt[slot]!;
    if (typeof cur === 'string') {
      if (cur !== repo) return;
      this.forget(slot);
    } else {
      const rest = cur.filter((r) => r !== repo);
      if (rest.length === cur.length) return;
      if (rest.length === 0) this.forget(slot);
      else this.linkersAt[slot] = rest.length === 1 ? rest[0]! : rest;
    }
    const left = (this.perRepository.get(repo) ?? 1) - 1;
    if (left > 0) this.perRepository.set(repo, left);
    else this.perRepository.delete(repo);
  }

  /** `repo` has `count` tags (the walk), or `delta` more or fewer (a tag made or removed). */
  tagsOf(repo: string, change: { count: number } | { delta: number }): void {
    const before = this.tagsPer.get(repo) ?? 0;
    const after = Math.max(0, 'count' in change ? change.count : before + change.delta);
    this.tags += after - before;
    if (after > 0) this.tagsPer.set(this.intern(repo), after);
    else this.tagsPer.delete(repo);
  }

  /** What the cache holds, kept as links and tags come and go (complete once built). */
  get counts(): { readonly repositories: number; readonly tags: number; readonly complete: boolean } {
    return { repositories: this.perRepository.size, tags: this.tags, complete: this.built };
  }

  /** The repositories that may link `digest` (to be checked on storage), or undefined until built. */
  linkers(digest: string): readonly string[] | undefined {
    if (!this.built) return undefined;
    const slot = this.digests.find(0, digest);
    const cur = slot < 0 ? undefined : this.linkersAt[slot];
    return cur === undefined ? [] : typeof cur === 'string' ? [cur] : [...cur];
  }

  /** The walk of the storage is done: from now on `linkers` answers. */
  markBuilt(): void {
    this.built = true;
    for (const wake of this.waiting.splice(0)) wake();
  }

  /**
   * Resolves once built; rejects with `StoppingError` when `signal` (the registry's stop) fires
   * first: a stop ends the walk, so the index would never be built and a waiter never woken.
   */
  whenBuilt(signal?: AbortSignal): Promise<void> {
    if (this.built) return Promise.resolve();
    if (signal?.aborted) return Promise.reject(new StoppingError('waiting for the walk of the cache'));
    return new Promise((resolve, reject) => {
      const abort = (): void => {
        const i = this.waiting.indexOf(wake);
        if (i >= 0) this.waiting.splice(i, 1);
        reject(new StoppingError('waiting for the walk of the cache'));
      };
      const wake = (): void => {
        signal?.removeEventListener('abort', abort);
        resolve();
      };
      this.waiting.push(wake);
      signal?.addEventListener('abort', abort, { once: true });
    });
  }

  /** The names of the repositories seen (walked or linked since), sorted; some may have been emptied since. */
  repositories(): string[] {
    return [...this.names.keys()].sort();
  }

  /** No repository links the digest of `slot` any more. */
  private forget(slot: number): void {
    this.digests.remove(slot);
    this.linkersAt[slot] = undefined;
  }

  private intern(repo: string): string {
    let s = this.names.get(repo);
    if (s === undefined) this.names.set(repo, (s = repo));
    return s;
  }
}

/** Told of the repositories this process creates and deletes (lib/storage/repository-index.ts). */
export interface CatalogObserver {
  saw(name: string): void;
  forgot(name: string): void;
}

/**
 * The repository store of each stored name, reporting to `links` and `catalog`: what the stores of
 * every namespace open per request (built here, so that the composition root is not on that way).
 */
export function observedRepositories(driver: StorageDriver, links: LinkIndex, catalog?: CatalogObserver): (name: string) => RepositoryStore {
  return (name) => new ObservedRepositoryStore(driver, name, links, catalog);
}

/** A repository store that reports its links to a `LinkIndex`, and new and deleted repositories to the catalog. */
export class ObservedRepositoryStore extends RepositoryStore {
  constructor(
    driver: StorageDriver,
    name: string,
    private readonly links: LinkIndex,
    private readonly catalog?: CatalogObserver,
  ) {
    super(driver, name);
  }

  override async delete(): Promise<void> {
    await super.delete();
    this.catalog?.forgot(this.name);
  }

  override linkLayer(d: Digest): Promise<void> {
    this.links.linked(this.name, d.value);
    return super.linkLayer(d);
  }

  override async unlinkLayer(d: Digest): Promise<void> {
    await super.unlinkLayer(d);
    if (!(await this.hasRevision(d))) this.links.unlinked(this.name, d.value);
  }

  override async linkRevision(d: Digest): Promise<void> {
    this.links.linked(this.name, d.value);
    await super.linkRevision(d);
    // `_manifests` exists now: the repository is in the catalog.
    this.catalog?.saw(this.name);
  }

  override async unlinkRevision(d: Digest): Promise<void> {
    await super.unlinkRevision(d);
    if (!(await this.hasLayer(d))) this.links.unlinked(this.name, d.value);
  }

  override async tag(tag: string, d: Digest): Promise<void> {
    // Whether the tag is new, read while the index entry is written: `current` changes only after
    // both (on S3 a round trip less on a cold manifest's way).
    const [had] = await Promise.all([this.resolveTag(tag).then((t) => t !== undefined), this.indexTag(tag, d)]);
    await this.pointTag(tag, d);
    this.catalog?.saw(this.name);
    if (!had) this.links.tagsOf(this.name, { delta: 1 });
  }

  override async untag(tag: string): Promise<void> {
    const had = (await this.resolveTag(tag)) !== undefined;
    await super.untag(tag);
    if (had) this.links.tagsOf(this.name, { delta: -1 });
  }
}
