/**
 * The chaos scenario (issue 20), `BENCH_ONLY=chaos`: an operator's worst week, bounded in time.
 * For each contender: a fault proxy between the cache and the real upstream (docker-registry)
 * breaks requests at random; N clients pull a set of images (shared base layers, indexes, one
 * 64 MiB layer) in loops with skopeo, through a witness that checks every body that ends cleanly;
 * the cache is killed with SIGKILL every 20-40 s and restarted on the same storage and port. Then
 * the faults stop, the cache is killed once more, its storage is checked file by file, and it is
 * restarted for one final pull of every image. Reported as issue 20's table, ours and the official.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import http from 'node:http';
import { cp, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { buildImage, buildIndex, type BuiltImage } from '../../spec/helpers/images.js';
import { pushImage, skopeo } from '../../spec/helpers/skopeo.js';
import { freePort } from '../../spec/helpers/ports.js';
import type { BenchContext } from '../context.js';
import { onCleanup } from '../cleanup.js';
import { contenderCommand, contenders, type Contender } from '../servers.js';
import { officials } from '../officials.js';
import { procCpuSeconds, procStatusBytes } from '../proc.js';
import { median } from '../results.js';
import { randomBlob } from '../seed.js';
import { FAULT_KINDS, startFaultProxy } from '../fault-proxy.js';
import { startWitness } from '../witness-proxy.js';
import { checkStorage } from '../storage-check.js';
import { registerReport, type MetricView } from '../report.js';

const MiB = 2 ** 20;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const sha256 = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** An image the clients pull: `repo:tag`, its top digest (index or manifest) and its linux/amd64 manifest's. */
export interface ChaosImage {
  readonly repo: string;
  readonly tag: string;
  readonly top: string;
  readonly amd64: string;
}

/**
 * Pushes the set: eight images on two shared base layers (two in Docker's schema 2), three
 * two-platform indexes, and one image with a 64 MiB layer on the first base.
 */
export async function seedChaos(hostPort: string): Promise<ChaosImage[]> {
  const baseA = randomBlob('chaos/base-a', 3 * MiB);
  const baseB = randomBlob('chaos/base-b', MiB);
  const out: ChaosImage[] = [];
  const push = async (repo: string, built: BuiltImage | ReturnType<typeof buildIndex>, amd64: BuiltImage): Promise<void> => {
    await pushImage(hostPort, `${repo}:latest`, built, { all: 'images' in built });
    out.push({ repo, tag: 'latest', top: built.manifest.digest, amd64: amd64.manifest.digest });
  };
  for (let i = 1; i <= 8; i++) {
    // A shared base stays at layer 0, so its tar (named after the position) and gzip are the same blob.
    const img = buildImage({
      layers: [i % 2 ? baseA : baseB, randomBlob(`chaos/app${i}`, 256 * 1024 * i)],
      seed: `chaos-app${i}`,
      format: i > 6 ? 'docker' : 'oci',
    });
    await push(`chaos/app${i}`, img, img);
  }
  for (let i = 1; i <= 3; i++) {
    const amd64 = buildImage({
      layers: [baseA, randomBlob(`chaos/multi${i}/amd64`, 512 * 1024)],
      seed: `chaos-multi${i}-amd64`,
      platform: { os: 'linux', architecture: 'amd64' },
    });
    const arm64 = buildImage({
      layers: [baseB, randomBlob(`chaos/multi${i}/arm64`, 512 * 1024)],
      seed: `chaos-multi${i}-arm64`,
      platform: { os: 'linux', architecture: 'arm64' },
    });
    await push(`chaos/multi${i}`, buildIndex([amd64, arm64]), amd64);
  }
  const big = buildImage({ layers: [baseA, randomBlob('chaos/big', 64 * MiB)], seed: 'chaos-big' });
  await push('chaos/big', big, big);
  return out;
}

/** A cache killed and restarted on one port and storage: restart times, failed starts, peak memory. */
class Incarnations {
  private child?: ChildProcess;
  readonly restartSeconds: number[] = [];
  /** CPU seconds each start used until it served (independent of how loaded the machine is). */
  readonly startCpuSeconds: number[] = [];
  failedStarts = 0;
  maxRss = 0;
  private sampling = true;
  private readonly sampler: Promise<void>;

  constructor(
    private readonly cmd: string,
    private readonly args: string[],
    private readonly hostPort: string,
    private readonly env: NodeJS.ProcessEnv,
  ) {
    this.sampler = (async () => {
      while (this.sampling) {
        const pid = this.child?.exitCode === null ? this.child.pid : undefined;
        if (pid) this.maxRss = Math.max(this.maxRss, await procStatusBytes(pid, 'VmHWM').catch(() => 0));
        await sleep(250);
      }
    })();
  }

  /** Spawns the cache and waits until it answers `/v2/` (polled every 10 ms); respawns one that exits first. */
  async start(): Promise<number> {
    const begun = process.hrtime.bigint();
    const deadline = Date.now() + 60_000;
    for (;;) {
      const child = spawn(this.cmd, this.args, { stdio: 'ignore', env: this.env });
      this.child = child;
      const exited = new Promise<void>((r) => child.once('exit', () => r()));
      let gone = false;
      void exited.then(() => (gone = true));
      while (!gone && Date.now() < deadline) {
        if (await answers(this.hostPort)) {
          const seconds = Number(process.hrtime.bigint() - begun) / 1e9;
          this.restartSeconds.push(seconds);
          this.startCpuSeconds.push(await procCpuSeconds(child.pid!).catch(() => NaN));
          return seconds;
        }
        await sleep(10);
      }
      if (!gone) throw new Error(`${this.cmd} did not serve within 60 s`);
      // distribution 2.8 exits at start-up when its first request to the upstream fails.
      this.failedStarts++;
    }
  }

  /** `kill -9`, after reading its peak memory. */
  async kill9(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    this.maxRss = Math.max(this.maxRss, await procStatusBytes(child.pid!, 'VmHWM').catch(() => 0));
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    child.kill('SIGKILL');
    await exited;
  }

  /** Kills the cache and stops sampling. */
  async close(): Promise<void> {
    this.sampling = false;
    await this.kill9();
    await this.sampler;
  }
}

/** True once `hostPort` answers `GET /v2/` with a status below 500. */
function answers(hostPort: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.get(`http://${hostPort}/v2/`, { agent: false, timeout: 1000 }, (res) => {
      res.resume();
      resolve((res.statusCode ?? 500) < 500);
    });
    req.once('timeout', () => req.destroy());
    req.once('error', () => resolve(false));
  });
}

/** One contender's outcome: issue 20's table column. */
interface ChaosOutcome {
  attempted: number;
  succeeded: number;
  /** Clean ends to wrong bytes the witness saw, and pulls skopeo failed on a digest check. */
  wrongBytes: number;
  clientCaught: number;
  /** Pulls that ended with exit 0 but another image than pushed (the client could not tell). */
  undetected: number;
  badBlobs: number;
  danglingLinks: number;
  blobs: number;
  finalSucceeded: number;
  finalAttempted: number;
  fiveHundreds: Record<string, number>;
  /** Client requests that found no cache listening (while it restarted). */
  unanswered: number;
  restartSeconds: number[];
  startCpuSeconds: number[];
  failedStarts: number;
  maxRssBytes: number;
  faults: Record<string, number>;
  failures: Map<string, number>;
  examples: string[];
}

/** skopeo's first error line, with digests, ports and temp paths generalised (for the failure summary). */
function reasonOf(stderr: string): string {
  const line = stderr.trim().split('\n').pop() ?? '';
  return line
    .replace(/sha256:[0-9a-f]{64}/g, 'sha256:…')
    .replace(/127\.0\.0\.1:\d+/g, 'mirror')
    .replace(/chaos\/[a-z0-9]+(?=[:@/ ])/g, 'chaos/…')
    .replace(/\/tmp\/[^\s":]+/g, '/tmp/…')
    .replace(/time="[^"]*" level=\w+ msg=/, '')
    .slice(0, 160);
}

/** Pulls `img` (by tag, or by digest) through `hostPort` into `dest`; ok when skopeo succeeds with the pushed linux/amd64 manifest. */
async function pullOnce(
  hostPort: string,
  img: ChaosImage,
  byDigest: boolean,
  dest: string,
): Promise<{ ok: boolean; undetected: boolean; caught: boolean; reason?: string }> {
  await rm(dest, { recursive: true, force: true });
  const ref = byDigest ? `${img.repo}@${img.top}` : `${img.repo}:${img.tag}`;
  const r = await skopeo(
    ['--override-os', 'linux', '--override-arch', 'amd64', 'copy', '--src-tls-verify=false', `docker://${hostPort}/${ref}`, `dir:${dest}`],
    { timeoutMs: 120_000 },
  );
  if (r.code !== 0) {
    const caught = /did not match|does not match|digest mismatch|Digest did not/i.test(r.stderr);
    return { ok: false, undetected: false, caught, reason: reasonOf(r.stderr) || `exit ${r.code}` };
  }
  const manifest = await readFile(join(dest, 'manifest.json')).catch(() => Buffer.alloc(0));
  const right = sha256(manifest) === img.amd64;
  return { ok: right, undetected: !right, caught: false, reason: right ? undefined : 'another manifest than pushed' };
}

/** Runs the chaos scenario on `who`. */
async function chaosOn(ctx: BenchContext, who: Contender, images: ChaosImage[]): Promise<ChaosOutcome> {
  const s = ctx.settings;
  const dir = join(ctx.workDir, `chaos-${who}`);
  const removeDir = onCleanup(() => rm(dir, { recursive: true, force: true }));
  const faults = await startFaultProxy(ctx.upstream.url, { rate: s.chaosFaultRate, refuseChancePerSec: s.chaosFaultRate / 5 });
  const port = await freePort();
  const { cmd, args, root, env } = await contenderCommand(who, faults.url, dir, port);
  const expected = new Map(images.map((i) => [`${i.repo}:${i.tag}`, i.top]));
  const witness = await startWitness(`127.0.0.1:${port}`, (repo, tag) => expected.get(`${repo}:${tag}`));
  const cache = new Incarnations(cmd, args, `127.0.0.1:${port}`, env);
  const stopCache = onCleanup(() => cache.close());
  const o: ChaosOutcome = {
    attempted: 0,
    succeeded: 0,
    wrongBytes: 0,
    clientCaught: 0,
    undetected: 0,
    badBlobs: 0,
    danglingLinks: 0,
    blobs: 0,
    finalSucceeded: 0,
    finalAttempted: images.length,
    fiveHundreds: {},
    unanswered: 0,
    restartSeconds: [],
    startCpuSeconds: [],
    failedStarts: 0,
    maxRssBytes: 0,
    faults: {},
    failures: new Map(),
    examples: [],
  };
  try {
    await cache.start();
    cache.restartSeconds.length = 0;
    cache.startCpuSeconds.length = 0;
    const deadline = Date.now() + s.chaosSeconds * 1000;
    let running = true;
    const killer = (async () => {
      for (;;) {
        const wake = Date.now() + (20 + Math.random() * 20) * 1000;
        while (running && Date.now() < wake) await sleep(100);
        if (!running) return;
        await cache.kill9();
        const t = await cache.start();
        ctx.log(`    ${who}: killed with SIGKILL and restarted, serving after ${t.toFixed(3)} s`);
      }
    })();
    const client = async (i: number): Promise<void> => {
      const dest = join(dir, `client-${i}`);
      while (Date.now() < deadline) {
        const img = images[Math.floor(Math.random() * images.length)]!;
        o.attempted++;
        const r = await pullOnce(witness.hostPort, img, Math.random() < 0.25, dest);
        if (r.ok) o.succeeded++;
        if (r.caught) o.clientCaught++;
        if (r.undetected) o.undetected++;
        if (r.reason) o.failures.set(r.reason, (o.failures.get(r.reason) ?? 0) + 1);
      }
      await rm(dest, { recursive: true, force: true });
    };
    await Promise.all(Array.from({ length: s.chaosClients }, (_, i) => client(i)));
    running = false;
    await killer;
    ctx.log(`    ${who}: ${o.succeeded} of ${o.attempted} pulls succeeded under faults; faults off, a last SIGKILL, checking the storage`);

    faults.enabled = false;
    await cache.kill9();
    const report = await checkStorage(root);
    o.blobs = report.blobs;
    o.badBlobs = report.badBlobs.length;
    o.danglingLinks = report.danglingLinks.length;
    o.examples.push(...report.badBlobs.slice(0, 3).map((b) => `bad blob ${b}`), ...report.danglingLinks.slice(0, 3).map((l) => `dangling ${l}`));
    await cache.start();
    const dest = join(dir, 'final');
    for (const img of images) {
      const r = await pullOnce(witness.hostPort, img, false, dest);
      if (r.ok) o.finalSucceeded++;
      else o.examples.push(`final pull of ${img.repo}:${img.tag}: ${r.reason}`);
      if (r.undetected) o.undetected++;
    }
    const seen = witness.counts();
    o.wrongBytes = seen.wrongBytes;
    o.examples.push(...seen.wrongExamples.slice(0, 3).map((w) => `wrong bytes ${w}`));
    o.unanswered = seen.unanswered;
    o.fiveHundreds = Object.fromEntries(Object.entries(seen.statuses).filter(([code]) => Number(code) >= 500));
    o.faults = faults.counts();
  } finally {
    await stopCache();
    o.restartSeconds = [...cache.restartSeconds];
    o.startCpuSeconds = [...cache.startCpuSeconds];
    o.failedStarts = cache.failedStarts;
    o.maxRssBytes = cache.maxRss;
    await witness.close();
    await faults.close();
    // BENCH_CHAOS_KEEP=dir keeps each contender's storage (to measure a start on it, bench/startup-phases.ts).
    if (process.env.BENCH_CHAOS_KEEP) await cp(root, join(process.env.BENCH_CHAOS_KEEP, who), { recursive: true }).catch(() => undefined);
    await removeDir();
  }
  return o;
}

/** Both contenders, then issue 20's table in the notes and the rows of the report. */
export async function chaosRun(ctx: BenchContext, images: ChaosImage[]): Promise<void> {
  const s = ctx.settings;
  ctx.log(
    `  chaos: ${images.length} images, ${s.chaosClients} clients, ${s.chaosSeconds} s per contender, faults on ${(s.chaosFaultRate * 100).toFixed(0)}% of upstream requests`,
  );
  const out: Partial<Record<Contender, ChaosOutcome>> = {};
  for (const who of contenders(0)) {
    const o = await chaosOn(ctx, who, images);
    out[who] = o;
    const add = (metric: string, value: number): void => ctx.results.add(metric, who, 0, value);
    add('chaos_attempted', o.attempted);
    add('chaos_success_pct', (100 * o.succeeded) / Math.max(1, o.attempted));
    add('chaos_wrong_bytes', o.wrongBytes);
    add('chaos_bad_storage', o.badBlobs + o.danglingLinks);
    add('chaos_final', o.finalSucceeded);
    add(
      'chaos_5xx',
      Object.values(o.fiveHundreds).reduce((a, b) => a + b, 0),
    );
    if (o.restartSeconds.length) {
      add('chaos_restart_median', median(o.restartSeconds));
      add('chaos_restart_max', Math.max(...o.restartSeconds));
    }
    add('chaos_rss', o.maxRssBytes);
    if (o.startCpuSeconds.length) add('chaos_start_cpu', median(o.startCpuSeconds));
    ctx.log(
      `  chaos ${who}: ${o.succeeded} of ${o.attempted} pulls, ${o.wrongBytes} wrong bodies, ${o.badBlobs} bad blobs, ${o.danglingLinks} dangling links, final ${o.finalSucceeded}/${o.finalAttempted}, restarts ${o.restartSeconds.map((x) => x.toFixed(2)).join(' ')} s`,
    );
  }
  ctx.results.notes.push(chaosTable(out as Record<Contender, ChaosOutcome>, s.chaosClients, images.length, s.chaosSeconds));
}

const pct = (a: number, b: number): string => `${((100 * a) / Math.max(1, b)).toFixed(0)}%`;
const range = (xs: number[]): string =>
  xs.length ? `${Math.min(...xs).toFixed(2)}-${Math.max(...xs).toFixed(2)} s (median ${median(xs).toFixed(2)}, ${xs.length} restarts)` : 'none';

/** Issue 20's table, in Markdown. */
export function chaosTable(o: Record<Contender, ChaosOutcome>, clients: number, images: number, seconds: number): string {
  // The official contenders' columns first (in BENCH_OFFICIAL_BIN's order), ours last.
  const cols = [...officials().map((x) => ({ who: x.id as Contender, head: `official ${x.label}` })), { who: 'ours' as Contender, head: 'ours' }].filter(
    (c) => o[c.who],
  );
  const row = (label: string, f: (x: ChaosOutcome) => string): string => `| ${label} | ${cols.map((c) => f(o[c.who])).join(' | ')} |`;
  const each = (f: (x: ChaosOutcome) => string): string => cols.map((c) => `${c.head}: ${f(o[c.who])}`).join('; ');
  const fives = (x: ChaosOutcome): string => {
    const total = Object.values(x.fiveHundreds).reduce((a, b) => a + b, 0);
    return `${total}${
      total
        ? ` (${Object.entries(x.fiveHundreds)
            .map(([c, n]) => `${n}× ${c}`)
            .join(', ')})`
        : ''
    }`;
  };
  const topFailures = (x: ChaosOutcome): string =>
    [...x.failures]
      .sort((a, b) => b[1] - a[1])
      .slice(0, 4)
      .map(([r, n]) => `${n}× ${r}`)
      .join('; ') || 'none';
  return [
    `Chaos run: ${clients} clients pulling ${images} images for ${seconds} s per contender, SIGKILL every 20-40 s.`,
    '',
    `| | ${cols.map((c) => c.head).join(' | ')} |`,
    `| --- | ${cols.map(() => '---:').join(' | ')} |`,
    row('pulls attempted / succeeded', (x) => `${x.attempted} / ${x.succeeded} (${pct(x.succeeded, x.attempted)})`),
    row(
      'wrong bytes with a clean end (witness), pulls failed on a digest check (skopeo), wrong image with exit 0',
      (x) => `${x.wrongBytes}, ${x.clientCaught}, ${x.undetected}`,
    ),
    row('bad blobs in storage after the run, dangling links (of blobs stored)', (x) => `${x.badBlobs}, ${x.danglingLinks} (${x.blobs})`),
    row('final pulls with the upstream healthy', (x) => `${x.finalSucceeded} / ${x.finalAttempted}`),
    row('5xx answers', fives),
    row('client requests that found the cache down (restarting)', (x) => String(x.unanswered)),
    row('time from restart to serving', (x) => range(x.restartSeconds)),
    row('CPU time a start used until it served (median)', (x) => `${median(x.startCpuSeconds).toFixed(2)} s`),
    row('starts that exited before serving', (x) => String(x.failedStarts)),
    row('max RSS', (x) => `${(x.maxRssBytes / MiB).toFixed(0)} MiB`),
    row(
      'faults injected (of upstream requests)',
      (x) =>
        `${FAULT_KINDS.reduce((n, k) => n + (x.faults[k] ?? 0), 0)} (${x.faults.requests ?? 0}): ${FAULT_KINDS.map((k) => `${k} ${x.faults[k] ?? 0}`).join(', ')}`,
    ),
    '',
    `Most frequent pull failures: ${each(topFailures)}.`,
    ...(cols.some((c) => o[c.who].examples.length) ? ['', `Examples: ${each((x) => x.examples.join('; ') || 'none')}.`] : []),
  ].join('\n');
}

/** The chaos rows of the report. */
export function registerChaosReport(): void {
  const view = (id: string, label: string, unit: string, digits: number, scale = 1): MetricView => ({ id, label, unit, scale, digits });
  registerReport({
    metrics: [
      view('chaos_attempted', 'C. chaos: pulls attempted', 'count', 0),
      view('chaos_success_pct', '   (pulls succeeded)', '%', 0),
      view('chaos_wrong_bytes', '   (wrong bytes with a clean end)', 'count', 0),
      view('chaos_bad_storage', '   (bad blobs + dangling links after the run)', 'count', 0),
      view('chaos_final', '   (final pulls, upstream healthy)', 'count', 0),
      view('chaos_5xx', '   (5xx answers)', 'count', 0),
      view('chaos_restart_median', '   (restart to serving, median)', 's', 3),
      view('chaos_restart_max', '   (restart to serving, worst)', 's', 3),
      view('chaos_start_cpu', '   (CPU time of a start until serving, median)', 's', 2),
      view('chaos_rss', '   (max RSS)', 'MiB', 0, 1 / MiB),
    ],
    targets: [
      { label: 'chaos: wrong bytes with a clean end', value: (r) => median(r.values('chaos_wrong_bytes', 'ours')), op: '<=', limit: 0 },
      { label: 'chaos: bad blobs + dangling links', value: (r) => median(r.values('chaos_bad_storage', 'ours')), op: '<=', limit: 0 },
      { label: 'chaos: restart to serving (worst, s)', value: (r) => median(r.values('chaos_restart_max', 'ours')), op: '<=', limit: 0.5 },
    ],
  });
}
