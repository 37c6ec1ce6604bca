/**
 * Manifest media types and the content negotiation between them.
 */

export const MediaType = {
  DockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  DockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  DockerManifestV1Signed: 'application/vnd.docker.distribution.manifest.v1+prettyjws',
  DockerManifestV1: 'application/vnd.docker.distribution.manifest.v1+json',
  OciManifest: 'application/vnd.oci.image.manifest.v1+json',
  OciIndex: 'application/vnd.oci.image.index.v1+json',
} as const;

/** Every manifest type the mirror asks its upstream for, in preference order. */
export const MANIFEST_ACCEPT: readonly string[] = [
  MediaType.OciIndex,
  MediaType.DockerManifestList,
  MediaType.OciManifest,
  MediaType.DockerManifest,
  MediaType.DockerManifestV1Signed,
  MediaType.DockerManifestV1,
];

/** True for the index types (manifest lists and OCI indexes). */
export function isIndexType(mediaType: string): boolean {
  return mediaType === MediaType.DockerManifestList || mediaType === MediaType.OciIndex;
}

/**
 * The media type of a stored manifest payload, as distribution derives it: the `mediaType` field,
 * else an OCI index or manifest by shape (`manifests` or `config`), else schema 1 (signed when it
 * carries `signatures`).
 */
export function mediaTypeOfPayload(payload: Buffer): string | undefined {
  let doc: unknown;
  try {
    doc = JSON.parse(payload.toString('utf8'));
  } catch {
    return undefined;
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) return undefined;
  const m = doc as Record<string, unknown>;
  if (typeof m.mediaType === 'string' && m.mediaType.length > 0) return m.mediaType;
  if (m.schemaVersion === 1) return Array.isArray(m.signatures) ? MediaType.DockerManifestV1Signed : MediaType.DockerManifestV1;
  if (Array.isArray(m.manifests)) return MediaType.OciIndex;
  if (m.config && typeof m.config === 'object') return MediaType.OciManifest;
  return undefined;
}

/** The media types a client's `Accept` headers name (comma lists split, parameters dropped). */
export function parseAccept(accept: string | string[] | undefined): string[] {
  if (accept === undefined) return [];
  const values = Array.isArray(accept) ? accept : [accept];
  return values
    .flatMap((v) => v.split(','))
    .map((v) => v.split(';')[0]!.trim().toLowerCase())
    .filter((v) => v.length > 0);
}
