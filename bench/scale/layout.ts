/**
 * The plan of a large generated cache in distribution's layout, computed from its size alone
 * (deterministic: the same size gives the same names, contents and digests, so the files and the
 * schedule can be produced separately). Shaped like the cache of issue 15: per 100,000 schedule
 * entries, 2,000 repositories of 10 tagged manifests, each manifest with its own config and three
 * layers drawn from a shared pool of 5,000; plus one repository with 10,000 tags.
 */
import { createHash } from 'node:crypto';

/** One blob: its digest (`sha256:<hex>`) and content. */
export interface PlannedBlob {
  readonly digest: string;
  readonly content: Buffer;
}

/** One tagged manifest of a repository. */
export interface PlannedManifest {
  readonly manifest: PlannedBlob;
  readonly config: PlannedBlob;
  /** Digests from the shared layer pool. */
  readonly layers: readonly string[];
  readonly tags: readonly string[];
}

/** One repository. */
export interface PlannedRepository {
  readonly name: string;
  readonly manifests: readonly PlannedManifest[];
}

/** The counts a size gives. */
export interface ScaleShape {
  /** Schedule entries wanted (the size named: 1k, 10k, ...). */
  readonly entries: number;
  readonly repositories: number;
  readonly manifestsPerRepository: number;
  readonly layerPool: number;
  readonly layersPerManifest: number;
  /** The repository with many tags (the tags-list measure). */
  readonly manyTagsRepository: string;
  readonly manyTags: number;
  readonly manyTagsManifests: number;
}

export const MANY_TAGS_REPOSITORY = 'scale/many-tags';
const LAYER_BYTES = 256;

/** The shape of a cache of about `entries` schedule entries. */
export function shapeOf(entries: number): ScaleShape {
  return {
    entries,
    repositories: Math.max(1, Math.round(entries / 50)),
    manifestsPerRepository: 10,
    layerPool: Math.max(20, Math.round(entries / 20)),
    layersPerManifest: 3,
    manyTagsRepository: MANY_TAGS_REPOSITORY,
    manyTags: 10_000,
    manyTagsManifests: 100,
  };
}

/** mulberry32: a small seeded PRNG (quality is irrelevant, repeatability is not). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const sha256 = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** The `i`th layer of the pool: `LAYER_BYTES` bytes derived from `i`. */
export function poolLayer(i: number): PlannedBlob {
  const content = Buffer.alloc(LAYER_BYTES);
  let block = createHash('sha256').update(`layer-${i}`).digest();
  for (let off = 0; off < LAYER_BYTES; off += block.length) {
    block.copy(content, off);
    block = createHash('sha256').update(block).digest();
  }
  return { digest: sha256(content), content };
}

/** The name of the `i`th repository: two levels, 50 teams. */
export function repositoryName(i: number): string {
  return `team-${String(i % 50).padStart(2, '0')}/app-${String(i).padStart(6, '0')}`;
}

function plannedManifest(seedText: string, layers: readonly string[], tags: readonly string[]): PlannedManifest {
  const configDoc = {
    architecture: 'amd64',
    os: 'linux',
    created: '2026-01-01T00:00:00Z',
    config: { Labels: { 'bench.scale': seedText } },
    rootfs: { type: 'layers', diff_ids: layers },
  };
  const configContent = Buffer.from(JSON.stringify(configDoc));
  const config = { digest: sha256(configContent), content: configContent };
  const doc = {
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: config.digest, size: configContent.length },
    layers: layers.map((digest) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest, size: LAYER_BYTES })),
  };
  const content = Buffer.from(JSON.stringify(doc, null, 3));
  return { manifest: { digest: sha256(content), content }, config, layers, tags };
}

/** The whole plan of a size. `pool` is `poolDigests(shape)`. */
export function* repositories(shape: ScaleShape, pool: readonly string[]): Generator<PlannedRepository> {
  for (let r = 0; r < shape.repositories; r++) {
    const random = prng(r + 1);
    const manifests: PlannedManifest[] = [];
    for (let m = 0; m < shape.manifestsPerRepository; m++) {
      const layers = Array.from({ length: shape.layersPerManifest }, () => pool[Math.floor(random() * pool.length)]!);
      manifests.push(plannedManifest(`${r}-${m}`, layers, [`v${m + 1}`]));
    }
    yield { name: repositoryName(r), manifests };
  }
  // Every tag of the many-tags repository points at one of a few manifests, as CI builds re-tag.
  const random = prng(0x7a65);
  const manifests: PlannedManifest[] = [];
  for (let m = 0; m < shape.manyTagsManifests; m++) {
    const layers = Array.from({ length: shape.layersPerManifest }, () => pool[Math.floor(random() * pool.length)]!);
    const tags: string[] = [];
    for (let t = m; t < shape.manyTags; t += shape.manyTagsManifests) tags.push(`build-${String(t).padStart(5, '0')}`);
    manifests.push(plannedManifest(`many-${m}`, layers, tags));
  }
  yield { name: shape.manyTagsRepository, manifests };
}

/** The digests of the shared layer pool. */
export function poolDigests(shape: ScaleShape): string[] {
  return Array.from({ length: shape.layerPool }, (_, i) => poolLayer(i).digest);
}

/** The schedule entries of one repository: its manifests (type 1), configs and layers (type 0), each once. */
export function entriesOf(repo: PlannedRepository): Array<{ key: string; type: 0 | 1 }> {
  const out: Array<{ key: string; type: 0 | 1 }> = [];
  const blobs = new Set<string>();
  for (const m of repo.manifests) {
    out.push({ key: `${repo.name}@${m.manifest.digest}`, type: 1 });
    for (const b of [m.config.digest, ...m.layers]) {
      if (blobs.has(b)) continue;
      blobs.add(b);
      out.push({ key: `${repo.name}@${b}`, type: 0 });
    }
  }
  return out;
}
