/**
 * `npm run bench`: our mirror against the official registry (Debian's docker-registry in proxy
 * mode), both caching the same seeded upstream (another docker-registry), in interleaved rounds on
 * this machine. Prints medians, ratios ours/official and PASS/MISS per target, and writes them as
 * JSON (`BENCH_OUT`, default bench/results.json). `BENCH_QUICK=1` for a short run, `BENCH_ROUNDS=n`,
 * `BENCH_ONLY=blob,manifest,coldpull,upstream,streams,slow,wan,s3` to run some scenarios; the WAN
 * scenario runs in the first `BENCH_WAN_ROUNDS` rounds only (default 1), on `BENCH_WAN_PROFILES`.
 * `large`: a cold pull of an image of `BENCH_LARGE_MIB` (4096; 512 quick) on the loopback and over the first WAN profile, in the first `BENCH_LARGE_ROUNDS` rounds (default 1).
 * `BENCH_ONLY=chaos` runs the chaos scenario (never part of the default set): once, after the
 * rounds, for `BENCH_CHAOS_SECONDS` per contender with `BENCH_CHAOS_CLIENTS` clients. `BENCH_ONLY=s3`
 * runs the S3 scenario (never part of the default set either: it starts a Ceph RGW of its own);
 * `BENCH_ONLY=replicas` three replicas of ours on that RGW coordinated by a redis-server (issue 16).
 * `BENCH_ONLY=scale` runs the scaling scenario (not in the default set: it generates caches of up
 * to 100k entries, 1M with `BENCH_SCALE_SIZES`; bench/scenarios/scale.ts). `BENCH_ONLY=notify` measures
 * manifest and blob pulls with a dead, a slow and a black-hole notification endpoint against none and a control (bench/scenarios/notify.ts).
 * `BENCH_ONLY=budget` a fleet's simulated hour and a hot tag against a fake Docker Hub (bench/scenarios/budget.ts).
 */
import { mkdtemp, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { startDistribution } from '../spec/helpers/upstream-registry.js';
import { cleanupAll, installSignalHandlers, onCleanup } from './cleanup.js';
import { ensurePrerequisites, PrerequisiteError } from './prereqs.js';
import { readSettings } from './settings.js';
import { Results } from './results.js';
import { describeMachine } from './machine.js';
import { APP_REPO, BIG_REPO, type BenchContext } from './context.js';
import { pushRandomImage, uploadBlobs } from './seed.js';
import { manifestRound, startWarmRig, warmBlobRound, type WarmRig } from './scenarios/warm.js';
import { coldPullRound, upstreamBytesRound } from './scenarios/cold.js';
import { coldStreamsRound, slowClientsRound } from './scenarios/memory.js';
import { s3Round } from './scenarios/s3.js';
import { registerReplicasReport, replicasRound } from './scenarios/replicas.js';
import { registerWanReport, seedWan, wanRound } from './scenarios/wan.js';
import { chaosRun, registerChaosReport, seedChaos } from './scenarios/chaos.js';
import { evaluate, formatReport, rows } from './report.js';
import { scaleScenario } from './scenarios/scale.js';
import { notifyRound, registerNotifyReport } from './scenarios/notify.js';
import { budgetRound } from './scenarios/budget.js';
import { largeRound, registerLargeReport, seedLarge } from './scenarios/large.js';

const SCENARIOS = [
  'blob',
  'manifest',
  'coldpull',
  'upstream',
  'streams',
  'slow',
  'wan',
  'large',
  'chaos',
  's3',
  'replicas',
  'scale',
  'notify',
  'budget',
] as const;
/** Run without BENCH_ONLY: all but the chaos scenario (a stress run of its own), s3 and replicas (a Ceph RGW of their own), scale (caches of its own), notify (six more instances of ours) and budget (a fake Docker Hub's simulated hour). */
const DEFAULT_SCENARIOS = SCENARIOS.filter((s) => s !== 'chaos' && s !== 's3' && s !== 'replicas' && s !== 'scale' && s !== 'notify' && s !== 'budget');

async function run(): Promise<number> {
  const started = Date.now();
  const settings = readSettings();
  const only = new Set<string>(process.env.BENCH_ONLY ? process.env.BENCH_ONLY.split(',') : DEFAULT_SCENARIOS);
  for (const s of only)
    if (!(SCENARIOS as readonly string[]).includes(s)) throw new Error(`BENCH_ONLY: unknown scenario ${s} (known: ${SCENARIOS.join(', ')})`);
  const wanted = (s: (typeof SCENARIOS)[number]): boolean => only.has(s);
  const log = (line: string): void => void process.stdout.write(`[${((Date.now() - started) / 1000).toFixed(0).padStart(4)} s] ${line}\n`);
  ensurePrerequisites();
  const machine = describeMachine();
  log(`machine: ${JSON.stringify(machine)}`);
  log(`settings: ${settings.rounds} round(s)${settings.quick ? ', quick' : ''}`);

  const workDir = await mkdtemp(join(tmpdir(), 'registry-bench-'));
  onCleanup(() => rm(workDir, { recursive: true, force: true }));
  const upstream = await startDistribution();
  onCleanup(() => upstream.destroy());
  log(`upstream ${upstream.url}: seeding`);
  const app = await pushRandomImage(upstream.hostPort, [`${APP_REPO}:latest`], settings.imageLayers, 'bench-app');
  const [warmBlob] = wanted('blob') || wanted('s3') ? await uploadBlobs(upstream.url, BIG_REPO, 'warm', settings.warmBlobBytes, 1) : [];
  const coldBlobs =
    wanted('streams') || wanted('slow')
      ? await uploadBlobs(upstream.url, BIG_REPO, 'cold', settings.coldStreamBytes, wanted('streams') ? settings.coldStreams : 1)
      : [];
  const wan = wanted('wan') ? await seedWan(upstream.hostPort, settings.wanLayerBytes) : undefined;
  if (wan) registerWanReport(settings.wanProfiles);
  const large = wanted('large') ? await seedLarge(upstream.url, settings.largeImageBytes) : undefined;
  if (large) registerLargeReport(large, settings.wanProfiles[0]!);
  const chaos = wanted('chaos') ? await seedChaos(upstream.hostPort) : undefined;
  if (chaos) registerChaosReport();
  if (wanted('replicas')) registerReplicasReport();
  if (wanted('notify')) registerNotifyReport();
  const results = new Results();
  const ctx: BenchContext = { settings, upstream, workDir, results, app, warmBlob: warmBlob!, coldBlobs, log };
  log('seeded');

  let rig: WarmRig | undefined;
  if (wanted('blob') || wanted('manifest')) {
    if (!warmBlob) throw new Error('BENCH_ONLY=manifest needs blob too (the warm rig caches the big blob)');
    rig = await startWarmRig(ctx);
    log('warm caches filled');
  }
  for (let round = 0; round < settings.rounds; round++) {
    log(`round ${round + 1}/${settings.rounds}`);
    if (rig && wanted('blob')) await warmBlobRound(ctx, rig, round);
    if (rig && wanted('manifest')) await manifestRound(ctx, rig, round);
    if (wanted('coldpull')) await coldPullRound(ctx, round);
    if (wanted('upstream')) await upstreamBytesRound(ctx, round);
    if (wanted('streams')) await coldStreamsRound(ctx, round);
    if (wanted('slow')) await slowClientsRound(ctx, round);
    if (wan && round < settings.wanRounds) await wanRound(ctx, wan, round);
    if (large && round < settings.largeRounds) await largeRound(ctx, large, round);
    if (wanted('s3')) await s3Round(ctx, round);
    if (wanted('replicas')) await replicasRound(ctx, round);
    if (wanted('notify')) await notifyRound(ctx, round);
    if (wanted('budget')) await budgetRound(ctx, round);
  }
  await rig?.stop();
  if (chaos) await chaosRun(ctx, chaos);
  // Its own sizes, rounds, table and picture (bench/scale/, docs/performance.md).
  if (wanted('scale')) await scaleScenario(ctx);

  const report = formatReport(results);
  process.stdout.write(`\n${report}\n\n`);
  const json = {
    date: new Date().toISOString(),
    durationSeconds: Math.round((Date.now() - started) / 1000),
    machine,
    settings,
    rows: rows(results),
    targets: evaluate(results),
    samples: results.samples,
    notes: results.notes,
  };
  // A run of the scaling scenario alone keeps the other scenarios' results (it writes its own).
  if (only.size === 1 && wanted('scale')) return 0;
  await mkdir(dirname(settings.out), { recursive: true });
  await writeFile(
    settings.out,
    `${JSON.stringify(json, (_k, v: unknown) => (typeof v === 'number' && !Number.isInteger(v) ? Number(v.toPrecision(6)) : v), 2)}\n`,
  );
  log(`results written to ${settings.out}`);
  return 0;
}

installSignalHandlers();
// A failing cleanup is an unhandled rejection: Node prints it and exits non-zero.
void run()
  .catch((err: Error) => {
    process.stderr.write(`bench: ${err instanceof PrerequisiteError ? err.message : (err.stack ?? err.message)}\n`);
    return 1;
  })
  .then(async (code) => {
    await cleanupAll();
    process.exit(code);
  });
