/**
 * `registry warm`: pre-fetches images into the cache through the proxy stores a pull goes through
 * (lib/services/registry-services.ts builds them as `serve` does), so that a warmed image is cached exactly
 * as a pull would have cached it: verified, linked, tagged, and scheduled to expire. For an index,
 * every child manifest is fetched, or only the chosen platform's; then each image's config and
 * layers, a few blobs at a time.
 */
import type { Digest } from '../distribution/digest.js';
import { tryParseManifest, type DescriptorPlatform, type ParsedManifest } from '../distribution/manifest.js';
import { MediaType, isIndexType } from '../distribution/mediatypes.js';
import { formatBytes } from '../config/size.js';
import type { Manifest } from '../stores.js';
import type { RegistryServices } from '../services/registry-services.js';
import type { WarmProgress } from './progress.js';
import { platformMatches, platformText, resolveReference, type Platform, type WarmReference } from './references.js';

/** What a warm-up runs with. */
interface WarmOptions {
  readonly services: Pick<RegistryServices, 'router' | 'blobs' | 'repository' | 'policy'>;
  /** Of an index, only this platform's image; every platform when undefined. */
  readonly platform?: Platform;
  /** Blobs fetched at once (per reference). */
  readonly concurrency: number;
  readonly progress: WarmProgress;
}

/** Totals for the summary. */
interface WarmTotals {
  /** References warmed completely. */
  images: number;
  /** Image manifests warmed (one per platform of an index). */
  platforms: number;
  blobsFetched: number;
  blobsCached: number;
  /** Bytes transferred from the upstreams. */
  bytesFetched: number;
  /** References that failed, with the reason. */
  failed: Array<{ ref: string; reason: string }>;
}

/** Warms every reference in turn; a failed reference is reported and the others go on. */
export async function warmAll(refs: readonly string[], options: WarmOptions): Promise<WarmTotals> {
  const totals: WarmTotals = { images: 0, platforms: 0, blobsFetched: 0, blobsCached: 0, bytesFetched: 0, failed: [] };
  for (const text of refs) {
    try {
      await warmOne(resolveReference(text, options.services.router, options.services.policy.isHosted), options, totals);
      totals.images++;
    } catch (err) {
      const reason = err instanceof Error ? err.message : String(err);
      totals.failed.push({ ref: text, reason });
      options.progress.line(`warm ${text}: failed: ${reason}`);
    }
  }
  return totals;
}

async function warmOne(ref: WarmReference, options: WarmOptions, totals: WarmTotals): Promise<void> {
  const { namespace, name, text } = ref;
  const top =
    'digest' in ref.target ? await namespace.manifests.getByDigest(name, ref.target.digest) : await namespace.manifests.getByTag(name, ref.target.tag);
  options.progress.line(`warm ${text}: manifest ${top.digest.value} ${top.mediaType}${staleNote(top)}`);
  const images: Manifest[] = [];
  if (isIndexType(top.mediaType)) {
    const index = parse(top);
    const wanted = (p: DescriptorPlatform | undefined): boolean => !options.platform || platformMatches(p, options.platform);
    const bad = index.invalid.find((i) => i.field === 'manifests' && wanted(i.platform));
    if (bad) throw new Error(`the index names an invalid digest ${String(bad.digest)}`);
    const chosen = index.refs.manifests.filter((d) => wanted(d.platform));
    if (chosen.length === 0) {
      const all = [...index.refs.manifests, ...index.invalid.filter((i) => i.field === 'manifests')].map((d) => platformText(d.platform ?? {}));
      throw new Error(
        `the index has no manifest for ${options.platform ? platformText(options.platform) : 'any platform'} (it has ${all.join(', ') || 'none'})`,
      );
    }
    for (const child of chosen) {
      const digest = child.digest;
      const m = await namespace.manifests.getByDigest(name, digest);
      if (isIndexType(m.mediaType)) throw new Error(`the index holds another index (${digest.value}), which warm does not follow`);
      options.progress.line(`warm ${text}: manifest ${m.digest.value} ${platformText(child.platform ?? {})}${staleNote(m)}`);
      images.push(m);
    }
  } else {
    images.push(top);
  }
  totals.platforms += images.length;

  // Each blob once, however many of the images share it.
  const blobs = new Map<string, { digest: Digest; size?: number }>();
  for (const m of images) for (const b of blobsOf(m)) if (!blobs.has(b.digest.value)) blobs.set(b.digest.value, b);
  const queue = [...blobs.values()];
  const errors: string[] = [];
  const worker = async (): Promise<void> => {
    for (let next = queue.shift(); next; next = queue.shift()) {
      const blob = next;
      await warmBlob(ref, blob.digest, blob.size, options, totals).catch((err: unknown) => {
        const reason = err instanceof Error ? err.message : String(err);
        errors.push(`${blob.digest.value}: ${reason}`);
        options.progress.line(`warm ${text}: blob ${blob.digest.value} failed: ${reason}`);
      });
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(options.concurrency, queue.length)) }, worker));
  if (errors.length > 0) throw new Error(`${errors.length} of ${blobs.size} blob(s) failed: ${errors.join('; ')}`);
}

/**
 * One blob through the proxy blob store, as a `GET` of it would: a blob this repository already
 * links is a cache hit (its expiry extended, nothing read); otherwise the upstream's bytes are
 * read to the end, which is what makes the store verify, commit and link them.
 */
async function warmBlob(ref: WarmReference, digest: Digest, declared: number | undefined, options: WarmOptions, totals: WarmTotals): Promise<void> {
  const { namespace, name, text } = ref;
  const handle = await namespace.blobs.get(name, digest);
  const size = handle.size ?? declared;
  if (handle.source === 'cache') {
    totals.blobsCached++;
    options.progress.line(`warm ${text}: blob ${digest.value} ${formatBytes(size ?? 0)} cached`);
    return;
  }
  const id = `${text} ${digest.value}`;
  options.progress.start(id, shortDigest(digest), size);
  let bytes = 0;
  try {
    const stream = await handle.open();
    // The stream ends only once the bytes are verified and committed; wrong bytes end in an error.
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      bytes += chunk.length;
      options.progress.advance(id, chunk.length);
    }
  } finally {
    options.progress.end(id);
  }
  // A disk that refused the write still hands the verified bytes over: check they were kept.
  const stored = (await options.services.blobs.stat(digest)) && (await options.services.repository(namespace.storedName(name)).hasLayer(digest));
  if (!stored) throw new Error('fetched but not cached: the disk refused it (see the error logged above)');
  totals.blobsFetched++;
  totals.bytesFetched += bytes;
  options.progress.line(`warm ${text}: blob ${digest.value} ${formatBytes(bytes)} fetched`);
}

/** The config and layers of an image manifest (schema 2, OCI; or schema 1's `fsLayers`). */
function blobsOf(m: Manifest): Array<{ digest: Digest; size?: number }> {
  const { refs, invalid } = parse(m);
  const schema1 = m.mediaType === MediaType.DockerManifestV1 || m.mediaType === MediaType.DockerManifestV1Signed;
  const fields = schema1 ? ['fsLayers'] : ['config', 'layers'];
  const bad = invalid.find((i) => fields.includes(i.field));
  if (bad) throw new Error(`manifest ${m.digest.value} names an invalid blob digest ${String(bad.digest)}`);
  const descriptors = schema1 ? refs.fsLayers : [...(refs.config ? [refs.config] : []), ...refs.layers];
  return descriptors.map((d) => ({ digest: d.digest, size: d.size }));
}

/** The stores verified the manifest and its media type, so it parses. */
function parse(m: Manifest): ParsedManifest {
  const parsed = tryParseManifest(m.payload);
  if (!parsed) throw new Error(`manifest ${m.digest.value} is not a JSON object`);
  return parsed;
}

const staleNote = (m: Manifest): string => (m.stale ? ` (the upstream failed: ${m.stale.message}; the cached manifest is kept)` : '');

/** `sha256:0123456789ab`: the short form docker shows. */
function shortDigest(digest: Digest): string {
  return `${digest.algorithm}:${digest.hex.slice(0, 12)}`;
}
