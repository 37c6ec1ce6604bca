/**
 * The scaling scenario (`BENCH_ONLY=scale`, issue 15): a cache generated in distribution's layout
 * (bench/scale/layout.ts) at several sizes, served by ours and by each official on copies of the same
 * data (hard links: neither contender rewrites a file in place, each gets its own state file); from
 * `BENCH_SCALE_IN_PLACE_FROM` entries on (default 1M), each contender's cache is generated in its
 * own directory instead, since hard-linking a million files took longer than generating them.
 * For each size and contender, two starts:
 * - quiet (nothing expires for an hour): time until `/v2/` answers, then how long the work it does
 *   in the background after that lasts (until its CPU stays under 3% of a core for 2 s), CPU and
 *   RSS with no client once settled, the paged catalog walk, the 10,000-tag list, the cache page's
 *   first byte; then, stopped, `garbage-collect --dry-run`;
 * - trickling (entries expire at 10/s from the start): once past the settling time of the quiet
 *   start, CPU with no client, then manifest by digest under 16 connections (req/s, p50, p99).
 * The upstream answers `/v2/` and refuses everything else with 503, so tags and the cache answer
 * from storage on both. Results go to `bench/results-scale.json` and the curves to `docs/scale.svg`.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '../../spec/helpers/ports.js';
import { registryYaml } from '../../spec/helpers/registry-yaml.js';
import { onCleanup } from '../cleanup.js';
import type { BenchContext } from '../context.js';
import { contenderEnv, contenders, type Contender } from '../servers.js';
import { official } from '../officials.js';
import { generateCache, loadTarget, writeSchedule } from '../scale/generate.js';
import { MANY_TAGS_REPOSITORY, shapeOf } from '../scale/layout.js';
import { cpuWindow, get, settle, startTimed, timeCommand, walkCatalog, wrkLatency } from '../scale/probes.js';
import { formatScaleReport, type ScaleMetricId, type ScaleSample } from '../scale/report.js';
import { scaleSvg } from '../scale/svg.js';
import { ACCEPT } from './warm.js';

/** Ours' command line; `BENCH_SCALE_OURS_BIN` points at another build (a before/after comparison). */
const REGISTRY_BIN = process.env.BENCH_SCALE_OURS_BIN ?? fileURLToPath(new URL('../../../bin/registry', import.meta.url));
const TTL_MS = 168 * 3600_000;

/** The scenario's parameters, from the environment. */
export interface ScaleSettings {
  readonly sizes: number[];
  readonly rounds: number;
  readonly settleSeconds: number;
  readonly windowSeconds: number;
  /** How long after the idle window the RSS is read again (0: not read again). */
  readonly laterSeconds: number;
  readonly wrkSeconds: number;
  readonly expiriesPerSecond: number;
  /** Where generated caches are kept between runs (default: the run's work directory). */
  readonly cacheDir?: string;
  /** Sizes from this one on are generated in each contender's directory rather than copied. */
  readonly inPlaceFrom: number;
  /** `BENCH_SCALE_WHO=ours` measures one contender only (default: ours and every official). */
  readonly who: readonly Contender[];
  readonly out: string;
  readonly svg: string;
}

/** `BENCH_SCALE_SIZES` (default 1000,10000,100000; add 1000000 when disk and time allow), `BENCH_SCALE_ROUNDS`, `BENCH_SCALE_DIR`, `BENCH_SCALE_WHO`, `BENCH_SCALE_IN_PLACE_FROM`. */
export function scaleSettings(quick: boolean, env: NodeJS.ProcessEnv = process.env): ScaleSettings {
  const sizes = (env.BENCH_SCALE_SIZES ?? (quick ? '1000,10000' : '1000,10000,100000')).split(',').map(Number);
  if (sizes.some((s) => !Number.isInteger(s) || s < 100)) throw new Error(`BENCH_SCALE_SIZES must list entry counts >= 100, not ${env.BENCH_SCALE_SIZES}`);
  return {
    sizes,
    rounds: Number(env.BENCH_SCALE_ROUNDS ?? 1),
    settleSeconds: quick ? 3 : 5,
    windowSeconds: quick ? 5 : 10,
    laterSeconds: quick ? 0 : 60,
    wrkSeconds: quick ? 5 : 10,
    expiriesPerSecond: 10,
    cacheDir: env.BENCH_SCALE_DIR,
    inPlaceFrom: Number(env.BENCH_SCALE_IN_PLACE_FROM ?? 1_000_000),
    who: scaleWho(env.BENCH_SCALE_WHO),
    out: env.BENCH_SCALE_OUT ?? 'bench/results-scale.json',
    svg: env.BENCH_SCALE_SVG ?? 'docs/scale.svg',
  };
}

/** `BENCH_SCALE_WHO`: contenders by id (`ours`, `official`, `official-<label>`), each checked. */
function scaleWho(text: string | undefined): Contender[] {
  const all = contenders(0);
  if (text === undefined) return all;
  const who = text.split(',') as Contender[];
  for (const w of who) if (!all.includes(w)) throw new Error(`BENCH_SCALE_WHO: no contender ${w} (known: ${all.join(', ')})`);
  return who;
}

/** An upstream that is up (`/v2/` answers) but serves nothing (503), so both contenders answer from storage. */
async function refusingUpstream(): Promise<string> {
  const server = http.createServer((req, res) => {
    if (req.url === '/v2/' || req.url === '/v2') {
      res.writeHead(200, { 'Content-Type': 'application/json', 'Docker-Distribution-API-Version': 'registry/2.0' }).end('{}');
      return;
    }
    res.writeHead(503, { 'Content-Type': 'application/json' }).end('{"errors":[{"code":"UNAVAILABLE","message":"bench upstream serves nothing"}]}');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  onCleanup(() => new Promise<void>((r) => server.close(() => r())));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

const run = (cmd: string, args: string[]): Promise<void> =>
  new Promise((resolve, reject) =>
    execFile(cmd, args, { maxBuffer: 1 << 20 }, (err, _o, stderr) =>
      err ? reject(new Error(`${cmd} ${args.join(' ')}: ${err.message} ${stderr}`)) : resolve(),
    ),
  );

/**
 * Removes a generated cache with `rm -rf`: Node's recursive `rm` took more than ten minutes and
 * 4 GiB of memory for a 1M-entry cache (millions of files), holding the run up after its measures.
 */
const removeTree = (dir: string): Promise<void> => run('rm', ['-rf', '--', dir]);

/** The generated cache of `size` entries (made once, or found in `BENCH_SCALE_DIR`). */
async function generated(ctx: BenchContext, s: ScaleSettings, size: number): Promise<string> {
  const dir = join(s.cacheDir ?? join(ctx.workDir, 'scale-caches'), String(size));
  if (existsSync(join(dir, '.complete'))) return dir;
  await removeTree(dir);
  const g = await generateCache(dir, size);
  await writeFile(join(dir, '.complete'), JSON.stringify(g));
  ctx.log(`  generated ${g.entries} entries in ${g.repositories} repositories in ${g.seconds.toFixed(1)} s`);
  return dir;
}

/**
 * One contender on its own copy of the cache: hard links to the generated one (`cache`), or, with
 * `size` instead, a cache generated in place (the same files, as the plan is deterministic).
 */
async function copyFor(
  ctx: BenchContext,
  from: { cache: string } | { size: number },
  label: string,
): Promise<{ dir: string; root: string; done(): Promise<void> }> {
  const dir = join(ctx.workDir, label);
  await removeTree(dir);
  const root = join(dir, 'root');
  await mkdir(root, { recursive: true });
  const remove = onCleanup(() => removeTree(dir));
  if ('cache' in from) {
    await run('cp', ['-al', join(from.cache, 'docker'), join(root, 'docker')]);
  } else {
    const g = await generateCache(root, from.size);
    ctx.log(`  generated ${g.entries} entries in place for ${label} in ${g.seconds.toFixed(1)} s`);
  }
  return { dir, root, done: remove };
}

async function startOn(who: Contender, dir: string, root: string, upstream: string): Promise<Awaited<ReturnType<typeof startTimed>> & { config: string }> {
  const port = await freePort();
  const config = join(dir, 'config.yml');
  await writeFile(config, registryYaml({ root, http: [`addr: 127.0.0.1:${port}`], proxy: [`remoteurl: ${upstream}`, 'ttl: 168h'] }));
  const [cmd, args] = who === 'ours' ? [process.execPath, [REGISTRY_BIN, 'serve', config]] : [official(who).bin, ['serve', config]];
  const started = await startTimed(who, cmd, args, `127.0.0.1:${port}`, contenderEnv(who));
  return { ...started, config };
}

/** The scenario: every size, every contender, `rounds` times; prints and writes the table and the SVG. */
export async function scaleScenario(ctx: BenchContext): Promise<ScaleSample[]> {
  const s = scaleSettings(ctx.settings.quick);
  const upstream = await refusingUpstream();
  const samples: ScaleSample[] = [];
  for (const size of s.sizes) {
    ctx.log(`scale: ${size} entries`);
    const inPlace = size >= s.inPlaceFrom;
    const cache = inPlace ? undefined : await generated(ctx, s, size);
    const target = loadTarget(size);
    const shape = shapeOf(size);
    for (let round = 0; round < s.rounds; round++) {
      for (const who of contenders(round).filter((w) => s.who.includes(w))) {
        const v: Partial<Record<ScaleMetricId, number>> = {};
        const sample: ScaleSample = { size, who, round, values: v };
        const copy = await copyFor(ctx, cache === undefined ? { size } : { cache }, `scale-${size}-${who}`);
        try {
          // Quiet: nothing expires within the hour.
          v.entries = await writeSchedule(copy.root, size, { now: Date.now(), ttlMs: TTL_MS, quietMs: 3600_000 });
          let server = await startOn(who, copy.dir, copy.root, upstream);
          try {
            v.ready_s = server.readySeconds;
            v.settle_s = await settle(server.pid);
            await new Promise((r) => setTimeout(r, s.settleSeconds * 1000));
            const idle = await cpuWindow(server.pid, s.windowSeconds);
            v.idle_cpu = idle.cpuPercent;
            v.rss_mib = idle.rss / 2 ** 20;
            // An idle Node process gives back the garbage of its start-up work only when V8's memory
            // reducer runs (within about a minute of the allocations ending): the idle RSS once more.
            if (s.laterSeconds > 0) {
              await new Promise((r) => setTimeout(r, s.laterSeconds * 1000));
              v.rss_later_mib = (await cpuWindow(server.pid, 1)).rss / 2 ** 20;
            }
            const note =
              (what: string) =>
              (err: Error): undefined =>
                void ctx.results.notes.push(`scale ${size} ${who}: ${what}: ${err.message.split('\n')[0]}`);
            const walk = await walkCatalog(server.url).catch(note('catalog walk'));
            if (walk && walk.names !== shape.repositories + 1)
              ctx.results.notes.push(`scale ${size} ${who}: catalog walk found ${walk.names} of ${shape.repositories + 1} repositories`);
            v.catalog_s = walk?.seconds;
            const tagTimes: number[] = [];
            for (let i = 0; i < 3; i++) {
              const r = await get(`${server.url}/v2/${MANY_TAGS_REPOSITORY}/tags/list`).catch(note('tags list'));
              if (!r) break;
              const n = r.status === 200 ? (JSON.parse(r.body.toString()) as { tags: string[] }).tags.length : 0;
              if (n !== shape.manyTags) ctx.results.notes.push(`scale ${size} ${who}: tags list answered ${r.status} with ${n} of ${shape.manyTags} tags`);
              tagTimes.push(r.seconds);
            }
            v.tags_s = tagTimes.length === 3 ? tagTimes.sort((a, b) => a - b)[1]! : undefined;
            if (who === 'ours') v.page_first_byte_s = (await get(`${server.url}/`, { Accept: 'text/html' }).catch(note('cache page')))?.firstByteSeconds;
          } finally {
            await server.stop();
          }
          const gcArgs = who === 'ours' ? [REGISTRY_BIN, 'garbage-collect', '--dry-run', server.config] : ['garbage-collect', '--dry-run', server.config];
          v.gc_s = await timeCommand(who === 'ours' ? process.execPath : official(who).bin, gcArgs, contenderEnv(who)).catch(
            (err: Error) => void ctx.results.notes.push(`scale ${size} ${who}: gc: ${err.message}`),
          );

          // Trickling: entries come due at 10/s from a few seconds after the start on.
          const settled = v.settle_s ?? 0;
          const trickleFor = settled + s.settleSeconds + s.windowSeconds + s.wrkSeconds + 30;
          await writeSchedule(copy.root, size, {
            now: Date.now(),
            ttlMs: TTL_MS,
            quietMs: 3600_000,
            trickle: { startAt: Date.now() + 2000, perSecond: s.expiriesPerSecond, count: trickleFor * s.expiriesPerSecond },
            spare: new Set([target.key]),
          });
          server = await startOn(who, copy.dir, copy.root, upstream);
          try {
            // Past the background start-up work, and the expiries that came due meanwhile.
            await new Promise((r) => setTimeout(r, (settled + s.settleSeconds) * 1000));
            v.trickle_cpu = (await cpuWindow(server.pid, s.windowSeconds)).cpuPercent;
            const load = await wrkLatency(`${server.url}/v2/${target.repo}/manifests/${target.digest}`, s.wrkSeconds, { Accept: ACCEPT });
            if (load.errors > 0) ctx.results.notes.push(`scale ${size} ${who}: ${load.errors} errors under load`);
            Object.assign(v, {
              digest_rps: load.requestsPerSec,
              digest_p50_ms: load.p50 * 1000,
              digest_p99_ms: load.p99 * 1000,
              digest_max_ms: load.max * 1000,
            });
          } finally {
            await server.stop();
          }
        } finally {
          await copy.done();
        }
        ctx.log(
          `  ${who} (${size}): ${Object.entries(v)
            .map(([k, x]) => `${k} ${x === undefined ? '-' : Number(x.toPrecision(4))}`)
            .join(', ')}`,
        );
        samples.push(sample);
      }
    }
  }
  const report = formatScaleReport(samples);
  process.stdout.write(`\n${report}\n\n`);
  await mkdir(join(s.out, '..'), { recursive: true });
  await writeFile(s.out, `${JSON.stringify({ date: new Date().toISOString(), settings: s, samples }, null, 2)}\n`);
  await writeFile(s.svg, scaleSvg(samples));
  ctx.log(`scale results written to ${s.out}, curves to ${s.svg}`);
  return samples;
}
