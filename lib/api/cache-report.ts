/**
 * What the cache page shows, one page at a time: the summary (hit ratio and bytes saved from the
 * metrics, disk use against the cap, the numbers of repositories and tags from counters kept as
 * links come and go), each upstream's status, and one page of cached tags (digest, kind, size, last
 * pull, expiry) in catalog order, optionally filtered by a text the repository or tag contains.
 *
 * A page costs what it shows, never the size of the cache: the catalog is walked only as far as
 * the page reaches, a repository's tags are one directory listing, and only the tags on the page
 * are read. A filter that matches little may have to look far: it stops after a time budget and
 * the page links to where it stopped.
 */
import type { Digest } from '../distribution/digest.js';
import { tryParseManifest, type ParsedManifest } from '../distribution/manifest.js';
import { isIndexType } from '../distribution/mediatypes.js';
import { forEachInOrder } from '../storage/catalog.js';
import type { BudgetSnapshot } from '../proxy/upstream-guards.js';
import type { UpstreamStatus } from '../proxy/upstream.js';

/** One cached tag. */
export interface TagReport {
  readonly tag: string;
  readonly digest: string;
  readonly kind: 'image' | 'index' | 'other';
  /** Platforms of an index (cached or not). */
  readonly platforms?: number;
  /** Bytes of the config and layers (of every cached platform for an index). */
  readonly size: number;
  readonly lastPulled?: Date;
  readonly expires?: Date;
}

/** One row of the table: a tag, or a repository that has manifests cached by digest only. */
export type ImageRow = { readonly repo: string; readonly tag: TagReport } | { readonly repo: string; readonly untagged: number };

/** An upstream as the page shows it. */
export interface UpstreamReport extends UpstreamStatus {
  readonly host: string;
  readonly url: string;
  /** Docker Hub's `RateLimit-Remaining` as last seen (`76;w=21600`). */
  readonly rateLimitRemaining?: string;
  /** The rate-limit budget's state and what the mirror spent of it (`proxy/budget.ts`). */
  readonly budget?: BudgetSnapshot;
}

/** Which page: rows after `after` (`repo:tag`, or `repo:` for a repository's untagged row), `n` of them, matching `q`. */
interface PageQuery {
  readonly q?: string;
  readonly after?: string;
  readonly n: number;
}

/** The whole page's data. */
export interface CacheReport {
  readonly generatedAt: Date;
  readonly rows: readonly ImageRow[];
  /** The query, and where the next page starts (undefined at the end). */
  readonly page: PageQuery & { readonly next?: string; readonly stoppedEarly?: boolean };
  /** Repositories and tags cached; `complete` false while the start-up walk still counts. */
  readonly counts?: { readonly repositories: number; readonly tags: number; readonly complete: boolean };
  readonly stats: { readonly requests: number; readonly hits: number; readonly bytesServed: number; readonly bytesFetched: number };
  readonly upstreams: readonly UpstreamReport[];
  readonly disk: { readonly cacheBytes?: number; readonly capBytes?: number; readonly volumeBytes?: number; readonly volumeFree?: number };
}

/** What the page reads of one stored repository (lib/storage's repository store fits). */
interface ReportRepository {
  tagNames(): Promise<string[]>;
  revisionNames(): Promise<string[]>;
  resolveTag(tag: string): Promise<Digest | undefined>;
  hasRevision(digest: Digest): Promise<boolean>;
  /** When the revision was linked (the last pull of content not pulled since the start). */
  linkedAt(digest: Digest): Promise<Date | undefined>;
}

/** What the page reads of stored blobs: a manifest's bytes. */
interface ReportBlobs {
  get(digest: Digest): Promise<Buffer>;
}

/** Where the report comes from (wired by the server). */
export interface CacheReportSources {
  /** A page of the catalog (after `last`, at most `n`). */
  listRepositories(page: { n: number; last?: string }): Promise<string[]>;
  repository(name: string): ReportRepository;
  readonly blobs: ReportBlobs;
  expiryOf(repo: string, digest: string): Date | undefined;
  lastPulled(repo: string, digest: string): Date | undefined;
  upstreams(): UpstreamReport[];
  stats(): Promise<CacheReport['stats']>;
  /** Repositories and tags cached, when counted. */
  counts?(): CacheReport['counts'];
  /** Blob bytes tracked by the size cap, and the cap, when one is set. */
  cap(): { cacheBytes?: number; capBytes?: number };
  /** The storage medium's size and free space, where the driver knows them (not on S3). */
  diskUsage(): Promise<{ readonly totalBytes: number; readonly freeBytes: number } | undefined>;
}

/** Rows per page by default, and at most. */
export const PAGE_ROWS = 100;
const MAX_PAGE_ROWS = 1000;
/** How long a page looks for rows that match its filter before it links to where it stopped. */
const SEARCH_BUDGET_MS = 2000;
/** Catalog names fetched per step of the walk. */
const CATALOG_STEP = 100;

/** The page's query from request parameters (anything unusable falls back to the defaults). */
export function pageQuery(params: { q?: unknown; after?: unknown; n?: unknown }): PageQuery {
  const q = typeof params.q === 'string' && params.q.trim() !== '' ? params.q.trim().toLowerCase().slice(0, 200) : undefined;
  const after = typeof params.after === 'string' && params.after.includes(':') ? params.after.slice(0, 512) : undefined;
  const n = typeof params.n === 'string' && /^\d+$/.test(params.n) ? Math.min(Math.max(Number(params.n), 1), MAX_PAGE_ROWS) : PAGE_ROWS;
  return { q, after, n };
}

/** Gathers one page; a manifest that cannot be read counts as size 0, never fails the page. */
export async function gatherCacheReport(src: CacheReportSources, query: PageQuery = { n: PAGE_ROWS }, now: () => number = Date.now): Promise<CacheReport> {
  const found = await pageRows(src, query, now);
  const fs = await src.diskUsage().catch(() => undefined);
  return {
    generatedAt: new Date(),
    rows: found.rows,
    page: { ...query, next: found.next, stoppedEarly: found.stoppedEarly },
    counts: src.counts?.(),
    stats: await src.stats(),
    upstreams: src.upstreams(),
    disk: { ...src.cap(), volumeBytes: fs?.totalBytes, volumeFree: fs?.freeBytes },
  };
}

/** A row before its tag is read. */
type Candidate = { readonly repo: string; readonly tag: string } | { readonly repo: string; readonly untagged: number };

const cursorOf = (c: Candidate): string => `${c.repo}:${'tag' in c ? c.tag : ''}`;

/** Repository names in catalog order: `after` first (the rest of its tags), then the catalog after it. */
async function* repositoryNames(src: CacheReportSources, after: string | undefined): AsyncGenerator<string> {
  if (after !== undefined) yield after;
  for (let last = after; ;) {
    const names = await src.listRepositories({ n: CATALOG_STEP, last });
    yield* names;
    if (names.length < CATALOG_STEP) return;
    last = names[names.length - 1];
  }
}

/** The page's rows and the cursor of the next page. */
async function pageRows(src: CacheReportSources, query: PageQuery, now: () => number): Promise<{ rows: ImageRow[]; next?: string; stoppedEarly?: boolean }> {
  const deadline = now() + SEARCH_BUDGET_MS;
  const cut = query.after?.lastIndexOf(':') ?? -1;
  const afterRepo = cut >= 0 ? query.after!.slice(0, cut) : undefined;
  const afterTag = cut >= 0 ? query.after!.slice(cut + 1) : undefined;
  const matches = (text: string): boolean => query.q === undefined || text.toLowerCase().includes(query.q);
  const candidates: Candidate[] = [];
  let full = false;
  let resume = afterRepo !== undefined;
  const add = (c: Candidate): boolean => {
    if (candidates.length === query.n) return !(full = true);
    candidates.push(c);
    return true;
  };
  for await (const name of repositoryNames(src, afterRepo)) {
    const repo = src.repository(name);
    const tags = await repo.tagNames();
    let room = true;
    for (const tag of tags) {
      if (resume && tag <= afterTag!) continue;
      if (matches(`${name}:${tag}`) && !(room = add({ repo: name, tag }))) break;
    }
    // A repository with manifests but no tag gets one row (not again when the page resumes after it).
    if (room && tags.length === 0 && !resume && matches(name)) {
      const untagged = (await repo.revisionNames()).length;
      if (untagged > 0) room = add({ repo: name, untagged });
    }
    resume = false;
    if (!room) break;
    if (query.q !== undefined && now() > deadline) {
      // A filter that matches little: show what was found, and go on from here on the next page.
      return { rows: await describe(src, candidates), next: `${name}:\uffff`, stoppedEarly: true };
    }
  }
  const rows = await describe(src, candidates);
  return { rows, next: full ? cursorOf(candidates[candidates.length - 1]!) : undefined };
}

/** Reads what each row shows, a few at a time; a tag whose manifest is not cached is left out. */
async function describe(src: CacheReportSources, candidates: readonly Candidate[]): Promise<ImageRow[]> {
  const rows: ImageRow[] = [];
  await forEachInOrder(
    candidates,
    8,
    async (c): Promise<ImageRow | undefined> => {
      if (!('tag' in c)) return c;
      const repo = src.repository(c.repo);
      const digest = await repo.resolveTag(c.tag).catch(() => undefined);
      if (!digest || !(await repo.hasRevision(digest))) return undefined;
      const m = await readManifest(src.blobs, digest);
      const kind = m?.mediaType === undefined ? 'other' : isIndexType(m.mediaType) ? 'index' : 'image';
      return {
        repo: c.repo,
        tag: {
          tag: c.tag,
          digest: digest.value,
          kind,
          platforms: kind === 'index' ? (Array.isArray(m?.doc.manifests) ? m.doc.manifests.length : 0) : undefined,
          size: await imageSize(src, repo, m, kind),
          lastPulled: src.lastPulled(c.repo, digest.value) ?? (await repo.linkedAt(digest)),
          expires: src.expiryOf(c.repo, digest.value),
        },
      };
    },
    (row) => void (row && rows.push(row)),
  );
  return rows;
}

async function readManifest(blobs: ReportBlobs, digest: Digest): Promise<ParsedManifest | undefined> {
  try {
    return tryParseManifest(await blobs.get(digest));
  } catch {
    return undefined;
  }
}

/** Config and layer bytes; for an index, summed over the platforms cached in this repository. */
async function imageSize(src: CacheReportSources, repo: ReportRepository, m: ParsedManifest | undefined, kind: TagReport['kind']): Promise<number> {
  if (!m) return 0;
  const { config, layers, manifests } = m.refs;
  if (kind === 'image') return [config, ...layers].reduce((sum, d) => sum + (d?.size ?? 0), 0);
  if (kind !== 'index') return 0;
  let total = 0;
  for (const { digest } of manifests) {
    if (!(await repo.hasRevision(digest))) continue;
    const inner = await readManifest(src.blobs, digest);
    if (inner?.mediaType && !isIndexType(inner.mediaType)) total += await imageSize(src, repo, inner, 'image');
  }
  return total;
}
