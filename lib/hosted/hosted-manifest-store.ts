/**
 * Manifests and tags of hosted repositories (distribution's `manifestStore` and `tagStore` in
 * non-proxy mode): a pushed manifest is stored as a blob, linked as a revision and, when pushed by
 * tag, tagged (index entry first, then `current`), byte for byte the layout the official registry
 * writes and reads. Reads come from local storage only.
 */
import { digestOf, type Digest } from '../distribution/digest.js';
import { mediaTypeOfPayload } from '../distribution/manifest.js';
import { DigestInvalidError, ManifestUnknownError, RepositoryUnknownError } from '../errors.js';
import type { Manifest, ManifestRef, ManifestService, PageRequest, TagPage, TagService } from '../stores.js';
import type { BlobStore } from '../storage/blob-store.js';
import type { RepositoryStore } from '../storage/repository-store.js';
import type { Descriptor } from '../distribution/manifest.js';
import { checkClass, checkManifest, verifyReferences, type IndexValidation, type LayerUrls, type PushValidation } from './manifest-verify.js';

/** What a successful push reports. */
interface PushedManifest {
  readonly digest: Digest;
  readonly subject?: Descriptor;
}

/** The manifest side of hosted repositories. */
export class HostedManifestStore implements ManifestService {
  /** `validation.manifests.urls`, compiled once. */
  private readonly urls: LayerUrls;
  private readonly indexes: IndexValidation;
  private readonly classes: readonly string[];

  constructor(
    private readonly blobs: BlobStore,
    private readonly repository: (name: string) => RepositoryStore,
    validation: PushValidation,
  ) {
    const compiled = (pattern: string | undefined): RegExp | undefined => (pattern === undefined ? undefined : new RegExp(pattern));
    this.urls = { allow: compiled(validation.urls.allow), deny: compiled(validation.urls.deny) };
    this.indexes = validation.indexes;
    this.classes = validation.classes;
  }

  /** The manifest `name@digest`; `MANIFEST_UNKNOWN` unless it is a revision of `name`. */
  async getByDigest(name: string, digest: Digest): Promise<Manifest> {
    if (!(await this.repository(name).hasRevision(digest))) throw unknownManifest(digest.value);
    let payload: Buffer;
    try {
      payload = await this.blobs.get(digest);
    } catch {
      throw unknownManifest(digest.value);
    }
    const mediaType = mediaTypeOfPayload(payload);
    if (!mediaType) throw unknownManifest(digest.value);
    return { digest, mediaType, payload, source: 'cache' };
  }

  /** The manifest a tag points at. */
  async getByTag(name: string, tag: string): Promise<Manifest> {
    const digest = await this.repository(name).resolveTag(tag);
    if (!digest) throw new ManifestUnknownError({ tag });
    return this.getByDigest(name, digest);
  }

  /**
   * Stores a pushed manifest after checking it (`MANIFEST_INVALID`, `DIGEST_INVALID` for a payload
   * that does not hash to the URL's digest, `DENIED` for a class `policy.repository.classes` or the
   * client's token (`grantedClasses`, `checkClass`) refuses, `MANIFEST_BLOB_UNKNOWN` for missing
   * references), in distribution's order.
   */
  async put(name: string, ref: ManifestRef, contentType: string | undefined, payload: Buffer, grantedClasses?: readonly string[]): Promise<PushedManifest> {
    const parsed = checkManifest(contentType, payload, this.urls);
    const digest = 'digest' in ref ? ref.digest : undefined;
    const actual = digestOf(payload, digest?.algorithm ?? 'sha256');
    if (digest && actual !== digest.value) throw new DigestInvalidError(`payload digest is ${actual}, not ${digest.value}`);
    checkClass(parsed, this.classes, grantedClasses);
    const repo = this.repository(name);
    await verifyReferences(
      parsed,
      {
        layer: async (d) => (await repo.hasLayer(d)) && (await this.blobs.stat(d)) !== undefined,
        revision: async (d) => (await repo.hasRevision(d)) && (await this.blobs.stat(d)) !== undefined,
      },
      this.indexes,
    );
    const stored = digest ?? { algorithm: 'sha256' as const, hex: actual.slice('sha256:'.length), value: actual };
    await this.blobs.put(stored, payload);
    await repo.linkRevision(stored);
    if ('tag' in ref) await repo.tag(ref.tag, stored);
    return { digest: stored, subject: parsed.subject };
  }

  /**
   * distribution's `DeleteManifest`: a tag is untagged; a digest loses its revision link and every
   * tag pointing at it. The data stays for `garbage-collect`. Resolves with the tags removed.
   */
  async delete(name: string, ref: ManifestRef): Promise<string[]> {
    const repo = this.repository(name);
    if ('tag' in ref) {
      if (!(await repo.resolveTag(ref.tag))) throw new ManifestUnknownError({ tag: ref.tag });
      await repo.untag(ref.tag);
      return [ref.tag];
    }
    if (!(await repo.hasRevision(ref.digest))) throw unknownManifest(ref.digest.value);
    await repo.unlinkRevision(ref.digest);
    const tags = await repo.tagsFor(ref.digest);
    for (const tag of tags) await repo.untag(tag);
    return tags;
  }
}

/** Tag listing of hosted repositories: local tags, `NAME_UNKNOWN` for a repository that does not exist. */
export class HostedTagService implements TagService {
  constructor(private readonly repository: (name: string) => RepositoryStore) {}

  /** Every tag (the route paginates pages that do not come from an upstream). */
  async list(name: string, _page: PageRequest): Promise<TagPage> {
    const repo = this.repository(name);
    const tags = await repo.listTags();
    if (tags.length === 0 && !(await repo.exists())) throw new RepositoryUnknownError(name);
    return { tags, paged: false };
  }
}

function unknownManifest(digest: string): ManifestUnknownError {
  return new ManifestUnknownError({ digest });
}
