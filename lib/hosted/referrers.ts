/**
 * The OCI 1.1 referrers API for hosted repositories (`GET /v2/<name>/referrers/<digest>`). The
 * official registry keeps no referrers index (distribution 3 does not implement the API), so the
 * answer is computed from the repository's manifest revisions: every manifest whose `subject` is the
 * digest, as an OCI index. Nothing is written, so the on-disk layout stays distribution's.
 */
import type { Digest } from '../distribution/digest.js';
import { tryParseManifest } from '../distribution/manifest.js';
import { MediaType, isIndexType } from '../distribution/mediatypes.js';
import type { BlobStore } from '../storage/blob-store.js';
import type { RepositoryStore } from '../storage/repository-store.js';
import type { ReferrerDescriptor, ReferrersResult } from '../stores.js';

/**
 * The manifests of `repo` whose subject is `subject`, optionally only those of `artifactType`;
 * an unknown subject has an empty list (the spec's 200 with no manifests). Sorted by digest, so
 * answers are stable.
 */
export async function listReferrers(blobs: BlobStore, repo: RepositoryStore, subject: Digest, artifactType?: string): Promise<ReferrersResult> {
  const manifests: ReferrerDescriptor[] = [];
  for (const revision of await repo.listRevisions()) {
    let payload: Buffer;
    try {
      payload = await blobs.get(revision);
    } catch {
      continue;
    }
    const entry = referrerOf(payload, revision, subject);
    if (entry && (artifactType === undefined || entry.artifactType === artifactType)) manifests.push(entry);
  }
  manifests.sort((a, b) => (a.digest < b.digest ? -1 : a.digest > b.digest ? 1 : 0));
  return { index: { schemaVersion: 2, mediaType: MediaType.OciIndex, manifests }, filtered: artifactType !== undefined };
}

/** The descriptor of a manifest that refers to `subject`, else undefined. */
function referrerOf(payload: Buffer, digest: Digest, subject: Digest): ReferrerDescriptor | undefined {
  const m = tryParseManifest(payload);
  if (!m || m.refs.subject?.digest.value !== subject.value) return undefined;
  const mediaType = m.mediaType ?? MediaType.OciManifest;
  // The spec: an image manifest without `artifactType` reports its config's media type.
  const artifactType = m.artifactType ?? (!isIndexType(mediaType) ? m.refs.config?.mediaType : undefined);
  const entry: ReferrerDescriptor = { mediaType, digest: digest.value, size: payload.length };
  if (artifactType !== undefined) entry.artifactType = artifactType;
  if (m.annotations) entry.annotations = m.annotations;
  return entry;
}
