/**
 * The directories of `repositories/` as last seen, kept up to date by stats (the thread of
 * lib/storage/repository-probe-thread.ts runs it, off the registry's event loop). A directory is
 * read again only when its modification time changed: every writer (this process, a replica, a
 * registry:2 on the same volume, an operator's `rm -r`) that adds or removes an entry changes the
 * mtime of the directory holding it, and a repository is nothing but a directory holding
 * `_manifests`. So a pass costs one `stat` per directory, and one listing per directory changed.
 *
 * The names it finds are those of `listRepositories` (lib/storage/catalog.ts), which the specs
 * hold it to: `_`-prefixed entries are not descended into, a file lists as empty, a directory
 * holding `_manifests` is a repository when its path is a valid name.
 */
import { readdirSync, statSync } from 'node:fs';
import { isValidName } from '../distribution/reference.js';
import { MANIFESTS_ENTRY, RESERVED_PREFIX } from './paths.js';

/**
 * A listing read within this long after its directory's mtime was stamped is read once more before
 * it is trusted: a change made in the same tick of the filesystem's clock as the read (a jiffy on
 * ext4, a second on some network servers, two on FAT) leaves the mtime as it was. Past that
 * tick, any change gives a new mtime. Measured on our clock, so a server's skew does not matter.
 */
export const RACY_MS = 3000;

/** One directory as last read. */
interface Dir {
  /** The mtime (ns) seen by the stat made before the listing was read; -1 for a file. */
  mtime: bigint;
  /** When that stat was made (ms, `monotonicMs`). */
  readAt: number;
  /** True once a read made `RACY_MS` after an earlier one saw the same mtime. */
  trusted: boolean;
  repository: boolean;
  /** The entries to descend into (not `_`-prefixed), sorted; none for most (a repository's only entries are `_`-prefixed). */
  children?: Map<string, Dir>;
}

/** Milliseconds on a clock all threads of the process share (CLOCK_MONOTONIC). */
export const monotonicMs = (): number => Number(process.hrtime.bigint()) / 1e6;

/** A name as distribution orders paths: component by component (`/` below every other character). */
export const pathKey = (name: string): string => name.replaceAll('/', '\0');

const join = (path: string, name: string): string => (path ? `${path}/${name}` : name);

/** `repositories/` on a local or network filesystem, mirrored by stats. */
export class RepositoryTree {
  private root: Dir | undefined;
  /** The repositories found, by name. */
  readonly repositories = new Set<string>();
  /** Directories listed by the last pass (for the logs and the specs). */
  lastReads = 0;

  /** `dir`: the absolute path of `repositories/`. */
  constructor(private readonly dir: string) {}

  /**
   * One pass over the tree: stats every directory, reads those changed (or not yet trusted), and
   * returns the repositories that appeared (true) or disappeared (false) since the last pass.
   */
  pass(): Map<string, boolean> {
    const changes = new Map<string, boolean>();
    this.lastReads = 0;
    this.root = this.visit('', this.dir, this.root, changes);
    return changes;
  }

  /** Every repository, in distribution's order. */
  sorted(): string[] {
    return [...this.repositories].map(pathKey).sort();
  }

  private visit(path: string, full: string, known: Dir | undefined, changes: Map<string, boolean>): Dir | undefined {
    const st = statSync(full, { bigint: true, throwIfNoEntry: false });
    const now = monotonicMs();
    if (!st) {
      if (known) this.forget(path, known, changes);
      return undefined;
    }
    const mtime = st.isDirectory() ? st.mtimeNs : -1n;
    let dir = known;
    if (!dir || dir.mtime !== mtime || (!dir.trusted && now - dir.readAt >= RACY_MS)) {
      const confirmed = dir !== undefined && dir.mtime === mtime;
      dir = this.read(path, full, mtime, now, dir, changes);
      dir.trusted = confirmed;
    }
    for (const [name, child] of dir.children ?? []) {
      const seen = this.visit(join(path, name), `${full}/${name}`, child, changes);
      if (seen) dir.children!.set(name, seen);
      else dir.children!.delete(name);
    }
    return dir;
  }

  /** Reads one directory's entries; children that went are forgotten, new ones are visited by the caller. */
  private read(path: string, full: string, mtime: bigint, now: number, known: Dir | undefined, changes: Map<string, boolean>): Dir {
    this.lastReads++;
    let entries: string[] = [];
    if (mtime >= 0n) {
      try {
        entries = readdirSync(full);
      } catch (err) {
        // Gone (or a file now) since the stat: empty, as the walk's listing would be.
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== 'ENOENT' && code !== 'ENOTDIR') throw err;
      }
    }
    const repository = path !== '' && entries.includes(MANIFESTS_ENTRY) && isValidName(path);
    if (repository !== (known?.repository ?? false)) this.mark(path, repository, changes);
    const names = entries.filter((e) => !e.startsWith(RESERVED_PREFIX)).sort();
    const children = names.length === 0 ? undefined : new Map<string, Dir>();
    for (const name of names) children!.set(name, known?.children?.get(name) ?? { mtime: -2n, readAt: now, trusted: false, repository: false });
    for (const [name, child] of known?.children ?? []) if (!children?.has(name)) this.forget(join(path, name), child, changes);
    return { mtime, readAt: now, trusted: false, repository, children };
  }

  private mark(path: string, present: boolean, changes: Map<string, boolean>): void {
    if (present) this.repositories.add(path);
    else this.repositories.delete(path);
    changes.set(path, present);
  }

  /** A directory that went, with everything below it. */
  private forget(path: string, dir: Dir, changes: Map<string, boolean>): void {
    if (dir.repository) this.mark(path, false, changes);
    for (const [name, child] of dir.children ?? []) this.forget(join(path, name), child, changes);
  }
}
