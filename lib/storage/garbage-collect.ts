/**
 * `registry garbage-collect`: mark and sweep over distribution's layout, as distribution's
 * `registry/storage/garbagecollect.go`. Mark: every manifest revision of every repository (with
 * `--delete-untagged`, only those a tag reaches, directly or through an index) and the blobs it
 * references. Sweep: every blob not marked. Safe on a data directory the official registry wrote;
 * it must not run while a registry writes to the same directory, as with distribution.
 */
import type { Config } from '../config/types.js';
import { parseDigest, type Digest } from '../distribution/digest.js';
import { references, tryParseManifest, type ParsedManifest } from '../distribution/manifest.js';
import { createDriver } from './factory.js';
import { BlobStore, listOrEmpty } from './blob-store.js';
import { RepositoryStore } from './repository-store.js';
import { forEachInOrder, listRepositories } from './catalog.js';
import { blobsRoot } from './paths.js';
import type { StorageDriver } from './driver.js';

/** Options of a collection. */
export interface GcOptions {
  /** Report what would be deleted without deleting anything. */
  readonly dryRun: boolean;
  /** Also delete manifests no tag reaches (`--delete-untagged`). */
  readonly removeUntagged: boolean;
  /** Receives each output line. */
  readonly out: (line: string) => void;
}

/** What a collection found and did. */
export interface GcSummary {
  readonly blobsMarked: number;
  readonly blobsDeleted: number;
  readonly manifestsDeleted: number;
  readonly bytesFreed: number;
}

/** Runs a collection on the storage `config` names. */
export async function garbageCollect(config: Config, opts: GcOptions): Promise<GcSummary> {
  return collect(await createDriver(config.storage), opts);
}

/** Repositories and manifests read at once (the output keeps the walk's order). */
const PARALLEL = 8;

/** What the mark phase found in one repository. */
interface RepositoryMarks {
  readonly lines: string[];
  readonly marked: string[];
  readonly doomed: Array<{ repo: RepositoryStore; name: string; digest: Digest }>;
}

async function markRepository(driver: StorageDriver, blobs: BlobStore, name: string, removeUntagged: boolean): Promise<RepositoryMarks> {
  const lines = [name];
  const marked: string[] = [];
  const doomed: RepositoryMarks['doomed'] = [];
  const repo = new RepositoryStore(driver, name);
  const revisions = await revisionsOf(repo);
  const kept = removeUntagged ? await reachableFromTags(repo, blobs, revisions) : new Set(revisions.map((d) => d.value));
  await forEachInOrder(
    revisions,
    PARALLEL,
    (digest) => (kept.has(digest.value) ? readManifest(blobs, digest) : Promise.resolve(undefined)),
    (payload, digest) => {
      if (!kept.has(digest.value)) {
        lines.push(`manifest eligible for deletion: ${name}@${digest.value}`);
        doomed.push({ repo, name, digest });
        return;
      }
      if (!payload) return;
      lines.push(`${name}: marking manifest ${digest.value}`);
      marked.push(digest.value);
      for (const { digest: ref } of references(payload)) {
        lines.push(`${name}: marking blob ${ref.value}`);
        marked.push(ref.value);
      }
    },
  );
  return { lines, marked, doomed };
}

/**
 * The manifest revisions of a repository, from the names of its revision directories: marking
 * trusts the name without reading the link (a directory whose link is missing or wrong marks a
 * manifest too many, which only keeps data), one listing per repository instead of a read per link.
 */
async function revisionsOf(repo: RepositoryStore): Promise<Digest[]> {
  return (await repo.revisionNames()).flatMap((name) => parseDigest(name) ?? []);
}

/**
 * The blobs not marked, in the layout's order (`blobs/<alg>/<xx>/<hex>/data`), a few directories
 * listed at a time: only those are checked for their `data` (a directory without it, left by an
 * interrupted delete, is not a blob), so a marked blob costs no system call beyond its listing.
 */
async function unmarkedBlobs(driver: StorageDriver, marked: ReadonlySet<string>): Promise<Digest[]> {
  const found: Digest[] = [];
  for (const algorithm of (await listOrEmpty(driver, blobsRoot())).sort()) {
    const prefixes = (await listOrEmpty(driver, `${blobsRoot()}/${algorithm}`)).sort();
    await forEachInOrder(
      prefixes,
      PARALLEL,
      async (prefix) => {
        const dir = `${blobsRoot()}/${algorithm}/${prefix}`;
        const candidates = (await listOrEmpty(driver, dir)).sort().flatMap((hex) => {
          const d = parseDigest(`${algorithm}:${hex}`);
          return d && hex.startsWith(prefix) && !marked.has(d.value) ? [d] : [];
        });
        const present: Digest[] = [];
        await forEachInOrder(
          candidates,
          PARALLEL,
          (d) => driver.stat(`${dir}/${d.hex}/data`),
          (info, d) => void (info && !info.isDir && present.push(d)),
        );
        return present;
      },
      (present) => void found.push(...present),
    );
  }
  return found;
}

/** Runs a collection on `driver`. */
export async function collect(driver: StorageDriver, opts: GcOptions): Promise<GcSummary> {
  const blobs = new BlobStore(driver);
  const marked = new Set<string>();
  const doomed: RepositoryMarks['doomed'] = [];

  await forEachInOrder(
    await listRepositories(driver, {}),
    PARALLEL,
    (name) => markRepository(driver, blobs, name, opts.removeUntagged),
    (r) => {
      for (const line of r.lines) opts.out(line);
      for (const d of r.marked) marked.add(d);
      doomed.push(...r.doomed);
    },
  );

  let blobsDeleted = 0;
  let bytesFreed = 0;
  let eligible = 0;
  const deleted = new Set<string>();
  for (const digest of await unmarkedBlobs(driver, marked)) {
    eligible++;
    opts.out(`blob eligible for deletion: ${digest.value}`);
    if (opts.dryRun) continue;
    const info = await blobs.stat(digest);
    await blobs.delete(digest);
    deleted.add(digest.value);
    blobsDeleted++;
    bytesFreed += info?.size ?? 0;
  }
  if (!opts.dryRun) {
    for (const { repo, digest } of doomed) {
      for (const tag of await repo.tagsFor(digest)) await repo.untag(tag);
      await repo.unlinkRevision(digest);
    }
    // Links to data that is gone would only make the registry stat missing files.
    if (deleted.size > 0) {
      for (const name of await listRepositories(driver, {})) {
        const repo = new RepositoryStore(driver, name);
        for (const d of await repo.listLayers()) if (deleted.has(d.value)) await repo.unlinkLayer(d);
      }
    }
  }
  opts.out(`\n${marked.size} blobs marked, ${eligible} blobs and ${doomed.length} manifests eligible for deletion`);
  if (!opts.dryRun) opts.out(`deleted ${blobsDeleted} blobs and ${doomed.length} manifests, freed ${bytesFreed} bytes`);
  return { blobsMarked: marked.size, blobsDeleted, manifestsDeleted: opts.dryRun ? 0 : doomed.length, bytesFreed };
}

/** The revisions a tag reaches, directly or through the indexes it points at. */
async function reachableFromTags(repo: RepositoryStore, blobs: BlobStore, revisions: Digest[]): Promise<Set<string>> {
  const present = new Set(revisions.map((d) => d.value));
  const kept = new Set<string>();
  const queue: Digest[] = [];
  for (const tag of await repo.listTags()) {
    const d = await repo.resolveTag(tag);
    if (d) queue.push(d);
  }
  while (queue.length > 0) {
    const d = queue.pop()!;
    if (kept.has(d.value) || !present.has(d.value)) continue;
    kept.add(d.value);
    const payload = await readManifest(blobs, d);
    if (payload) queue.push(...payload.refs.manifests.map((c) => c.digest));
  }
  return kept;
}

async function readManifest(blobs: BlobStore, digest: Digest): Promise<ParsedManifest | undefined> {
  try {
    return tryParseManifest(await blobs.get(digest));
  } catch {
    return undefined;
  }
}
