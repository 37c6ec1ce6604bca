/**
 * What the OCI distribution-spec conformance suite (opencontainers/distribution-spec `conformance/`,
 * v1.1.1 and the later test fixes) sends, rebuilt for our own tests: one config and one manifest per
 * workflow, unique per run; the layer, the streamed blob (42 bytes) and the chunked one (42 bytes in
 * two chunks, the first one byte longer); the empty JSON blob; the artifacts that refer to
 * `manifests[4]` (two with the artifact type as config media type, two with `artifactType` and the
 * empty config, an index) and one that refers to the never-pushed `manifests[3]`. Like the suite,
 * every descriptor carries `newUnspecifiedField` (null when unset) and the manifests' configs carry
 * `data`. A small client does what the suite's client (reggie) does with `Location` headers.
 */
import { randomBytes } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import request from 'supertest';
import { tarOf } from './images.js';

export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
export const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
const OCI_CONFIG = 'application/vnd.oci.image.config.v1+json';
const OCI_LAYER = 'application/vnd.oci.image.layer.v1.tar+gzip';

import { sha256 } from './digest.js';

export { sha256 };

/** A blob or manifest and its digest. */
export interface Content {
  readonly body: Buffer;
  readonly digest: string;
}

const content = (body: Buffer): Content => ({ body, digest: sha256(body) });
const json = (value: unknown): Content => content(Buffer.from(JSON.stringify(value, null, '\t')));

/** A descriptor as the suite marshals it. */
function descriptor(mediaType: string, c: Content, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { mediaType, digest: c.digest, size: c.body.length, ...extra, newUnspecifiedField: extra.newUnspecifiedField ?? null };
}

/** The suite's test data; every call makes a new set (new configs, so new digests). */
export interface ConformanceData {
  /** One per workflow: 0 pull, 1 push, 2 discovery, 3 management, 4 referrers subject. */
  readonly configs: Content[];
  readonly manifests: Content[];
  readonly layer: Content;
  /** The push workflow's manifest without layers (and without `mediaType`). */
  readonly emptyLayerManifest: Content;
  /** The streamed blob. */
  readonly blobA: Content;
  /** The chunked blob, its two chunks and their `Content-Range`s. */
  readonly blobB: Content & { chunk1: Buffer; chunk2: Buffer; range1: string; range2: string };
  readonly emptyJson: Content;
  readonly refBlobA: Content;
  readonly refBlobB: Content;
  readonly artifactTypeA: string;
  readonly artifactTypeB: string;
  /** The referrers of `manifests[4]` in the order the suite pushes them, then C (of `manifests[3]`). */
  readonly refs: { aConfig: Content; aLayer: Content; index: Content; bConfig: Content; bLayer: Content; cLayer: Content };
  readonly annotationKey: string;
  /** The annotation value of each referrer of `manifests[4]`, by digest. */
  readonly annotations: Record<string, string>;
  /** `sha256("hello world")`: a blob nobody pushed. */
  readonly dummyDigest: string;
  /** The suite's nonexistent manifest reference: not a valid tag. */
  readonly nonexistentManifest: string;
}

/** Builds a new set of the suite's data. */
export function conformanceData(): ConformanceData {
  const configs = Array.from({ length: 5 }, () =>
    json({ author: randomBytes(12).toString('base64url'), architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } }),
  );
  const layer = content(gzipSync(tarOf('test.txt', Buffer.from('conformance layer\n'))));
  const configDescriptor = (c: Content): Record<string, unknown> =>
    descriptor(OCI_CONFIG, c, { data: c.body.toString('base64'), newUnspecifiedField: Buffer.from('hello world').toString('base64') });
  const manifests = configs.map((c) =>
    json({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: configDescriptor(c), layers: [descriptor(OCI_LAYER, layer)] }),
  );
  const emptyLayerManifest = json({ schemaVersion: 2, config: configDescriptor(configs[1]!), layers: [] });
  const blobA = content(randomBytes(42));
  const b = randomBytes(42);
  const chunk1 = b.subarray(0, 22);
  const chunk2 = b.subarray(22);
  const blobB = { ...content(b), chunk1, chunk2, range1: `0-${chunk1.length - 1}`, range2: `${chunk1.length}-${b.length - 1}` };
  const emptyJson = content(Buffer.from('{}'));
  const refBlobA = content(Buffer.from('NHL Peanut Butter on my NHL bagel'));
  const refBlobB = content(Buffer.from('NBA Strawberry Jam on my NBA croissant'));
  const artifactTypeA = 'application/vnd.nhl.peanut.butter.bagel';
  const artifactTypeB = 'application/vnd.nba.strawberry.jam.croissant';
  const annotationKey = 'org.opencontainers.conformance.test';
  const subject = (m: Content): Record<string, unknown> => descriptor(OCI_MANIFEST, m);
  const emptyConfig = descriptor('application/vnd.oci.empty.v1+json', emptyJson);
  const configArtifact = (type: string, blob: Content, note: string): Content =>
    json({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: descriptor(type, blob),
      subject: subject(manifests[4]!),
      layers: [emptyConfig],
      annotations: { [annotationKey]: note },
    });
  const layerArtifact = (type: string, blob: Content, of: Content, note?: string): Content =>
    json({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      artifactType: type,
      config: emptyConfig,
      subject: subject(of),
      layers: [descriptor(type, blob)],
      ...(note ? { annotations: { [annotationKey]: note } } : {}),
    });
  const aConfig = configArtifact(artifactTypeA, refBlobA, 'test config a');
  const bConfig = configArtifact(artifactTypeB, refBlobB, 'test config b');
  const aLayer = layerArtifact(artifactTypeA, refBlobA, manifests[4]!, 'test layer a');
  const bLayer = layerArtifact(artifactTypeB, refBlobB, manifests[4]!, 'test layer b');
  const cLayer = layerArtifact(artifactTypeB, refBlobB, manifests[3]!);
  const index = json({
    schemaVersion: 2,
    mediaType: OCI_INDEX,
    artifactType: 'application/vnd.food.stand',
    manifests: [descriptor(OCI_MANIFEST, aConfig), descriptor(OCI_MANIFEST, aLayer)],
    subject: subject(manifests[4]!),
    annotations: { [annotationKey]: 'test index' },
  });
  const annotations: Record<string, string> = {
    [aConfig.digest]: 'test config a',
    [bConfig.digest]: 'test config b',
    [aLayer.digest]: 'test layer a',
    [bLayer.digest]: 'test layer b',
    [index.digest]: 'test index',
  };
  return {
    configs,
    manifests,
    layer,
    emptyLayerManifest,
    blobA,
    blobB,
    emptyJson,
    refBlobA,
    refBlobB,
    artifactTypeA,
    artifactTypeB,
    refs: { aConfig, aLayer, index, bConfig, bLayer, cLayer },
    annotationKey,
    annotations,
    dummyDigest: sha256('hello world'),
    nonexistentManifest: '.INVALID_MANIFEST_NAME',
  };
}

/** A `Location` header as reggie's `GetRelativeLocation`: path and query, absolute URLs made relative. */
export function relativeLocation(res: request.Response): string {
  const location = res.headers.location as string | undefined;
  if (!location) throw new Error(`no Location in a ${res.status} answer`);
  const u = new URL(location, 'http://registry.invalid');
  return u.pathname + u.search;
}

/** `path` with `params` added to its query, as reggie's `SetQueryParam`. */
export function withQuery(path: string, params: Record<string, string>): string {
  const u = new URL(path, 'http://registry.invalid');
  for (const [k, v] of Object.entries(params)) u.searchParams.set(k, v);
  return u.pathname + u.search;
}

/** The suite's blob setup: `POST` a session, `PUT` the blob to its location with the digest; resolves with the `PUT`'s answer. */
export async function uploadBlob(url: string, name: string, c: Content): Promise<request.Response> {
  const start = await request(url).post(`/v2/${name}/blobs/uploads/`);
  if (start.status !== 202) throw new Error(`POST ${name}: ${start.status} ${start.text}`);
  return request(url)
    .put(withQuery(relativeLocation(start), { digest: c.digest }))
    .set('Content-Type', 'application/octet-stream')
    .send(c.body);
}

/** The suite's manifest push (`Content-Type` as given). */
export function putManifest(url: string, name: string, ref: string, c: Content, mediaType = OCI_MANIFEST): request.Test {
  // A string: superagent would serialise a Buffer as JSON under a `+json` type.
  return request(url).put(`/v2/${name}/manifests/${ref}`).set('Content-Type', mediaType).send(c.body.toString('utf8'));
}

/** A body as bytes, whatever its content type. */
export function rawBody(test: request.Test): request.Test {
  return test.buffer(true).parse((res, cb) => {
    const chunks: Buffer[] = [];
    res.on('data', (c: Buffer) => chunks.push(c));
    res.on('end', () => cb(null, Buffer.concat(chunks)));
  });
}

/** A referrers answer's entries. */
export interface ReferrersIndex {
  readonly mediaType?: string;
  readonly manifests: Array<{ digest: string; artifactType?: string; annotations?: Record<string, string> }>;
}

/** True when `tags` is in lexical (case-insensitive) or in ASCII order, the two the suite accepts. */
export function sortedAsTheSuiteAccepts(tags: readonly string[]): boolean {
  const lexical = [...tags].sort((a, b) => (a.toLowerCase() < b.toLowerCase() ? -1 : a.toLowerCase() > b.toLowerCase() ? 1 : 0));
  const ascii = [...tags].sort();
  return tags.join('\n') === lexical.join('\n') || tags.join('\n') === ascii.join('\n');
}
