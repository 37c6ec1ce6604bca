/**
 * `BENCH_ONLY=notify` (issue 29): what a notification endpoint that is down or slow costs the pull
 * path. Six instances of ours run side by side, each on its own warm cache: two without
 * notifications (`none`, and `control`, whose ratio to `none` shows the run's noise), one with an
 * endpoint whose port refuses connections (`dead`), one with an endpoint that answers every post
 * after 2 s (`slow`, a 5 s timeout so the posts do succeed), one with an endpoint that accepts
 * connections and never reads or answers (`blackhole`, distribution's default 1 s timeout); their
 * queues are filled first, as they are once such an endpoint has been down under load for a
 * moment. The sixth (`room`) has the dead endpoint with a queue that never fills: every pull builds
 * and queues its event, the most a pull pays. wrk loads manifest GETs by digest, then GETs of the
 * image's config blob (each one a pull event), on the six at once, several times per round: the
 * processes share the machine, so whatever else runs on it weighs on all six alike. Each figure
 * is its median ratio to the run without notifications of the same moment, requests/s, p99 and
 * the server's CPU time per request (from /proc). On a busy machine those ratios swing both ways
 * (the control's shows by how much), so each instance also runs under `node --cpu-prof` and the
 * share of its CPU spent in the notification path during the measurements is reported: a figure
 * of the process alone, which other load barely moves. `BENCH_NOTIFY_PROF=dir` keeps the profiles.
 */
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo, Socket } from 'node:net';
import { appendFile, readFile, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { APP_REPO, type BenchContext } from '../context.js';
import { runWrk } from '../wrk.js';
import { startServer, type ServerProcess } from '../proc.js';
import { contenderCommand } from '../servers.js';
import { freePort } from '../../spec/helpers/ports.js';
import { onCleanup } from '../cleanup.js';
import { registerReport, type MetricView, type Target } from '../report.js';
import { median, type Results } from '../results.js';
import { wrkLatency, type LatencyResult } from '../scale/probes.js';
import { ACCEPT } from './warm.js';
import { inclusiveShare } from '../cpu-profile.js';

/** `room`: a dead endpoint whose queue never fills (`queuelimit` 10 million): every pull builds and queues its event. */
const BAD = ['dead', 'slow', 'blackhole', 'room'] as const;
type Bad = (typeof BAD)[number];
/** `control`: a second instance without notifications, whose ratio to `none` is the run's noise. */
type Setup = 'none' | 'control' | Bad;
const SETUPS: readonly Setup[] = ['none', 'control', ...BAD];
const LOADS = ['manifest', 'blob'] as const;
/** One wrk run, and the server's CPU time per request meanwhile (seconds). */
type Run = LatencyResult & { readonly cpuPerRequest: number };
type Load = (typeof LOADS)[number];

/** How long the slow endpoint takes to answer a post. */
const SLOW_ANSWER_MS = 2000;
/** Measurements of each load per round, each on all set-ups at once. */
const REPS = 5;
/** Under this ratio of requests/s to `none`, a bad endpoint costs the pull path something measurable. */
const NOTHING_MEASURABLE = 0.95;
/** A queue limit the round never reaches. */
const ROOMY_QUEUE = 10_000_000;
/** The endpoints whose queue is filled before the measurements (the steady state of an endpoint down under load). */
const FILLED: readonly Bad[] = ['dead', 'slow', 'blackhole'];

const LABEL: Record<Bad | 'control', string> = {
  control: 'control (no notifications either)',
  dead: 'dead endpoint (refused)',
  slow: `slow endpoint (${SLOW_ANSWER_MS / 1000} s)`,
  blackhole: 'black-hole endpoint',
  room: 'dead endpoint, queue with room',
};
const id = (bad: Bad | 'control', load: Load, what: 'rps' | 'p99' | 'cpu'): string => `notify_${bad}_${load}_${what}_x`;

/** Registers the scenario's rows (ratios to no notifications, per round) and targets. */
export function registerNotifyReport(): void {
  const metrics: MetricView[] = [
    { id: 'notify_none_manifest_rps', label: 'N. no notifications: manifest by digest, 16 clients', unit: 'req/s', scale: 1, digits: 0 },
    { id: 'notify_none_blob_rps', label: '   (no notifications: config blob, 16 clients)', unit: 'req/s', scale: 1, digits: 0 },
  ];
  const targets: Target[] = [];
  for (const bad of BAD) {
    metrics.push({ id: `notify_${bad}_cpu_share_pct`, label: `   ${LABEL[bad]}: share of the server's CPU in notifications`, unit: '%', scale: 1, digits: 2 });
    targets.push({
      label: `notify ${bad}: CPU share in notifications (%, worst)`,
      value: (r: Results) => Math.max(...r.values(`notify_${bad}_cpu_share_pct`, 'ours')),
      op: '<=',
      limit: Math.round(100 * (1 - NOTHING_MEASURABLE)),
    });
  }
  for (const bad of ['control', ...BAD] as const) {
    for (const load of LOADS) {
      metrics.push({ id: id(bad, load, 'rps'), label: `   ${LABEL[bad]}: ${load} req/s / none`, unit: 'x', scale: 1, digits: 3 });
      metrics.push({ id: id(bad, load, 'p99'), label: `   ${LABEL[bad]}: ${load} p99 / none`, unit: 'x', scale: 1, digits: 3 });
      metrics.push({ id: id(bad, load, 'cpu'), label: `   ${LABEL[bad]}: ${load} server CPU per request / none`, unit: 'x', scale: 1, digits: 3 });
      if (bad !== 'control')
        targets.push({
          label: `notify ${bad}: ${load} req/s / none`,
          value: (r: Results) => median(r.values(id(bad, load, 'rps'), 'ours')),
          op: '>=',
          limit: NOTHING_MEASURABLE,
        });
    }
  }
  registerReport({ metrics, targets });
}

/** The bad endpoints, served in this process for the round. */
async function startSinks(): Promise<{ urls: Record<Bad, string>; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const track = (s: Socket): void => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  };
  const slow = http.createServer((req, res) => {
    req.resume();
    const timer = setTimeout(() => res.end(), SLOW_ANSWER_MS);
    res.once('close', () => clearTimeout(timer));
  });
  slow.on('connection', track);
  // Accepts connections, never reads from them nor writes to them.
  const blackhole = net.createServer((s) => {
    s.pause();
    track(s);
  });
  const listen = (s: net.Server): Promise<number> => new Promise((r) => s.listen(0, '127.0.0.1', () => r((s.address() as AddressInfo).port)));
  const [slowPort, holePort, deadPort] = [await listen(slow), await listen(blackhole), await freePort()];
  return {
    urls: {
      dead: `http://127.0.0.1:${deadPort}/events`,
      room: `http://127.0.0.1:${deadPort}/events`,
      slow: `http://127.0.0.1:${slowPort}/events`,
      blackhole: `http://127.0.0.1:${holePort}/events`,
    },
    close: async () => {
      for (const s of sockets) s.destroy();
      await Promise.all([slow, blackhole].map((s) => new Promise<void>((r) => s.close(() => r()))));
    },
  };
}

/** The `notifications:` of a set-up: distribution's defaults but for the slow endpoint's timeout. */
function notificationsYaml(setup: Bad, url: string): string {
  const lines = ['notifications:', '  endpoints:', '    - name: bench', `      url: ${url}`];
  if (setup === 'slow') lines.push('      timeout: 5s');
  if (setup === 'room') lines.push(`      queuelimit: ${ROOMY_QUEUE}`);
  return [...lines, ''].join('\n');
}

/** Where the instances' CPU profiles go: `BENCH_NOTIFY_PROF`, else the run's scratch directory. */
function profDir(ctx: BenchContext): string {
  return resolve(process.env.BENCH_NOTIFY_PROF ?? join(ctx.workDir, 'notify-profiles'));
}

function profName(setup: Setup, round: number): string {
  return `notify-${setup}-round${round + 1}-${process.pid}.cpuprofile`;
}

/** The notification path in the profiles: the request side (all of it under `notify`) and the endpoint's worker. */
const NOTIFICATION_FUNCTIONS: ReadonlySet<string> = new Set(['notify', 'deliverQueued', 'postEnvelope']);

/** An instance, with its metrics on a debug listener (`metrics`: their text). */
type Instance = ServerProcess & { metrics(): Promise<string> };

async function startSetup(ctx: BenchContext, setup: Setup, urls: Record<Bad, string>, round: number): Promise<Instance> {
  const dir = join(ctx.workDir, `notify-${setup}`);
  const port = await freePort();
  const nodeArgs = ['--cpu-prof', `--cpu-prof-dir=${profDir(ctx)}`, `--cpu-prof-name=${profName(setup, round)}`];
  const { cmd, args, env } = await contenderCommand('ours', ctx.upstream.url, dir, port, nodeArgs);
  const config = join(dir, 'config.yml');
  const debugPort = await freePort();
  const debug = ['  debug:', `    addr: 127.0.0.1:${debugPort}`, '    prometheus:', '      enabled: true', '      path: /metrics'].join('\n');
  await writeFile(config, (await readFile(config, 'utf8')).replace(/^(http:\n  addr: .*)$/m, `$1\n${debug}`));
  if (setup !== 'none' && setup !== 'control') await appendFile(config, notificationsYaml(setup, urls[setup]));
  const undo = onCleanup(() => rm(dir, { recursive: true, force: true }));
  const server = await startServer({ name: `ours-notify-${setup}`, cmd, args, env, hostPort: `127.0.0.1:${port}`, readyPath: '/v2/' });
  return {
    ...server,
    metrics: async () => (await fetch(`http://127.0.0.1:${debugPort}/metrics`)).text(),
    stop: async () => {
      await server.stop();
      await undo();
    },
  };
}

/** Loads `server` until its endpoint has dropped an event for a full queue; false if that takes over a minute. */
async function fillQueue(server: Instance, url: string): Promise<boolean> {
  const started = Date.now();
  while (Date.now() - started < 60_000) {
    await runWrk(url, { connections: 16, threads: 2, seconds: 1, headers: { Accept: ACCEPT } });
    if (/^registry_notifications_dropped_total\{endpoint="bench",reason="queue_full"\} [1-9]/m.test(await server.metrics())) return true;
  }
  return false;
}

/** One round: the six set-ups side by side, each load `REPS` times on the six at once. */
export async function notifyRound(ctx: BenchContext, round: number): Promise<void> {
  const sinks = await startSinks();
  const servers = new Map<Setup, Instance>();
  try {
    const startedAt = Date.now();
    for (const setup of SETUPS) servers.set(setup, await startSetup(ctx, setup, sinks.urls, round));
    const urls = (s: ServerProcess): Record<Load, string> => ({
      manifest: `${s.url}/v2/${APP_REPO}/manifests/${ctx.app.manifest.digest}`,
      blob: `${s.url}/v2/${APP_REPO}/blobs/${ctx.app.config.digest}`,
    });
    // Fills each cache (the first GETs) and warms each process up, then fills the bad endpoints'
    // queues: what follows measures the steady state of an endpoint that is down under load
    // (and, with `room`, a pull that builds and queues its event).
    for (const s of servers.values())
      for (const load of LOADS) await runWrk(urls(s)[load], { connections: 2, threads: 1, seconds: 2, headers: { Accept: ACCEPT } });
    for (const setup of FILLED) {
      if (!(await fillQueue(servers.get(setup)!, urls(servers.get(setup)!).manifest)))
        ctx.results.notes.push(`round ${round + 1} notify ${setup}: the queue did not fill within a minute`);
    }
    const none: Record<Load, Run[]> = { manifest: [], blob: [] };
    const pairs = new Map<string, Array<{ r: Run; base: Run }>>();
    const from = Number(process.hrtime.bigint() / 1000n);
    for (let rep = 0; rep < REPS; rep++) {
      for (const load of LOADS) {
        // The six at once: whatever else the machine does meanwhile weighs on all six alike, and
        // as the six processes share the CPUs fairly, each one's rate is its cost per request.
        const runs = await Promise.all(
          SETUPS.map(async (setup) => {
            const server = servers.get(setup)!;
            const cpu = await server.cpuSeconds();
            const r = await wrkLatency(urls(server)[load], ctx.settings.wrkSeconds, { Accept: ACCEPT }, ctx.settings.manifestClients);
            return [setup, { ...r, cpuPerRequest: ((await server.cpuSeconds()) - cpu) / Math.max(1, r.requests) }] as const;
          }),
        );
        ctx.log(
          `    ${load}: ${runs.map(([setup, r]) => `${setup} ${r.requestsPerSec.toFixed(0)}/s p99 ${(r.p99 * 1000).toFixed(1)} ms ${(r.cpuPerRequest * 1e6).toFixed(0)} us CPU`).join(', ')}`,
        );
        const base = runs.find(([setup]) => setup === 'none')![1];
        none[load].push(base);
        for (const [setup, r] of runs) {
          if (r.errors > 0) ctx.results.notes.push(`round ${round + 1} notify ${setup} ${load}: ${r.errors} of ${r.requests} requests failed`);
          if (setup !== 'none') pairs.set(`${setup}/${load}`, [...(pairs.get(`${setup}/${load}`) ?? []), { r, base }]);
        }
      }
    }
    const to = Number(process.hrtime.bigint() / 1000n);
    for (const bad of BAD) {
      // What each endpoint's worker did over the whole run: its tries (one a backoff once failing) and the drops.
      const lines = (await servers.get(bad)!.metrics()).split('\n').filter((l) => /^registry_notifications_(events|dropped)_total\{/.test(l));
      const value = (re: RegExp): number =>
        Number(
          lines
            .find((l) => re.test(l))
            ?.split(' ')
            .at(-1) ?? 0,
        );
      const tries = value(/type="Errors"/) + value(/type="Failures"/) + value(/type="Successes"/);
      ctx.log(
        `  notify ${bad}: ${tries} posts tried, ${value(/type="Events"/)} events queued, ${value(/reason="queue_full"/)} dropped, over ${((Date.now() - startedAt) / 1000).toFixed(0)} s`,
      );
    }
    // The profiles are written as the processes exit.
    for (const s of servers.values()) await s.stop();
    const shares = new Map<Setup, number>();
    for (const setup of SETUPS) {
      const { busy, under } = await inclusiveShare(join(profDir(ctx), profName(setup, round)), NOTIFICATION_FUNCTIONS, from, to);
      shares.set(setup, busy > 0 ? under / busy : NaN);
    }
    report(ctx, round, none, pairs, shares);
  } finally {
    for (const s of servers.values()) await s.stop();
    await sinks.close();
  }
}

/** Records the round's figures: the `none` medians and each bad endpoint's median ratio to `none` in the same runs. */
function report(
  ctx: BenchContext,
  round: number,
  none: Record<Load, Run[]>,
  pairs: Map<string, Array<{ r: Run; base: Run }>>,
  shares: Map<Setup, number>,
): void {
  const parts: string[] = [];
  for (const bad of BAD) {
    ctx.results.add(`notify_${bad}_cpu_share_pct`, 'ours', round, 100 * shares.get(bad)!);
    parts.push(`${bad}: ${(100 * shares.get(bad)!).toFixed(2)}% of the server's CPU in notifications`);
  }
  for (const load of LOADS) {
    const rps = median(none[load].map((r) => r.requestsPerSec));
    ctx.results.add(`notify_none_${load}_rps`, 'ours', round, rps);
    ctx.log(`  notify none ${load}: ${rps.toFixed(0)} req/s, p99 ${(median(none[load].map((r) => r.p99)) * 1000).toFixed(2)} ms`);
    for (const bad of ['control', ...BAD] as const) {
      const mine = pairs.get(`${bad}/${load}`)!;
      const rpsX = median(mine.map(({ r, base }) => r.requestsPerSec / base.requestsPerSec));
      const p99X = median(mine.map(({ r, base }) => r.p99 / base.p99));
      const cpuX = median(mine.map(({ r, base }) => r.cpuPerRequest / base.cpuPerRequest));
      ctx.results.add(id(bad, load, 'rps'), 'ours', round, rpsX);
      ctx.results.add(id(bad, load, 'p99'), 'ours', round, p99X);
      ctx.results.add(id(bad, load, 'cpu'), 'ours', round, cpuX);
      parts.push(`${bad} ${load} ${rpsX.toFixed(3)}x req/s, ${p99X.toFixed(2)}x p99, ${cpuX.toFixed(3)}x CPU/request`);
    }
  }
  ctx.log(`  notify: ${parts.join('; ')}`);
  ctx.results.notes.push(`round ${round + 1} notify (ratios to no notifications, medians of ${REPS} runs side by side): ${parts.join('; ')}`);
}
