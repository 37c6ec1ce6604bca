/**
 * `registry warm`: pre-fetches images into the cache by pulling them from a registry started in
 * this process on a loopback port, with the same routes, stores and upstream clients as `serve`;
 * so a warmed image is cached exactly as a pull would have cached it (verified, linked, scheduled
 * to expire). For an index, every platform is fetched, or only the chosen one.
 */
import http from 'node:http';
import { stat } from 'node:fs/promises';
import { MANIFEST_ACCEPT, isIndexType } from '../distribution/mediatypes.js';
import { parseImageReference, type ImageReference } from '../distribution/reference.js';
import type { WarmProgress } from './progress.js';

/** A platform as `os/architecture[/variant]`. */
export interface Platform {
  readonly os: string;
  readonly architecture: string;
  readonly variant?: string;
}

/** What the walk needs. */
export interface WarmTarget {
  /** `http://127.0.0.1:<port>` plus the route prefix, without a trailing slash. */
  readonly base: string;
  /** The storage root, to tell cached blobs from fetched ones. */
  readonly root: string;
  /**
   * Registry hosts this mirror serves: `default` for the default upstream (names as they are:
   * `docker.io` and `proxy.remoteurl`'s host), `prefix` for `proxy.upstreams` (`/v2/ghcr.io/...`).
   */
  readonly hosts: ReadonlyMap<string, 'default' | 'prefix'>;
  readonly platform?: Platform;
  readonly concurrency: number;
  readonly progress: WarmProgress;
}

/** Totals for the summary. */
export interface WarmTotals {
  images: number;
  platforms: number;
  blobsFetched: number;
  blobsCached: number;
  bytesFetched: number;
  failed: string[];
}

interface Descriptor {
  readonly digest: string;
  readonly size?: number;
  readonly platform?: { os?: string; architecture?: string; variant?: string };
}

/** Parses `linux/arm64/v8`. */
export function parsePlatform(text: string): Platform | undefined {
  const [os, architecture, variant, extra] = text.split('/');
  if (!os || !architecture || extra !== undefined) return undefined;
  return { os, architecture, variant };
}

/** Warms every reference in turn; a failed reference is recorded and the others go on. */
export async function warmAll(refs: readonly string[], t: WarmTarget): Promise<WarmTotals> {
  const totals: WarmTotals = { images: 0, platforms: 0, blobsFetched: 0, blobsCached: 0, bytesFetched: 0, failed: [] };
  for (const ref of refs) {
    try {
      await warmOne(ref, t, totals);
      totals.images++;
    } catch (err) {
      totals.failed.push(ref);
      t.progress.note(`warm ${ref}: failed: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  return totals;
}

async function warmOne(text: string, t: WarmTarget, totals: WarmTotals): Promise<void> {
  const ref = parseImageReference(text);
  if (!ref) throw new Error('not an image reference like busybox, library/busybox:1.36 or ghcr.io/org/app@sha256:...');
  const repo = repositoryPath(ref, t.hosts);
  const top = await getManifest(t, repo, ref.digest ?? ref.tag ?? 'latest');
  t.progress.note(`warm ${text}: ${top.mediaType} ${top.digest}`);
  const images: string[] = [];
  if (isIndexType(top.mediaType)) {
    const children = ((JSON.parse(top.body.toString('utf8')) as { manifests?: Descriptor[] }).manifests ?? []).filter((d) => matches(d, t.platform));
    if (children.length === 0) throw new Error(`no manifest for ${t.platform ? platformText(t.platform) : 'any platform'} in the index`);
    for (const child of children) {
      const m = await getManifest(t, repo, child.digest);
      if (isIndexType(m.mediaType)) continue;
      t.progress.note(`warm ${text}: ${child.platform ? platformText(child.platform as Platform) : 'platform'} ${m.digest}`);
      images.push(m.body.toString('utf8'));
    }
  } else {
    images.push(top.body.toString('utf8'));
  }
  totals.platforms += images.length;
  const blobs = new Map<string, number | undefined>();
  for (const body of images) {
    const doc = JSON.parse(body) as { config?: Descriptor; layers?: Descriptor[] };
    for (const d of [doc.config, ...(doc.layers ?? [])]) if (d?.digest) blobs.set(d.digest, d.size);
  }
  const queue = [...blobs];
  const errors: string[] = [];
  await Promise.all(
    Array.from({ length: Math.max(1, t.concurrency) }, async () => {
      for (let next = queue.shift(); next; next = queue.shift()) {
        await fetchBlob(t, repo, next[0], next[1], totals).catch((err: Error) => errors.push(`${next![0]}: ${err.message}`));
      }
    }),
  );
  if (errors.length > 0) throw new Error(`${errors.length} blob(s) failed: ${errors.join('; ')}`);
}

/** The path of a reference on this mirror: the default upstream's names as they are, others by prefix. */
function repositoryPath(ref: ImageReference, hosts: WarmTarget['hosts']): string {
  const host = ref.host === undefined || ref.host === 'index.docker.io' ? 'docker.io' : ref.host;
  const route = hosts.get(host);
  if (!route) throw new Error(`this mirror has no upstream for ${host} (see proxy.upstreams)`);
  return route === 'default' ? ref.name : `${host}/${ref.name}`;
}

const matches = (d: Descriptor, p: Platform | undefined): boolean =>
  !p || (d.platform?.os === p.os && d.platform?.architecture === p.architecture && (!p.variant || d.platform?.variant === p.variant));

const platformText = (p: Platform): string => [p.os, p.architecture, p.variant].filter(Boolean).join('/');

async function getManifest(t: WarmTarget, repo: string, reference: string): Promise<{ mediaType: string; digest: string; body: Buffer }> {
  const res = await request(`${t.base}/v2/${repo}/manifests/${reference}`, { accept: MANIFEST_ACCEPT.join(', ') });
  const body = await collect(res);
  if (res.statusCode !== 200) throw new Error(`manifest ${reference}: ${res.statusCode} ${registryError(body)}`);
  return { mediaType: String(res.headers['content-type']), digest: String(res.headers['docker-content-digest']), body };
}

async function fetchBlob(t: WarmTarget, repo: string, digest: string, size: number | undefined, totals: WarmTotals): Promise<void> {
  const [alg, hex] = digest.split(':') as [string, string];
  const cached = await stat(`${t.root}/docker/registry/v2/blobs/${alg}/${hex.slice(0, 2)}/${hex}/data`).then(
    () => true,
    () => false,
  );
  const label = digest.slice(0, 19);
  t.progress.start(digest, label, size);
  try {
    const res = await request(`${t.base}/v2/${repo}/blobs/${digest}`, {});
    if (res.statusCode !== 200) throw new Error(`${res.statusCode} ${registryError(await collect(res))}`);
    let bytes = 0;
    for await (const chunk of res as AsyncIterable<Buffer>) {
      bytes += chunk.length;
      t.progress.advance(digest, chunk.length);
    }
    // A transfer the mirror aborted (wrong bytes, a broken upstream) ends without completing.
    if (!res.complete || (size !== undefined && bytes !== size)) throw new Error(`transfer broken after ${bytes} bytes`);
    if (cached) totals.blobsCached++;
    else {
      totals.blobsFetched++;
      totals.bytesFetched += bytes;
    }
    t.progress.finish(digest, cached ? 'cached' : 'fetched');
  } catch (err) {
    t.progress.finish(digest, 'failed', (err as Error).message);
    throw err;
  }
}

function request(url: string, headers: Record<string, string>): Promise<http.IncomingMessage> {
  return new Promise((resolve, reject) => {
    http.get(url, { headers, agent: false }, resolve).on('error', reject);
  });
}

async function collect(res: http.IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of res as AsyncIterable<Buffer>) chunks.push(c);
  return Buffer.concat(chunks);
}

function registryError(body: Buffer): string {
  try {
    const e = (JSON.parse(body.toString('utf8')) as { errors?: { code?: string; message?: string }[] }).errors?.[0];
    return e ? `${e.code}: ${e.message}` : '';
  } catch {
    return '';
  }
}
