/**
 * Pushes over the raw API with supertest, as a client does: a blob by `POST` + `PUT ?digest=`, a
 * manifest by `PUT`, and a small OCI image made of both.
 */
import request from 'supertest';

import { sha256 } from './digest.js';

export { sha256 };
export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
export const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';

/** Headers every request carries (credentials). */
export type Auth = Record<string, string>;

/** Pushes a blob monolithically; resolves with its digest (throws unless 201). */
export async function pushBlob(url: string, repo: string, content: Buffer, auth: Auth = {}): Promise<string> {
  const start = await request(url).post(`/v2/${repo}/blobs/uploads/`).set(auth);
  if (start.status !== 202) throw new Error(`POST ${repo}: ${start.status} ${start.text}`);
  const digest = sha256(content);
  // Relative (ours) or absolute with a `_state` query (distribution's).
  const location = new URL(start.headers.location as string, url);
  location.searchParams.set('digest', digest);
  const put = await request(location.origin)
    .put(location.pathname + location.search)
    .set(auth)
    .set('Content-Type', 'application/octet-stream')
    .send(content);
  if (put.status !== 201) throw new Error(`PUT ${repo}: ${put.status} ${put.text}`);
  return digest;
}

/** Pushes a manifest; resolves with the response. */
export function pushManifest(url: string, repo: string, ref: string, body: Buffer | object, mediaType = OCI_MANIFEST, auth: Auth = {}): request.Test {
  // A string: superagent would serialise a Buffer as JSON under a `+json` type.
  const payload = Buffer.isBuffer(body) ? body.toString('utf8') : JSON.stringify(body);
  return request(url).put(`/v2/${repo}/manifests/${ref}`).set(auth).set('Content-Type', mediaType).send(payload);
}

/** A small OCI image: its manifest payload and digest, config and layers. */
export interface SmallImage {
  readonly manifest: Buffer;
  readonly digest: string;
  readonly config: Buffer;
  readonly layers: Buffer[];
}

/** Builds (does not push) an image from `seed`; `extra` is merged into the manifest (subject, artifactType). */
export function smallImage(seed: string, extra: Record<string, unknown> = {}, layerCount = 2): SmallImage {
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', seed }));
  const layers = Array.from({ length: layerCount }, (_, i) => Buffer.from(`${seed} layer ${i} `.repeat(50 + i)));
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(config), size: config.length },
      layers: layers.map((l) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: sha256(l), size: l.length })),
      ...extra,
    }),
  );
  return { manifest, digest: sha256(manifest), config, layers };
}

/** Pushes an image's blobs and then its manifest under `ref`. */
export async function pushSmallImage(url: string, repo: string, ref: string, image: SmallImage, auth: Auth = {}): Promise<request.Response> {
  for (const b of [image.config, ...image.layers]) await pushBlob(url, repo, b, auth);
  return pushManifest(url, repo, ref, image.manifest, OCI_MANIFEST, auth);
}
