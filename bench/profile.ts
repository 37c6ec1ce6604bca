/**
 * `npm run bench:profile -- <blob|tag|digest|streams|pull>`: runs one load against our mirror alone,
 * started with `node --cpu-prof`, and prints where its CPU time went (self time per function). The
 * profile covers the whole process, cache filling included; it is written under bench/results/.
 * With `BENCH_PERF=1`, Linux perf also samples the whole process (GC and libuv threads, kernel)
 * during the load of `blob` and prints the top symbols.
 */
import { spawn, execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startDistribution } from '../spec/helpers/upstream-registry.js';
import { cleanupAll, installSignalHandlers, onCleanup } from './cleanup.js';
import { ensurePrerequisites } from './prereqs.js';
import { readSettings } from './settings.js';
import { skopeo } from '../spec/helpers/skopeo.js';
import { startContender } from './servers.js';
import { APP_REPO, BIG_REPO, waitForBlobOnDisk } from './context.js';
import { pushRandomImage, uploadBlobs } from './seed.js';
import { BulkGetter, bulkThroughput } from './http-client.js';
import { runWrk } from './wrk.js';
import { ACCEPT } from './scenarios/warm.js';
import { selfTimes } from './cpu-profile.js';

const MiB = 2 ** 20;
const LOADS = ['blob', 'tag', 'digest', 'streams', 'pull'] as const;

async function run(load: (typeof LOADS)[number]): Promise<void> {
  ensurePrerequisites();
  const work = await mkdtemp(join(tmpdir(), 'registry-profile-'));
  onCleanup(() => rm(work, { recursive: true, force: true }));
  const upstream = await startDistribution();
  onCleanup(() => upstream.destroy());
  const app = await pushRandomImage(upstream.hostPort, [`${APP_REPO}:latest`], readSettings().imageLayers, 'profile-app');
  const blobs = await uploadBlobs(upstream.url, BIG_REPO, `profile-${load}`, 256 * MiB, load === 'streams' ? 8 : load === 'blob' ? 1 : 0);
  const profDir = join(work, 'prof');
  const ours = await startContender('ours', upstream.url, join(work, 'ours'), ['--cpu-prof', `--cpu-prof-dir=${profDir}`]);
  const get = async (digest: string): Promise<void> => {
    const g = new BulkGetter(ours.hostPort, `/v2/${BIG_REPO}/blobs/${digest}`);
    await g.get();
    g.close();
  };
  if (load === 'blob') {
    await get(blobs[0]!.digest);
    await waitForBlobOnDisk(ours.root, blobs[0]!);
    const perf = process.env.BENCH_PERF === '1' ? startPerf(ours.pid, 8) : undefined;
    const r = await bulkThroughput(ours.hostPort, `/v2/${BIG_REPO}/blobs/${blobs[0]!.digest}`, 4, 10_000);
    process.stdout.write(`warm blob, 4 readers: ${(r.bytesPerSec / MiB).toFixed(0)} MiB/s\n`);
    if (perf) process.stdout.write(`\nperf, whole process (all threads and kernel), top symbols:\n${await perf}\n`);
  } else if (load === 'streams') {
    const start = Date.now();
    await Promise.all(blobs.map((b) => get(b.digest)));
    process.stdout.write(
      `${blobs.length} cold 256 MiB streams: ${((Date.now() - start) / 1000).toFixed(1)} s, peak RSS ${((await ours.peakRss()) / MiB).toFixed(0)} MiB\n`,
    );
  } else if (load === 'pull') {
    const start = Date.now();
    const r = await skopeo(['copy', '--src-tls-verify=false', `docker://${ours.hostPort}/${APP_REPO}:latest`, `dir:${join(work, 'pulled')}`]);
    if (r.code !== 0) throw new Error(r.stderr);
    process.stdout.write(`cold pull of ${APP_REPO}:latest: ${((Date.now() - start) / 1000).toFixed(2)} s\n`);
  } else {
    const ref = load === 'tag' ? 'latest' : app.manifest.digest;
    const r = await runWrk(`${ours.url}/v2/${APP_REPO}/manifests/${ref}`, { connections: 16, threads: 2, seconds: 10, headers: { Accept: ACCEPT } });
    process.stdout.write(`manifest by ${load}, 16 clients: ${r.requestsPerSec.toFixed(0)} req/s, ${r.errors} errors\n`);
  }
  await ours.stop();
  const [file] = await readdir(profDir);
  if (!file) throw new Error('no profile written');
  await mkdir('bench/results', { recursive: true });
  const kept = `bench/results/ours-${load}.cpuprofile`;
  await copyFile(join(profDir, file), kept);
  const times = await selfTimes(kept);
  const total = times.reduce((s, t) => s + t.ms, 0);
  process.stdout.write(`\nprofile ${kept}: ${(total / 1000).toFixed(1)} s sampled; self time, top 25 (share of non-idle):\n`);
  for (const t of times.slice(0, 25))
    process.stdout.write(`${t.ms.toFixed(0).padStart(7)} ms ${Number.isNaN(t.share) ? '      ' : `${(t.share * 100).toFixed(1).padStart(5)}%`}  ${t.name}\n`);
}

/** `perf record` of `pid` for `seconds` (software clock: works in VMs); resolves with the top of `perf report`. */
async function startPerf(pid: number, seconds: number): Promise<string> {
  if (!existsSync('/usr/bin/perf')) return 'perf is not installed (Debian package linux-perf)';
  await mkdir('bench/results', { recursive: true });
  const data = 'bench/results/ours-blob.perf.data';
  const child = spawn('/usr/bin/perf', ['record', '-e', 'cpu-clock', '-F', '999', '-p', String(pid), '-o', data, '--', 'sleep', String(seconds)], {
    stdio: 'ignore',
  });
  await new Promise((r) => child.once('exit', r));
  const report = execFileSync('/usr/bin/perf', ['report', '-i', data, '--no-children', '--sort', 'dso,sym', '--stdio'], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  return report
    .split('\n')
    .filter((l) => /^\s+[\d.]+%/.test(l))
    .slice(0, 15)
    .map((l) => l.slice(0, 140))
    .join('\n');
}

installSignalHandlers();
const load = (process.argv[2] ?? 'blob') as (typeof LOADS)[number];
if (!LOADS.includes(load)) {
  process.stderr.write(`usage: npm run bench:profile -- <${LOADS.join('|')}>\n`);
  process.exit(2);
}
// A failing cleanup is an unhandled rejection: Node prints it and exits non-zero.
void run(load)
  .then(
    () => 0,
    (err: Error) => {
      process.stderr.write(`bench:profile: ${err.stack ?? err.message}\n`);
      return 1;
    },
  )
  .then(async (code) => {
    await cleanupAll();
    process.exit(code);
  });
