/**
 * The store contracts, as distribution's root package (`blobs.go`, `manifests.go`, `tags.go`): what
 * the routes read from one repository. The pull-through stores (lib/proxy) and the hosted ones
 * (lib/hosted) both implement them, so lib/api knows neither. Types only: this module sits above
 * lib/distribution and below everything that stores or serves content.
 */
import type { Readable } from 'node:stream';
import type { FileHandle } from 'node:fs/promises';
import type { Digest } from './distribution/digest.js';

/** The two kinds of content a registry stores (the `type` label of distribution's proxy metrics). */
export type ContentType = 'blob' | 'manifest';

/** Where an answer came from: `cache` when storage had it, `upstream` when the upstream was asked (or a fetch joined). */
type Source = 'cache' | 'upstream';

/** What the routes need to answer a blob `GET`. */
export interface BlobHandle {
  readonly size: number | undefined;
  readonly source: Source;
  /** Opens the bytes `[start, end]` (inclusive). */
  open(range?: { start: number; end: number }): Promise<Readable>;
  /**
   * For content on local disk: a handle for positional reads, which the routes send with reused
   * buffers; resolves undefined when the file is gone since the lookup (the routes then `open`).
   */
  openFile?(): Promise<FileHandle | undefined> | undefined;
  /** For stored content: where the client may fetch the bytes itself (see `Redirect`). */
  readonly redirect?: Redirect;
}

/**
 * distribution's `blobServer` redirect: the URL of a stored blob's bytes for `GET` or `HEAD` (S3 with
 * `storage.redirect` on: presigned), undefined when the registry serves them itself.
 */
export type Redirect = (method: string) => Promise<string | undefined>;

/** What the routes need to answer a blob `HEAD`. */
export interface BlobInfo {
  readonly size: number | undefined;
  readonly source: Source;
  readonly redirect?: Redirect;
}

/** The blobs of repositories (distribution's `BlobStatter` and `BlobProvider`). */
export interface BlobService {
  /** The blob `name@digest` for a `GET`; throws when the repository does not have it. */
  get(name: string, digest: Digest): Promise<BlobHandle>;
  /** The blob's size for a `HEAD`. */
  stat(name: string, digest: Digest): Promise<BlobInfo>;
}

/** A manifest ready to be sent. */
export interface Manifest {
  readonly digest: Digest;
  readonly mediaType: string;
  readonly payload: Buffer;
  /** `cache` when no upstream content request was needed. */
  readonly source: Source;
  /** Set when served from the cache because the upstream failed (logged by the caller). */
  readonly stale?: Error;
}

/** A manifest as a URL names it: by tag or by digest. */
export type ManifestRef = { readonly tag: string } | { readonly digest: Digest };

/** The manifests of repositories (distribution's `ManifestService` and `TagService.Get`). */
export interface ManifestService {
  getByDigest(name: string, digest: Digest): Promise<Manifest>;
  getByTag(name: string, tag: string): Promise<Manifest>;
}

/** Which page of a tag list is asked for: the tags after `last`, at most `n` (all when undefined). */
export interface PageRequest {
  readonly n?: number;
  readonly last?: string;
}

/** One page of a tag list. */
export interface TagPage {
  readonly tags: string[];
  /** Where the next page starts, if there is one (the `Link` header's `last` and `n`). */
  readonly next?: { last: string; n: number };
  /**
   * True when this is the page to send (an upstream paged it, `next` says where the next one starts);
   * false for every tag there is after `last`, in any order, which the route sorts and pages
   * (lib/api/paging.ts): stored tags, or an upstream's list it did not page (distribution 2.8
   * ignores `n` and `last` and does not sort).
   */
  readonly paged: boolean;
}

/** The tags of repositories (distribution's `TagService.All`). */
export interface TagService {
  list(name: string, page: PageRequest): Promise<TagPage>;
}

/** One entry of a referrers list: the descriptor of a manifest whose `subject` is the asked digest. */
export interface ReferrerDescriptor {
  mediaType: string;
  digest: string;
  size: number;
  artifactType?: string;
  annotations?: Record<string, string>;
}

/** A referrers answer: the OCI index to send, and whether the `artifactType` filter was applied. */
export interface ReferrersResult {
  readonly index: { schemaVersion: 2; mediaType: string; manifests: ReferrerDescriptor[] };
  readonly filtered: boolean;
}

/** The OCI 1.1 referrers of repositories (`GET /v2/<name>/referrers/<digest>`). */
export interface ReferrersService {
  /** The manifests of `name` whose subject is `subject`, only those of `artifactType` when given; none is an empty list. */
  list(name: string, subject: Digest, artifactType: string | undefined): Promise<ReferrersResult>;
}

/** What a pull-through store reports of one kind of content (the scheduler, size cap and metrics listen). */
export interface CacheEvents {
  /** Content was committed to the cache and linked into `repo`. */
  stored?(repo: string, digest: Digest, size: number): void;
  /** Cached content was served to a client of `repo`. */
  hit?(repo: string, digest: Digest): void;
  /** The content was not cached and was asked of the upstream. */
  miss?(repo: string, digest: Digest): void;
  /** The storage refused content being cached; its clients were served from the upstream regardless. */
  cacheWriteFailed?(repo: string, digest: Digest, err: Error): void;
}

/** The same events for both kinds of content, each told its `type` (what one registry's bookkeeping listens to). */
export type TypedCacheEvents = {
  readonly [K in keyof CacheEvents]-?: (type: ContentType, ...args: Parameters<NonNullable<CacheEvents[K]>>) => void;
};
