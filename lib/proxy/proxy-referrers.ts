/**
 * The OCI 1.1 referrers API for cached repositories. distribution's proxy has none (its route does
 * not exist), so clients fall back to the referrers tag schema; a mirror that answers the API must
 * answer it as the upstream would. The upstream's own referrers API is asked first (nothing of it is
 * cached: the list changes whenever someone pushes a signature). An upstream without the API
 * (`404`, or `405` from a registry that refuses it) is read through the referrers tag schema
 * (`<alg>-<hex>`, what OCI clients push to such registries) as an ordinary tag of the pull-through
 * cache: cached, and served from the cache when the upstream is down (then the cached tag answers
 * even for an upstream with the API). No tag: an empty list.
 */
import type { Digest } from '../distribution/digest.js';
import { tryParseManifest, type Descriptor } from '../distribution/manifest.js';
import { MediaType, isIndexType } from '../distribution/mediatypes.js';
import type { ManifestService, ReferrerDescriptor, ReferrersResult, ReferrersService } from '../stores.js';
import type { Upstream } from './upstream.js';
import { UpstreamError } from './upstream-error.js';

/** The referrers tag schema's tag of `digest`: `<alg>-<encoded>`, truncated to 32 and 64 characters. */
function referrersTag(digest: Digest): string {
  return `${digest.algorithm.slice(0, 32)}-${digest.hex.slice(0, 64)}`;
}

/** The referrers side of the pull-through cache. Methods take the upstream's repository names. */
export class ProxyReferrers implements ReferrersService {
  constructor(
    private readonly upstream: Upstream,
    private readonly manifests: ManifestService,
  ) {}

  async list(name: string, subject: Digest, artifactType: string | undefined): Promise<ReferrersResult> {
    let body: Buffer;
    try {
      body = (await this.upstream.getReferrers(name, subject.value, artifactType)).body;
    } catch (err) {
      // No API (404, or 405 from a registry refusing it), or none reachable: the referrers tag, which
      // the cache serves when the upstream is down; with none cached, the upstream's failure stands.
      if (!(err instanceof UpstreamError) || !(err.status === 404 || err.status === 405 || err.isUnavailable)) throw err;
      body = await this.tagSchema(name, subject, err);
    }
    const index = tryParseManifest(body);
    if (!index || !Array.isArray(index.doc.manifests)) {
      throw new UpstreamError('ERR_UPSTREAM_INVALID', `upstream referrers of ${name}@${subject.value} are not an image index`);
    }
    // Filtered here whether or not the upstream did (`OCI-Filters-Applied`): filtering twice is filtering once.
    const manifests = index.refs.manifests.flatMap((d) => referrer(d) ?? []).filter((d) => artifactType === undefined || d.artifactType === artifactType);
    return { index: { schemaVersion: 2, mediaType: MediaType.OciIndex, manifests }, filtered: artifactType !== undefined };
  }

  /** The index under the subject's referrers tag; an empty one when the upstream has no such tag (or no such repository). */
  private async tagSchema(name: string, subject: Digest, apiError: UpstreamError): Promise<Buffer> {
    try {
      const m = await this.manifests.getByTag(name, referrersTag(subject));
      // A tag of that shape that is not an index is not a referrers list: there are none.
      if (isIndexType(m.mediaType)) return m.payload;
    } catch (err) {
      if (apiError.isUnavailable) throw apiError;
      if (!(err instanceof UpstreamError) || err.status !== 404) throw err;
    }
    return Buffer.from('{"manifests":[]}');
  }
}

/** The descriptor as the referrers list carries it; undefined for an entry that lacks a media type or size. */
function referrer(d: Descriptor): ReferrerDescriptor | undefined {
  if (d.mediaType === undefined || d.size === undefined) return undefined;
  const entry: ReferrerDescriptor = { mediaType: d.mediaType, digest: d.digest.value, size: d.size };
  if (d.artifactType !== undefined) entry.artifactType = d.artifactType;
  if (d.annotations !== undefined) entry.annotations = d.annotations;
  return entry;
}
