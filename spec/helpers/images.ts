/**
 * Container images built in pure Node for the interop tier: layers are real gzip'd tar archives of
 * seeded pseudo-random bytes, with an image config and an OCI or Docker schema 2 manifest, and
 * indexes over several platforms.
 */
import { createHash } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/** A content-addressed document. */
export interface Descriptor {
  readonly digest: string;
  readonly mediaType: string;
  readonly size: number;
}

/** An image: its manifest, config and layers, and every blob by digest. */
export interface BuiltImage {
  readonly manifest: Descriptor & { body: Buffer };
  readonly config: Descriptor;
  readonly layers: Descriptor[];
  readonly platform: { os: string; architecture: string };
  readonly blobs: Map<string, Buffer>;
}

/** An index (OCI) or manifest list (Docker) and all its images. */
export interface BuiltIndex {
  readonly manifest: Descriptor & { body: Buffer };
  readonly images: BuiltImage[];
  readonly blobs: Map<string, Buffer>;
}

const sha256 = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

const TYPES = {
  oci: {
    manifest: 'application/vnd.oci.image.manifest.v1+json',
    index: 'application/vnd.oci.image.index.v1+json',
    config: 'application/vnd.oci.image.config.v1+json',
    layer: 'application/vnd.oci.image.layer.v1.tar+gzip',
  },
  docker: {
    manifest: 'application/vnd.docker.distribution.manifest.v2+json',
    index: 'application/vnd.docker.distribution.manifest.list.v2+json',
    config: 'application/vnd.docker.container.image.v1+json',
    layer: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  },
} as const;

/** `size` pseudo-random bytes determined by `seed` (a sha256 counter stream). */
export function seededBytes(seed: string, size: number): Buffer {
  const out = Buffer.allocUnsafe(size);
  const base = createHash('sha256').update(seed).digest();
  let offset = 0;
  for (let counter = 0; offset < size; counter++) {
    const block = createHash('sha256').update(base).update(String(counter)).digest();
    offset += block.copy(out, offset);
  }
  return out;
}

/** A ustar archive holding one regular file. */
export function tarOf(name: string, content: Buffer): Buffer {
  const header = Buffer.alloc(512);
  header.write(name, 0, 100);
  header.write('0000644\0', 100);
  header.write('0000000\0', 108);
  header.write('0000000\0', 116);
  header.write(`${content.length.toString(8).padStart(11, '0')}\0`, 124);
  header.write('00000000000\0', 136);
  header.write('        ', 148);
  header.write('0', 156);
  header.write('ustar\0', 257);
  header.write('00', 263);
  let sum = 0;
  for (const byte of header) sum += byte;
  header.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
  const padding = Buffer.alloc((512 - (content.length % 512)) % 512);
  return Buffer.concat([header, content, padding, Buffer.alloc(1024)]);
}

/** Builds one image. */
export function buildImage(opts: {
  layers: Array<number | Buffer>;
  seed?: string;
  platform?: { os: string; architecture: string };
  format?: 'oci' | 'docker';
}): BuiltImage {
  const t = TYPES[opts.format ?? 'oci'];
  const platform = opts.platform ?? { os: 'linux', architecture: 'amd64' };
  const blobs = new Map<string, Buffer>();
  const diffIds: string[] = [];
  const layers = opts.layers.map((spec, i) => {
    const content = typeof spec === 'number' ? seededBytes(`${opts.seed ?? 'image'}/${i}`, spec) : spec;
    const tar = tarOf(`layer-${i}.bin`, content);
    diffIds.push(sha256(tar));
    const gz = gzipSync(tar, { level: 1 });
    blobs.set(sha256(gz), gz);
    return { digest: sha256(gz), mediaType: t.layer, size: gz.length };
  });
  const configBody = Buffer.from(
    JSON.stringify({ ...platform, config: {}, rootfs: { type: 'layers', diff_ids: diffIds }, history: diffIds.map(() => ({ created_by: 'test' })) }),
  );
  blobs.set(sha256(configBody), configBody);
  const config = { digest: sha256(configBody), mediaType: t.config, size: configBody.length };
  const body = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: t.manifest, config, layers }));
  blobs.set(sha256(body), body);
  return { manifest: { digest: sha256(body), mediaType: t.manifest, size: body.length, body }, config, layers, platform, blobs };
}

/** Builds an index over `images`. */
export function buildIndex(images: BuiltImage[], format: 'oci' | 'docker' = 'oci'): BuiltIndex {
  const t = TYPES[format];
  const body = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: t.index,
      manifests: images.map((i) => ({ mediaType: i.manifest.mediaType, digest: i.manifest.digest, size: i.manifest.size, platform: i.platform })),
    }),
  );
  const blobs = new Map<string, Buffer>();
  for (const i of images) for (const [d, b] of i.blobs) blobs.set(d, b);
  blobs.set(sha256(body), body);
  return { manifest: { digest: sha256(body), mediaType: t.index, size: body.length, body }, images, blobs };
}

/** Writes an OCI image layout holding `root` under `tag`. */
export async function writeOciLayout(dir: string, root: BuiltImage | BuiltIndex, tag: string): Promise<void> {
  await mkdir(join(dir, 'blobs/sha256'), { recursive: true });
  await writeFile(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  for (const [digest, body] of root.blobs) await writeFile(join(dir, 'blobs/sha256', digest.slice(7)), body);
  const { body: _body, ...descriptor } = root.manifest;
  await writeFile(
    join(dir, 'index.json'),
    JSON.stringify({ schemaVersion: 2, manifests: [{ ...descriptor, annotations: { 'org.opencontainers.image.ref.name': tag } }] }),
  );
}

/**
 * Writes `image` in skopeo's `dir:` layout (manifest.json, blobs named by hex digest): skopeo 1.9's
 * `oci:` transport will not carry Docker schema 2 manifests, `dir:` carries any single image.
 */
export async function writeDirLayout(dir: string, image: BuiltImage): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'version'), 'Directory Transport Version: 1.1\n');
  await writeFile(join(dir, 'manifest.json'), image.manifest.body);
  for (const [digest, body] of image.blobs) if (digest !== image.manifest.digest) await writeFile(join(dir, digest.slice(7)), body);
}
