/**
 * What a pushed manifest must satisfy before it is stored, as distribution's manifest handlers
 * (`registry/storage/{ocimanifesthandler,schema2manifesthandler,manifestlisthandler}.go`): a known
 * schema 2 media type consistent with the payload, and every blob it references (config, layers)
 * linked into the repository, every child manifest of an index a revision of it.
 */
import { parseDigest, type Digest } from '../distribution/digest.js';
import { MediaType, isIndexType, parseAccept } from '../distribution/mediatypes.js';
import { DigestInvalidError, ManifestBlobUnknownError, ManifestInvalidError } from '../errors.js';

/** The manifest types a client may push (schema 1 is refused, as distribution 3 does). */
const PUSHABLE: readonly string[] = [MediaType.DockerManifest, MediaType.DockerManifestList, MediaType.OciManifest, MediaType.OciIndex];

/** Layers distribution does not require to be present when they carry `urls` (foreign layers). */
const NON_DISTRIBUTABLE: readonly string[] = [
  'application/vnd.oci.image.layer.nondistributable.v1.tar',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
  'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
];

/** A parsed descriptor. */
export interface Descriptor {
  readonly mediaType?: string;
  readonly digest: Digest;
  readonly size?: number;
  readonly urls?: string[];
  readonly artifactType?: string;
  readonly annotations?: Record<string, string>;
}

/** A pushed manifest, understood. */
export interface ParsedManifest {
  readonly mediaType: string;
  readonly doc: Record<string, unknown>;
  /** Blobs that must be linked in the repository. */
  readonly blobs: Descriptor[];
  /** Manifests that must be revisions of the repository (an index's children). */
  readonly manifests: Descriptor[];
  /** The OCI 1.1 `subject`, if any. */
  readonly subject?: Descriptor;
}

/** Parses and checks a pushed payload; `MANIFEST_INVALID` with distribution's reasons. */
export function parseManifest(contentType: string | undefined, payload: Buffer): ParsedManifest {
  let parsed: unknown;
  try {
    parsed = JSON.parse(payload.toString('utf8'));
  } catch (err) {
    throw invalid(`manifest is not valid JSON: ${(err as Error).message}`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw invalid('manifest is not a JSON object');
  const doc = parsed as Record<string, unknown>;
  const inPayload = typeof doc.mediaType === 'string' && doc.mediaType !== '' ? doc.mediaType : undefined;
  const header = parseAccept(contentType)[0];
  const mediaType = (header && PUSHABLE.includes(header) ? header : undefined) ?? inPayload ?? (Array.isArray(doc.manifests) ? MediaType.OciIndex : MediaType.OciManifest);
  if (!PUSHABLE.includes(mediaType)) throw invalid(`unsupported manifest media type: ${mediaType}`);
  if (inPayload !== undefined && inPayload !== mediaType) throw invalid(`mediaType in manifest should be '${mediaType}' not '${inPayload}'`);
  if (doc.schemaVersion !== 2) throw invalid(`unrecognized manifest schema version ${JSON.stringify(doc.schemaVersion)}`);
  const subject = doc.subject === undefined ? undefined : descriptor(doc.subject, 'subject');
  if (isIndexType(mediaType)) {
    if (!Array.isArray(doc.manifests)) throw invalid('an index needs a manifests array');
    return { mediaType, doc, blobs: [], manifests: doc.manifests.map((m) => descriptor(m, 'manifests')), subject };
  }
  if (!Array.isArray(doc.layers)) throw invalid('an image manifest needs a layers array');
  const config = descriptor(doc.config, 'config');
  const layers = doc.layers.map((l) => descriptor(l, 'layers'));
  const required = layers.filter((l) => !(l.urls && l.urls.length > 0 && NON_DISTRIBUTABLE.includes(l.mediaType ?? '')));
  for (const l of layers) {
    for (const u of l.urls ?? []) if (!/^https?:\/\/[^#]+$/.test(u)) throw invalid(`invalid URL on layer: ${u}`);
  }
  return { mediaType, doc, blobs: [config, ...required], manifests: [], subject };
}

/**
 * Checks that everything the manifest references is in the repository; throws
 * `MANIFEST_BLOB_UNKNOWN` naming the first missing digest.
 */
export async function verifyReferences(
  m: ParsedManifest,
  has: { layer(d: Digest): Promise<boolean>; revision(d: Digest): Promise<boolean> },
): Promise<void> {
  for (const b of m.blobs) {
    const present = b.mediaType === MediaType.OciManifest || b.mediaType === MediaType.DockerManifest ? await has.revision(b.digest) : await has.layer(b.digest);
    if (!present) throw new ManifestBlobUnknownError(b.digest);
  }
  for (const child of m.manifests) {
    if (!(await has.revision(child.digest))) throw new ManifestBlobUnknownError(child.digest);
  }
}

function descriptor(value: unknown, where: string): Descriptor {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw invalid(`${where}: not a descriptor`);
  const v = value as Record<string, unknown>;
  const digest = typeof v.digest === 'string' ? parseDigest(v.digest) : undefined;
  if (!digest) throw new DigestInvalidError(`${where}: invalid digest ${JSON.stringify(v.digest)}`);
  return {
    digest,
    mediaType: typeof v.mediaType === 'string' ? v.mediaType : undefined,
    size: typeof v.size === 'number' ? v.size : undefined,
    urls: Array.isArray(v.urls) ? v.urls.map(String) : undefined,
    artifactType: typeof v.artifactType === 'string' ? v.artifactType : undefined,
    annotations: v.annotations && typeof v.annotations === 'object' ? (v.annotations as Record<string, string>) : undefined,
  };
}

function invalid(detail: string): ManifestInvalidError {
  return new ManifestInvalidError(detail);
}
