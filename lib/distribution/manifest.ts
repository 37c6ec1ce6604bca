/**
 * Manifests understood once (distribution's `Manifest.References()`): a payload is parsed here and
 * every reader (eviction, garbage collection, `registry warm`, the cache page, content negotiation,
 * push validation, referrers) takes what it needs from the result, so they cannot disagree on what
 * an image holds. Lenient by design: descriptors with an invalid digest are listed apart in
 * `invalid`, for the callers that must refuse them (a push) or report them (warm).
 */
import { ManifestInvalidError } from '../errors.js';
import { parseDigest, type Digest } from './digest.js';
import { MediaType } from './mediatypes.js';

/** The largest manifest body accepted, pushed or from an upstream (distribution's `maxManifestBodySize`). */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;

/** The platform of an index entry. */
export interface DescriptorPlatform {
  readonly os?: string;
  readonly architecture?: string;
  readonly variant?: string;
}

/** A content descriptor (OCI image-spec `descriptor.md`) with a valid digest. */
export interface Descriptor {
  readonly digest: Digest;
  readonly mediaType?: string;
  readonly size?: number;
  readonly urls?: string[];
  readonly artifactType?: string;
  readonly annotations?: Record<string, string>;
  readonly platform?: DescriptorPlatform;
}

/** Where in a manifest a descriptor sits. */
export type DescriptorField = 'subject' | 'config' | 'layers' | 'manifests' | 'blobs' | 'fsLayers';

/** A descriptor that could not be used: not an object, or without a valid digest. */
export interface InvalidDescriptor {
  readonly field: DescriptorField;
  readonly reason: 'not a descriptor' | 'invalid digest';
  /** The digest as written (`blobSum` for schema 1), for messages. */
  readonly digest: unknown;
  /** The entry's platform, when it is an index entry that names one. */
  readonly platform?: DescriptorPlatform;
}

/** What a manifest references, by role. */
interface References {
  readonly subject?: Descriptor;
  /** An image's config. */
  readonly config?: Descriptor;
  readonly layers: readonly Descriptor[];
  /** An index's child manifests. */
  readonly manifests: readonly Descriptor[];
  /** The `blobs` of an OCI artifact manifest (the withdrawn `artifact.manifest.v1` draft). */
  readonly blobs: readonly Descriptor[];
  /** Schema 1's `fsLayers` (their `blobSum`). */
  readonly fsLayers: readonly Descriptor[];
}

/** A parsed manifest. */
export interface ParsedManifest {
  /** The JSON object as written. */
  readonly doc: Readonly<Record<string, unknown>>;
  /** The media type as distribution derives it; undefined when it cannot tell. */
  readonly mediaType: string | undefined;
  readonly artifactType?: string;
  readonly annotations?: Record<string, string>;
  readonly refs: References;
  /** Descriptors left out of `refs`, in the order they appear. */
  readonly invalid: readonly InvalidDescriptor[];
}

/** Parses a manifest; `ManifestInvalidError` when the payload is not a JSON object. */
export function parseManifest(payload: Buffer): ParsedManifest {
  let parsed: unknown;
  try {
    parsed = JSON.parse(payload.toString('utf8'));
  } catch (err) {
    throw new ManifestInvalidError(`manifest is not valid JSON: ${(err as Error).message}`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new ManifestInvalidError('manifest is not a JSON object');
  const doc = parsed as Record<string, unknown>;
  const invalid: InvalidDescriptor[] = [];
  const one = (field: DescriptorField, value: unknown): Descriptor | undefined => (value === undefined ? undefined : descriptor(field, value, invalid));
  const list = (field: DescriptorField, value: unknown): Descriptor[] =>
    Array.isArray(value) ? value.flatMap((v: unknown) => descriptor(field, v, invalid) ?? []) : [];
  const refs: References = {
    subject: one('subject', doc.subject),
    config: one('config', doc.config),
    layers: list('layers', doc.layers),
    manifests: list('manifests', doc.manifests),
    blobs: list('blobs', doc.blobs),
    fsLayers: list(
      'fsLayers',
      Array.isArray(doc.fsLayers)
        ? doc.fsLayers.map((l: unknown) => (l && typeof l === 'object' ? { digest: (l as { blobSum?: unknown }).blobSum } : l))
        : undefined,
    ),
  };
  return {
    doc,
    mediaType: mediaTypeOf(doc),
    artifactType: typeof doc.artifactType === 'string' ? doc.artifactType : undefined,
    annotations: doc.annotations && typeof doc.annotations === 'object' ? (doc.annotations as Record<string, string>) : undefined,
    refs,
    invalid,
  };
}

/** Parses a stored manifest; undefined when it is not a JSON object. */
export function tryParseManifest(payload: Buffer): ParsedManifest | undefined {
  try {
    return parseManifest(payload);
  } catch {
    return undefined;
  }
}

/**
 * Everything a manifest references, in distribution's order (config first, then layers), then an
 * index's children, artifact blobs, the subject and schema 1's layers: what keeps data alive.
 */
export function references(m: ParsedManifest): Descriptor[] {
  const { config, layers, manifests, blobs, subject, fsLayers } = m.refs;
  return [...(config ? [config] : []), ...layers, ...manifests, ...blobs, ...(subject ? [subject] : []), ...fsLayers];
}

/**
 * The media type of a stored manifest payload, as distribution derives it: the `mediaType` field,
 * else an OCI index or manifest by shape (`manifests` or `config`), else schema 1 (signed when it
 * carries `signatures`).
 */
export function mediaTypeOfPayload(payload: Buffer): string | undefined {
  return tryParseManifest(payload)?.mediaType;
}

/**
 * What the document's shape makes it: an index (`manifests`), an image (`config`), or schema 1
 * (signed when it carries `signatures`); then the `mediaType` field must be a registered type of
 * that shape (distribution's unmarshallers refuse any other), and is undefined when it is not: an
 * upstream's `"mediaType":"text/html"` never becomes a `Content-Type`.
 */
function mediaTypeOf(m: Record<string, unknown>): string | undefined {
  const declared = typeof m.mediaType === 'string' && m.mediaType.length > 0 ? m.mediaType : undefined;
  let allowed: readonly string[];
  if (m.schemaVersion === 1)
    allowed = Array.isArray(m.signatures)
      ? [MediaType.DockerManifestV1Signed, MediaType.DockerManifestV1]
      : [MediaType.DockerManifestV1, MediaType.DockerManifestV1Signed];
  else if (m.schemaVersion !== 2) return undefined;
  else if (Array.isArray(m.manifests)) allowed = [MediaType.OciIndex, MediaType.DockerManifestList];
  else if (isObject(m.config)) allowed = [MediaType.OciManifest, MediaType.DockerManifest];
  else return undefined;
  if (declared === undefined) return allowed[0];
  return allowed.includes(declared) ? declared : undefined;
}

function isObject(v: unknown): boolean {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function descriptor(field: DescriptorField, value: unknown, invalid: InvalidDescriptor[]): Descriptor | undefined {
  if (!isObject(value)) {
    invalid.push({ field, reason: 'not a descriptor', digest: undefined });
    return undefined;
  }
  const v = value as Record<string, unknown>;
  const p = isObject(v.platform) ? (v.platform as Record<string, unknown>) : undefined;
  const platform = p && {
    os: typeof p.os === 'string' ? p.os : undefined,
    architecture: typeof p.architecture === 'string' ? p.architecture : undefined,
    variant: typeof p.variant === 'string' ? p.variant : undefined,
  };
  const digest = typeof v.digest === 'string' ? parseDigest(v.digest) : undefined;
  if (!digest) {
    invalid.push({ field, reason: 'invalid digest', digest: v.digest, platform });
    return undefined;
  }
  return {
    digest,
    mediaType: typeof v.mediaType === 'string' ? v.mediaType : undefined,
    size: typeof v.size === 'number' ? v.size : undefined,
    urls: Array.isArray(v.urls) ? v.urls.map(String) : undefined,
    artifactType: typeof v.artifactType === 'string' ? v.artifactType : undefined,
    annotations: v.annotations && typeof v.annotations === 'object' ? (v.annotations as Record<string, string>) : undefined,
    platform,
  };
}
