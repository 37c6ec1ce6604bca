/**
 * `BENCH_ONLY=budget` (issue 32): Docker Hub's rate limit, against a fake Docker Hub in this process
 * (spec/helpers/fake-hub.ts: a manifest GET charged, a HEAD free, 429 with `Retry-After` beyond
 * the limit, one window for the whole run). Two parts, ours and the official side by side:
 *
 * - the fleet: `BENCH_BUDGET_CLIENTS` clients pull a mix of images by tag (manifest, config,
 *   layer) for a simulated hour of `BENCH_BUDGET_SECONDS`, a cold cache at the start, some tags
 *   moved upstream at 20 and 40 minutes; reported: client pulls served and failed, the hub's
 *   charges against the 26 distinct manifests any mirror has to fetch. Ours runs with
 *   `freshness: {'.*': 2 simulated minutes}` and the default `budget`; the official as registry:2.
 * - the hot tag: wrk's manifest GETs by tag against by digest, on a warm cache (ours with the
 *   window), the ratio of issue 33's target (>= 0.8x).
 */
import { randomBytes } from 'node:crypto';
import { appendFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { BenchContext } from '../context.js';
import { runWrk } from '../wrk.js';
import { startServer } from '../proc.js';
import { contenderCommand, contenders, type Contender } from '../servers.js';
import { freePort } from '../../spec/helpers/ports.js';
import { onCleanup } from '../cleanup.js';
import { seedImage } from '../../spec/helpers/fake-upstream.js';
import { startFakeHub, type FakeHub } from '../../spec/helpers/fake-hub.js';
import { ACCEPT } from './warm.js';

const REPOS = 10;
const TAGS = ['latest', 'stable'];
/** Charged pulls the hub allows in the run's one window: above the distinct manifests (26), below what careless revalidation spends. */
const LIMIT = 32;

/** A contender started on `hub`, its configuration given `extra` lines under `proxy:`. */
async function start(ctx: BenchContext, who: Contender, hub: FakeHub, label: string, extra: string[]) {
  const dir = join(ctx.workDir, `budget-${label}-${who}`);
  const port = await freePort();
  const { cmd, args, env } = await contenderCommand(who, hub.url, dir, port);
  // Ours only: registry:2 refuses no unknown key, but the comparison is with registry:2 as it is.
  if (who === 'ours' && extra.length > 0) await appendFile(join(dir, 'config.yml'), `${extra.map((l) => `  ${l}`).join('\n')}\n`);
  const undo = onCleanup(() => rm(dir, { recursive: true, force: true }));
  const server = await startServer({ name: `${who}-budget-${label}`, cmd, args, env, hostPort: `127.0.0.1:${port}`, readyPath: '/v2/' });
  return { server, done: async () => (await server.stop(), await undo()) };
}

/** One client pull by tag: the manifest, then its config and layers; true when all answered 200. */
async function pullImage(base: string, repo: string, tag: string): Promise<boolean> {
  try {
    const res = await fetch(`${base}/v2/${repo}/manifests/${tag}`, { headers: { accept: ACCEPT } });
    const body = Buffer.from(await res.arrayBuffer());
    if (res.status !== 200) return false;
    const m = JSON.parse(body.toString()) as { config: { digest: string }; layers: Array<{ digest: string }> };
    for (const d of [m.config.digest, ...m.layers.map((l) => l.digest)]) {
      const blob = await fetch(`${base}/v2/${repo}/blobs/${d}`);
      await blob.arrayBuffer();
      if (blob.status !== 200) return false;
    }
    return true;
  } catch {
    return false;
  }
}

/** The fleet's simulated hour through `who`. */
async function fleet(ctx: BenchContext, who: Contender, seconds: number, clients: number): Promise<string> {
  const hub = await startFakeHub({ limit: LIMIT, retryAfterSeconds: 3600 });
  const repo = (i: number): string => `library/app${i}`;
  for (let i = 0; i < REPOS; i++) for (const t of TAGS) seedImage(hub, repo(i), t, [randomBytes(2048)]);
  const minuteMs = (seconds * 1000) / 60;
  const { server, done } = await start(ctx, who, hub, 'fleet', [`freshness:`, `  '.*': ${Math.max(1, Math.round(2 * minuteMs))}ms`]);
  let served = 0;
  let failed = 0;
  const began = Date.now();
  const moved = new Set<number>();
  try {
    await Promise.all(
      Array.from({ length: clients }, async (_, c) => {
        for (let n = 0; Date.now() - began < seconds * 1000; n++) {
          const minute = (Date.now() - began) / minuteMs;
          // Tags moved upstream (a new push) at 20 and 40 minutes: three each.
          for (const at of [20, 40]) {
            if (minute >= at && !moved.has(at)) {
              moved.add(at);
              for (let k = 0; k < 3; k++) seedImage(hub, repo((at / 20) * 3 + k), 'latest', [randomBytes(2048)]);
            }
          }
          // Skewed: low-numbered repositories are the hot ones.
          const i = Math.min(REPOS - 1, Math.floor(REPOS * Math.random() ** 2));
          const tag = TAGS[(c + n) % TAGS.length]!;
          if (await pullImage(server.url, repo(i), tag)) served++;
          else failed++;
        }
      }),
    );
  } finally {
    await done();
  }
  await hub.close();
  // Each tag's first manifest and the six moves: what any mirror has to fetch at least once.
  const distinct = REPOS * TAGS.length + 6;
  return `${who}: ${served} client pulls served, ${failed} failed; ${hub.charged} charged pulls (limit ${LIMIT}, ${distinct} distinct manifests upstream), ${hub.limited} answered 429 by the hub, ${hub.count(/^HEAD \/v2\/.*\/manifests\//)} free HEADs`;
}

/** Manifest GETs by tag and by digest on a warm cache; ours with a freshness window. */
async function hotTag(ctx: BenchContext, who: Contender): Promise<string> {
  const hub = await startFakeHub({ limit: 1_000_000 });
  const img = seedImage(hub, 'library/hot', 'latest', [randomBytes(2048)]);
  const { server, done } = await start(ctx, who, hub, 'hot', [`freshness:`, `  '^latest$': 60s`]);
  try {
    const wrk = (ref: string) =>
      runWrk(`${server.url}/v2/library/hot/manifests/${ref}`, {
        connections: ctx.settings.manifestClients,
        threads: 2,
        seconds: ctx.settings.wrkSeconds,
        headers: { Accept: ACCEPT },
      });
    // Fills the cache and warms both paths up (the first by-digest run of the second round was 4x
    // slower than the one after it without this).
    for (const ref of ['latest', img.manifest])
      await runWrk(`${server.url}/v2/library/hot/manifests/${ref}`, { connections: 2, threads: 1, seconds: 2, headers: { Accept: ACCEPT } });
    // By digest before and after by tag: the mean is the baseline, the order's effect halved.
    const before = await wrk(img.manifest);
    const byTag = await wrk('latest');
    const after = await wrk(img.manifest);
    const digestRate = (before.requestsPerSec + after.requestsPerSec) / 2;
    const errors = before.errors + byTag.errors + after.errors;
    return `${who}: by tag ${byTag.requestsPerSec.toFixed(0)} req/s, by digest ${before.requestsPerSec.toFixed(0)} and ${after.requestsPerSec.toFixed(0)} req/s, ratio ${(byTag.requestsPerSec / digestRate).toFixed(2)}; hub HEADs ${hub.count(/^HEAD /)}, GETs ${hub.count(/^GET \/v2\/.*\/manifests\//)}${errors ? `; ${errors} errors` : ''}`;
  } finally {
    await done();
    await hub.close();
  }
}

/** One round: the fleet and the hot tag through both contenders. */
export async function budgetRound(ctx: BenchContext, round: number): Promise<void> {
  const seconds = Number(process.env.BENCH_BUDGET_SECONDS ?? (ctx.settings.quick ? 15 : 30));
  const clients = Number(process.env.BENCH_BUDGET_CLIENTS ?? 16);
  for (const who of contenders(round)) {
    const line = await fleet(ctx, who, seconds, clients);
    ctx.log(`  budget fleet ${line}`);
    ctx.results.notes.push(`round ${round + 1} budget fleet (${clients} clients, ${seconds} s as an hour) ${line}`);
  }
  for (const who of contenders(round)) {
    const line = await hotTag(ctx, who);
    ctx.log(`  budget hot tag ${line}`);
    ctx.results.notes.push(`round ${round + 1} budget hot tag ${line}`);
  }
}
