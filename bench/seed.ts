/**
 * Content for the upstream: large pseudo-random blobs uploaded with the registry API (a monolithic
 * PUT), and a multi-layer image pushed with skopeo.
 */
import { createCipheriv, createHash } from 'node:crypto';
import http from 'node:http';
import { buildImage, type BuiltImage } from '../spec/helpers/images.js';
import { pushImage } from '../spec/helpers/skopeo.js';

/** A blob's digest and size. */
export interface BlobRef {
  readonly digest: string;
  readonly size: number;
}

/** `size` incompressible bytes determined by `seed` (AES-256-CTR over zeros: fast and repeatable). */
export function randomBlob(seed: string, size: number): Buffer {
  const key = createHash('sha256').update(seed).digest();
  const cipher = createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
  const out = Buffer.allocUnsafe(size);
  const zeros = Buffer.alloc(Math.min(size, 16 << 20));
  for (let off = 0; off < size; off += zeros.length) {
    const n = Math.min(zeros.length, size - off);
    cipher.update(zeros.subarray(0, n)).copy(out, off);
  }
  return out;
}

function request(url: string, method: string, body?: Buffer): Promise<{ status: number; headers: http.IncomingHttpHeaders; text: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers: { 'content-length': body?.length ?? 0, 'content-type': 'application/octet-stream' } }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** Uploads `body` to `registry`'s repository `repo` (POST then one PUT with the digest). */
export async function uploadBlob(registry: string, repo: string, body: Buffer): Promise<BlobRef> {
  const digest = `sha256:${createHash('sha256').update(body).digest('hex')}`;
  const start = await request(`${registry}/v2/${repo}/blobs/uploads/`, 'POST');
  if (start.status !== 202 || !start.headers.location) throw new Error(`upload start: ${start.status} ${start.text}`);
  const location = new URL(start.headers.location, registry);
  location.searchParams.set('digest', digest);
  const put = await request(location.toString(), 'PUT', body);
  if (put.status !== 201) throw new Error(`upload of ${digest}: ${put.status} ${put.text}`);
  return { digest, size: body.length };
}

/** Uploads `count` different blobs of `size` bytes (seeds `prefix/i`), two at a time. */
export async function uploadBlobs(registry: string, repo: string, prefix: string, size: number, count: number): Promise<BlobRef[]> {
  const out: BlobRef[] = new Array(count);
  let next = 0;
  const worker = async (): Promise<void> => {
    for (let i = next++; i < count; i = next++) out[i] = await uploadBlob(registry, repo, randomBlob(`${prefix}/${i}`, size));
  };
  await Promise.all([worker(), worker()]);
  return out;
}

/** Total bytes a pull of `image` transfers: manifest, config and layers. */
export function imageBytes(image: BuiltImage): number {
  return image.manifest.size + image.config.size + image.layers.reduce((n, l) => n + l.size, 0);
}

/** Builds an OCI image with one incompressible layer per entry of `layerSizes` and pushes it as `ref` (`repo:tag`). */
export async function pushRandomImage(hostPort: string, refs: string[], layerSizes: number[], seed: string): Promise<BuiltImage> {
  const image = buildImage({ layers: layerSizes.map((s, i) => randomBlob(`${seed}/${i}`, s)), seed });
  for (const ref of refs) await pushImage(hostPort, ref, image);
  return image;
}
