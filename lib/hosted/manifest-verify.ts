/**
 * What a pushed manifest must satisfy before it is stored, as distribution's manifest handlers
 * (`registry/storage/{ocimanifesthandler,schema2manifesthandler,manifestlisthandler}.go`): a known
 * schema 2 media type consistent with the payload, and every blob it references (config, layers)
 * linked into the repository, every child manifest of an index a revision of it. Built on the one
 * manifest parser (lib/distribution/manifest.ts), stricter than its readers: any descriptor it
 * could not use refuses the push.
 */
import type { Digest } from '../distribution/digest.js';
import { parseManifest, type Descriptor, type DescriptorField, type InvalidDescriptor } from '../distribution/manifest.js';
import { MediaType, isIndexType, parseAccept } from '../distribution/mediatypes.js';
import { DigestInvalidError, ManifestBlobUnknownError, ManifestClassDeniedError, ManifestInvalidError } from '../errors.js';

/** The manifest types a client may push (schema 1 is refused, as distribution 3 does). */
const PUSHABLE: readonly string[] = [MediaType.DockerManifest, MediaType.DockerManifestList, MediaType.OciManifest, MediaType.OciIndex];

/** Layers distribution does not require to be present when they carry `urls` (foreign layers). */
const NON_DISTRIBUTABLE: readonly string[] = [
  'application/vnd.oci.image.layer.nondistributable.v1.tar',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
  'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
];

/** Which URLs a pushed layer may carry (`validation.manifests.urls`, compiled): unset sides check nothing. */
export interface LayerUrls {
  readonly allow?: RegExp;
  readonly deny?: RegExp;
}

/**
 * What a push must satisfy beyond its form: `validation:` (the children of an index that must be
 * present, a layer's URL patterns) and `policy.repository.classes` (empty: any class).
 */
export interface PushValidation {
  readonly indexes: IndexValidation;
  readonly urls: { readonly allow?: string; readonly deny?: string };
  readonly classes: readonly string[];
}

/** A pushed manifest, checked. */
interface CheckedManifest {
  readonly mediaType: string;
  /** An image manifest's `config.mediaType` (its class, `checkClass`); undefined for an index. */
  readonly configType?: string;
  /** Blobs that must be linked in the repository. */
  readonly blobs: readonly Descriptor[];
  /** Manifests that must be revisions of the repository (an index's children). */
  readonly manifests: readonly Descriptor[];
  /** The OCI 1.1 `subject`, if any. */
  readonly subject?: Descriptor;
}

/**
 * Parses and checks a pushed payload; `MANIFEST_INVALID` (or `DIGEST_INVALID`) with distribution's
 * reasons. A layer's URLs must be http(s) without a fragment and pass `urls`.
 */
export function checkManifest(contentType: string | undefined, payload: Buffer, urls: LayerUrls): CheckedManifest {
  const m = parseManifest(payload);
  const doc = m.doc;
  const inPayload = typeof doc.mediaType === 'string' && doc.mediaType !== '' ? doc.mediaType : undefined;
  const header = parseAccept(contentType)[0];
  const mediaType =
    (header && PUSHABLE.includes(header) ? header : undefined) ?? inPayload ?? (Array.isArray(doc.manifests) ? MediaType.OciIndex : MediaType.OciManifest);
  if (!PUSHABLE.includes(mediaType)) throw invalid(`unsupported manifest media type: ${mediaType}`);
  if (inPayload !== undefined && inPayload !== mediaType) throw invalid(`mediaType in manifest should be '${mediaType}' not '${inPayload}'`);
  if (doc.schemaVersion !== 2) throw invalid(`unrecognized manifest schema version ${JSON.stringify(doc.schemaVersion)}`);
  // The checks run in distribution's order: the subject, then an index's children or an image's config and layers.
  refuseInvalid(m.invalid, 'subject');
  const { subject, config, layers, manifests } = m.refs;
  if (isIndexType(mediaType)) {
    if (!Array.isArray(doc.manifests)) throw invalid('an index needs a manifests array');
    refuseInvalid(m.invalid, 'manifests');
    return { mediaType, blobs: [], manifests, subject };
  }
  if (!Array.isArray(doc.layers)) throw invalid('an image manifest needs a layers array');
  refuseInvalid(m.invalid, 'config');
  if (!config) throw invalid('config: not a descriptor');
  refuseInvalid(m.invalid, 'layers');
  const required = layers.filter((l) => !(l.urls && l.urls.length > 0 && NON_DISTRIBUTABLE.includes(l.mediaType ?? '')));
  for (const l of layers) {
    for (const u of l.urls ?? []) {
      const allowed = /^https?:\/\/[^#]+$/.test(u) && (!urls.allow || urls.allow.test(u)) && !urls.deny?.test(u);
      if (!allowed) throw invalid(`invalid URL on layer: ${u}`);
    }
  }
  return { mediaType, configType: config.mediaType ?? '', blobs: [config, ...required], manifests: [], subject };
}

/** The config media types of each class of image manifest (distribution's `applyResourcePolicy`). */
const CLASSES: Readonly<Record<string, Readonly<Record<string, string>>>> = {
  [MediaType.DockerManifest]: { 'application/vnd.docker.container.image.v1+json': 'image', 'application/vnd.docker.plugin.v1+json': 'plugin' },
  [MediaType.OciManifest]: { 'application/vnd.oci.image.config.v1+json': 'image' },
};

/**
 * `policy.repository.classes`, as distribution's `applyResourcePolicy`: with classes listed, an
 * image manifest's class (from its config's media type; an unknown one is refused) must be among
 * them and, when the client's token names the repository (`granted`: the classes it names it
 * with, `image` where it gives none), among those. An index has no class.
 */
export function checkClass(m: CheckedManifest, allowed: readonly string[], granted: readonly string[] | undefined): void {
  if (allowed.length === 0 || m.configType === undefined) return;
  const cls = CLASSES[m.mediaType]?.[m.configType];
  if (cls === undefined) throw new ManifestClassDeniedError(`unknown manifest class for ${m.configType}`);
  if (!allowed.includes(cls)) throw new ManifestClassDeniedError(`registry does not allow ${cls} manifest`);
  if (granted !== undefined && !granted.includes(cls)) throw new ManifestClassDeniedError(`repository not authorized for ${cls} manifest`);
}

/**
 * Which children of a pushed index must be present (`validation.manifests.indexes`, distribution
 * 3): `all` (the default), `none` (sparse indexes), or `list`: those whose platform is in
 * `platformlist` (every child when the list is empty, as distribution).
 */
export interface IndexValidation {
  readonly platforms: 'all' | 'none' | 'list';
  readonly platformlist: readonly { readonly architecture?: string; readonly os?: string }[];
}

function mustExist(child: Descriptor, v: IndexValidation): boolean {
  if (v.platforms === 'none') return false;
  if (v.platforms === 'all' || v.platformlist.length === 0) return true;
  return v.platformlist.some((p) => (p.architecture ?? '') === (child.platform?.architecture ?? '') && (p.os ?? '') === (child.platform?.os ?? ''));
}

/**
 * Checks that everything the manifest references is in the repository (an index's children as
 * `indexes` says); throws `MANIFEST_BLOB_UNKNOWN` naming the first missing digest.
 */
export async function verifyReferences(
  m: CheckedManifest,
  has: { layer(d: Digest): Promise<boolean>; revision(d: Digest): Promise<boolean> },
  indexes: IndexValidation,
): Promise<void> {
  for (const b of m.blobs) {
    const present =
      b.mediaType === MediaType.OciManifest || b.mediaType === MediaType.DockerManifest ? await has.revision(b.digest) : await has.layer(b.digest);
    if (!present) throw new ManifestBlobUnknownError(b.digest);
  }
  for (const child of m.manifests) {
    if (mustExist(child, indexes) && !(await has.revision(child.digest))) throw new ManifestBlobUnknownError(child.digest);
  }
}

/** Refuses the first descriptor of `field` the parser could not use. */
function refuseInvalid(all: readonly InvalidDescriptor[], field: DescriptorField): void {
  const bad = all.find((i) => i.field === field);
  if (!bad) return;
  if (bad.reason === 'invalid digest') throw new DigestInvalidError(`${field}: invalid digest ${JSON.stringify(bad.digest)}`);
  throw invalid(`${field}: not a descriptor`);
}

function invalid(detail: string): ManifestInvalidError {
  return new ManifestInvalidError(detail);
}
