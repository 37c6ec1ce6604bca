/**
 * Writes a planned cache (bench/scale/layout.ts) in distribution's layout under a root directory,
 * and its `scheduler-state.json` in distribution's format.
 *
 * As a command: `node build-bench/bench/scale/generate.js <root> <entries> [<part> <parts>]`
 * writes one part of the files (the bench runs one part per core, `generateCache`).
 */
import { createWriteStream, mkdirSync, writeFileSync } from 'node:fs';
import { rename } from 'node:fs/promises';
import { once } from 'node:events';
import { execFile } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { entriesOf, poolDigests, poolLayer, prng, repositories, shapeOf, type PlannedRepository } from './layout.js';

const V2 = 'docker/registry/v2';

const hexOf = (digest: string): string => digest.slice('sha256:'.length);

/** Writes a blob's `data` (its `<hex>` directory is new: one mkdir, one write). */
function writeBlob(root: string, digest: string, content: Buffer): void {
  const hex = hexOf(digest);
  const dir = `${root}/${V2}/blobs/sha256/${hex.slice(0, 2)}/${hex}`;
  mkdirSync(dir);
  writeFileSync(`${dir}/data`, content);
}

function writeLink(dir: string, digest: string): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(`${dir}/link`, digest);
}

/** Writes one repository's links, and the blobs only it has (its manifests and configs). */
function writeRepository(root: string, repo: PlannedRepository): void {
  const base = `${root}/${V2}/repositories/${repo.name}`;
  const linked = new Set<string>();
  for (const m of repo.manifests) {
    writeBlob(root, m.manifest.digest, m.manifest.content);
    writeBlob(root, m.config.digest, m.config.content);
    writeLink(`${base}/_manifests/revisions/sha256/${hexOf(m.manifest.digest)}`, m.manifest.digest);
    for (const tag of m.tags) {
      writeLink(`${base}/_manifests/tags/${tag}/index/sha256/${hexOf(m.manifest.digest)}`, m.manifest.digest);
      writeLink(`${base}/_manifests/tags/${tag}/current`, m.manifest.digest);
    }
    for (const b of [m.config.digest, ...m.layers]) {
      if (linked.has(b)) continue;
      linked.add(b);
      writeLink(`${base}/_layers/sha256/${hexOf(b)}`, b);
    }
  }
}

/** What a generation wrote. */
export interface Generated {
  readonly entries: number;
  readonly repositories: number;
  readonly seconds: number;
}

/**
 * Writes part `part` of `parts` of the cache of `entries` entries under `root`, without its
 * schedule: the repositories whose index is `part` modulo `parts`, and with part 0 the layer pool.
 * Synchronous calls on purpose: measured here, one process making 50,000 links took 2.7 s with
 * `mkdirSync`/`writeFileSync` against 10.6-11.9 s with promises at 4, 16 or 64 in flight (the
 * thread pool's hand-offs cost more than the system calls); the bench runs one process per core.
 */
export function generatePart(root: string, entries: number, part: number, parts: number): Generated {
  const start = Date.now();
  const shape = shapeOf(entries);
  for (let i = 0; i < 256; i++) mkdirSync(`${root}/${V2}/blobs/sha256/${i.toString(16).padStart(2, '0')}`, { recursive: true });
  if (part === 0) {
    for (let i = 0; i < shape.layerPool; i++) {
      const layer = poolLayer(i);
      writeBlob(root, layer.digest, layer.content);
    }
  }
  let count = 0;
  let repos = 0;
  let index = 0;
  for (const repo of repositories(shape, poolDigests(shape))) {
    if (index++ % parts !== part) continue;
    repos++;
    count += entriesOf(repo).length;
    writeRepository(root, repo);
  }
  return { entries: count, repositories: repos, seconds: (Date.now() - start) / 1000 };
}

/** When the entries of a schedule expire. */
export interface ScheduleTimes {
  /** Now (ms since the epoch): entries expire uniformly over `[now + quietMs, now + ttlMs]`... */
  readonly now: number;
  readonly ttlMs: number;
  readonly quietMs: number;
  /** ...except `count` entries expiring at `perSecond` from `startAt` on (the trickle). */
  readonly trickle?: { readonly startAt: number; readonly perSecond: number; readonly count: number };
  /** Keys never in the trickle (what the load reads). */
  readonly spare?: ReadonlySet<string>;
}

/** Go's RFC 3339 with milliseconds, as distribution's `time.Time` marshals (UTC). */
const goTime = (ms: number): string => new Date(ms).toISOString();

/**
 * Writes `root/scheduler-state.json` for the cache of `entries` (as registry:2 writes it: one
 * object, no whitespace), atomically; returns the number of entries. The trickle is taken from
 * the last repositories, never the many-tags one nor the `spare` keys.
 */
export async function writeSchedule(root: string, entries: number, times: ScheduleTimes): Promise<number> {
  const shape = shapeOf(entries);
  const pool = poolDigests(shape);
  const all: Array<Array<{ key: string; type: 0 | 1 }>> = [];
  for (const repo of repositories(shape, pool)) all.push(entriesOf(repo));
  const trickle = new Map<string, number>();
  if (times.trickle) {
    let k = 0;
    for (let r = all.length - 2; r >= 0 && k < times.trickle.count; r--) {
      for (const e of all[r]!) {
        if (k >= times.trickle.count) break;
        if (times.spare?.has(e.key)) continue;
        trickle.set(e.key, times.trickle.startAt + Math.round((k * 1000) / times.trickle.perSecond));
        k++;
      }
    }
  }
  const random = prng(0x5ced);
  const path = `${root}/scheduler-state.json`;
  const temp = `${path}.generating`;
  const out = createWriteStream(temp);
  let chunk = '{';
  let n = 0;
  for (const list of all) {
    for (const e of list) {
      const at = trickle.get(e.key) ?? times.now + times.quietMs + Math.floor(random() * (times.ttlMs - times.quietMs));
      const key = JSON.stringify(e.key);
      chunk += `${n === 0 ? '' : ','}${key}:{"Key":${key},"ExpiryData":"${goTime(at)}","EntryType":${e.type}}`;
      n++;
      if (chunk.length > 1 << 20) {
        if (!out.write(chunk)) await once(out, 'drain');
        chunk = '';
      }
    }
  }
  out.end(`${chunk}}`);
  await once(out, 'finish');
  await rename(temp, path);
  return n;
}

/** The digest the load reads (the first manifest of the first repository), and its repository. */
export function loadTarget(entries: number): { repo: string; digest: string; key: string } {
  const shape = shapeOf(entries);
  const first = repositories(shape, poolDigests(shape)).next().value as PlannedRepository;
  const digest = first.manifests[0]!.manifest.digest;
  return { repo: first.name, digest, key: `${first.name}@${digest}` };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const [root, entries, part, parts] = [process.argv[2], Number(process.argv[3]), Number(process.argv[4] ?? 0), Number(process.argv[5] ?? 1)];
  if (!root || !Number.isInteger(entries) || entries <= 0 || !(part >= 0 && part < parts)) {
    process.stderr.write('usage: generate.js <root> <entries> [<part> <parts>]\n');
    process.exit(2);
  }
  process.stdout.write(`${JSON.stringify(generatePart(root, entries, part, parts))}\n`);
}

/** Writes the whole cache with one generating process per core; resolves with the totals. */
export async function generateCache(root: string, entries: number, parts = Math.max(1, availableParallelism())): Promise<Generated> {
  const start = Date.now();
  const script = fileURLToPath(import.meta.url);
  const results = await Promise.all(
    Array.from(
      { length: parts },
      (_, part) =>
        new Promise<Generated>((resolve, reject) => {
          execFile(process.execPath, [script, root, String(entries), String(part), String(parts)], { maxBuffer: 1 << 20 }, (err, stdout, stderr) => {
            if (err) return reject(new Error(`generating part ${part} failed: ${err.message}\n${stderr}`));
            resolve(JSON.parse(stdout) as Generated);
          });
        }),
    ),
  );
  return {
    entries: results.reduce((n, r) => n + r.entries, 0),
    repositories: results.reduce((n, r) => n + r.repositories, 0),
    seconds: (Date.now() - start) / 1000,
  };
}
