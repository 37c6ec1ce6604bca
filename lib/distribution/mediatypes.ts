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

/** The media types a client's `Accept` headers name (comma lists split, parameters dropped). */
export function parseAccept(accept: string | string[] | undefined): string[] {
  if (accept === undefined) return [];
  const values = Array.isArray(accept) ? accept : [accept];
  return values
    .flatMap((v) => v.split(','))
    .map((v) => v.split(';')[0]!.trim().toLowerCase())
    .filter((v) => v.length > 0);
}
