/**
 * The WAN scenario (issue 17): the upstream behind the bench's link emulator (round trip and
 * shared bandwidth per profile), and for each contender: one cold skopeo pull of a multi-arch
 * index whose linux/amd64 image has a 64 MiB layer, a fleet of 10 concurrent cold pulls of it, and
 * 10 warm pulls by tag. Each is compared with the physical limit:
 *
 * - cold pull and fleet: the image's bytes once (index, amd64 manifest, config, layer) over the
 *   bandwidth, plus 4 round trips no pull can avoid: the TCP handshake, the index (its tag names
 *   nothing the cache could know before), the platform manifest (named only inside the index) and
 *   the blobs (all fetched in parallel, once the manifest names them). A HEAD before the GET, a
 *   config fetched after the layers, a new connection per blob are all avoidable;
 *   (the time ten concurrent skopeo processes need on this machine with the link off is reported
 *   next to the fleet, as the local floor that no link figure includes);
 * - warm pull by tag: one round trip (the tag check a mutable tag needs), plus the pull's local
 *   cost, measured as the best of the two contenders pulling the same warm image over a link with
 *   no delay and no bandwidth limit.
 *
 * Upstream requests and round trips per pull come from the link (see link-emulator.ts for how
 * round trips one after another are counted).
 */
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { buildImage, buildIndex, type BuiltIndex } from '../../spec/helpers/images.js';
import { pushImage } from '../../spec/helpers/skopeo.js';
import { freshContender, secondsSince, type BenchContext } from '../context.js';
import { startLinkEmulator, type LinkEmulator, type LinkStats } from '../link-emulator.js';
import { contenders, type Contender } from '../servers.js';
import { median } from '../results.js';
import { randomBlob } from '../seed.js';
import type { WanProfile } from '../settings.js';
import { registerReport, type MetricView, type Target } from '../report.js';
import { pull } from './cold.js';

/** The repository of the WAN image. */
export const WAN_REPO = 'bench/wan';
const MiB = 2 ** 20;
/** Round trips a cold pull of an index cannot avoid (see the file's comment). */
export const COLD_ROUND_TRIPS = 4;
/** skopeo picks the linux/amd64 image of the index whatever the machine. */
const PLATFORM_ARGS = ['--override-os', 'linux', '--override-arch', 'amd64'];

/** Builds the index (linux/amd64 with one 64 MiB incompressible layer, linux/arm64 with 1 MiB) and pushes it as `bench/wan:latest`. */
export async function seedWan(hostPort: string, layerBytes: number): Promise<BuiltIndex> {
  const amd64 = buildImage({ layers: [randomBlob('wan/amd64', layerBytes)], seed: 'wan-amd64', platform: { os: 'linux', architecture: 'amd64' } });
  const arm64 = buildImage({ layers: [randomBlob('wan/arm64', MiB)], seed: 'wan-arm64', platform: { os: 'linux', architecture: 'arm64' } });
  const index = buildIndex([amd64, arm64]);
  await pushImage(hostPort, `${WAN_REPO}:latest`, index, { all: true });
  return index;
}

/** The bytes a cold pull of the amd64 image must fetch: index, manifest, config, layers. */
export function wanPullBytes(index: BuiltIndex): number {
  const img = index.images.find((i) => i.platform.architecture === 'amd64')!;
  return index.manifest.size + img.manifest.size + img.config.size + img.layers.reduce((n, l) => n + l.size, 0);
}

/** Seconds the link alone needs for a cold pull: bytes over the bandwidth plus the unavoidable round trips. */
export function coldLimitSeconds(index: BuiltIndex, p: WanProfile): number {
  return wanPullBytes(index) / (p.mbPerSec * 1e6) + (COLD_ROUND_TRIPS * p.rttMs) / 1000;
}

const id = (p: WanProfile, what: string): string => `wan_${p.key}_${what}`;

/** One measurement on the link: wall time and what crossed it. */
interface Measured {
  readonly seconds: number;
  readonly link: LinkStats;
}

async function measure(link: LinkEmulator, work: () => Promise<void>, settleMs = 0): Promise<Measured> {
  link.reset();
  const start = process.hrtime.bigint();
  await work();
  const seconds = secondsSince(start);
  // distribution 2.8 keeps fetching after its clients are served: count those bytes too.
  if (settleMs > 0) await link.waitIdle(settleMs, 240_000);
  return { seconds, link: link.stats() };
}

const describeLink = (m: Measured, imageBytes: number, pulls = 1): string =>
  `${(m.link.bytesDown / imageBytes).toFixed(2)}x image down, ${(m.link.requests.length / pulls).toFixed(1)} requests and ${(m.link.serialRoundTrips / pulls).toFixed(1)} round trips per pull, ${m.link.connections} connections (${summarise(m.link.requests)})`;

/** `GET manifests 2, GET blobs 3`: requests by method and kind. */
function summarise(requests: string[]): string {
  const counts = new Map<string, number>();
  for (const r of requests) {
    const [method, path] = r.split(' ');
    const kind = /\/manifests\//.test(path ?? '') ? 'manifests' : /\/blobs\//.test(path ?? '') ? 'blobs' : (path ?? '');
    counts.set(`${method} ${kind}`, (counts.get(`${method} ${kind}`) ?? 0) + 1);
  }
  return [...counts].map(([k, n]) => `${k} ${n}`).join(', ');
}

/** Every WAN profile for both contenders: cold pull, fleet, warm pulls, and the local floor of a warm pull. */
export async function wanRound(ctx: BenchContext, index: BuiltIndex, round: number): Promise<void> {
  const s = ctx.settings;
  const bytes = wanPullBytes(index);
  const ref = `${WAN_REPO}:latest`;
  const floors: Partial<Record<Contender, number>> = {};
  for (const [i, p] of s.wanProfiles.entries()) {
    const profile = { rttMs: p.rttMs, bytesPerSec: p.mbPerSec * 1e6 };
    const limit = coldLimitSeconds(index, p);
    ctx.log(
      `  WAN ${p.rttMs} ms / ${p.mbPerSec} MB/s: a cold pull's limit ${limit.toFixed(2)} s (${(bytes / MiB).toFixed(1)} MiB, ${COLD_ROUND_TRIPS} round trips)`,
    );
    const warm: Partial<Record<Contender, number>> = {};
    for (const who of contenders(round + i)) {
      const link = await startLinkEmulator(ctx.upstream.hostPort, profile);
      const label = `r${round}-wan${i}`;
      try {
        const cold = await freshContender(ctx, who, `${label}-cold`, link.url);
        let one: Measured;
        try {
          one = await measure(link, () => pull(cold.hostPort, join(cold.root, '..', 'pulled'), ref, PLATFORM_ARGS), 1000);
        } finally {
          await cold.done();
        }
        ctx.log(`    cold pull ${who}: ${one.seconds.toFixed(2)} s, ${(one.seconds / limit).toFixed(2)}x the limit; ${describeLink(one, bytes)}`);
        ctx.results.add(id(p, 'cold_s'), who, round, one.seconds);
        ctx.results.add(id(p, 'cold_x_limit'), who, round, one.seconds / limit);
        ctx.results.add(id(p, 'cold_requests'), who, round, one.link.requests.length);
        ctx.results.add(id(p, 'cold_rt'), who, round, one.link.serialRoundTrips);

        const server = await freshContender(ctx, who, `${label}-fleet`, link.url);
        try {
          const dirs = Array.from({ length: s.wanFleet }, (_, k) => join(server.root, '..', `fleet-${k}`));
          const fleet = await measure(link, () => Promise.all(dirs.map((d) => pull(server.hostPort, d, ref, PLATFORM_ARGS))).then(() => undefined), 1500);
          await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
          ctx.log(
            `    fleet of ${s.wanFleet} ${who}: ${fleet.seconds.toFixed(2)} s, ${(fleet.seconds / one.seconds).toFixed(2)}x its cold pull; ${describeLink(fleet, bytes, s.wanFleet)}`,
          );
          ctx.results.add(id(p, 'fleet_s'), who, round, fleet.seconds);
          ctx.results.add(id(p, 'fleet_x_cold'), who, round, fleet.seconds / one.seconds);
          ctx.results.add(id(p, 'fleet_x_limit'), who, round, fleet.seconds / limit);
          ctx.results.add(id(p, 'fleet_link_x'), who, round, fleet.link.bytesDown / bytes);

          const dest = join(server.root, '..', 'warm');
          const times: number[] = [];
          const warmPulls = await measure(link, async () => {
            for (let k = 0; k < s.wanWarmPulls; k++) {
              const start = process.hrtime.bigint();
              await pull(server.hostPort, dest, ref, PLATFORM_ARGS);
              times.push(secondsSince(start));
              await rm(dest, { recursive: true, force: true });
            }
          });
          warm[who] = median(times);
          ctx.log(`    ${s.wanWarmPulls} warm pulls by tag ${who}: median ${warm[who]!.toFixed(3)} s; ${describeLink(warmPulls, bytes, s.wanWarmPulls)}`);
          ctx.results.add(id(p, 'warm_s'), who, round, warm[who]!);
          ctx.results.add(id(p, 'warm_requests'), who, round, warmPulls.link.requests.length / s.wanWarmPulls);
          ctx.results.add(id(p, 'warm_rt'), who, round, warmPulls.link.serialRoundTrips / s.wanWarmPulls);

          // The local floors (the link out of the way) do not depend on the profile: measured once a round.
          if (i === 0) {
            link.profile = { rttMs: 0, bytesPerSec: Infinity };
            const local: number[] = [];
            for (let k = 0; k < 3; k++) {
              const start = process.hrtime.bigint();
              await pull(server.hostPort, dest, ref, PLATFORM_ARGS);
              local.push(secondsSince(start));
              await rm(dest, { recursive: true, force: true });
            }
            floors[who] = median(local);
            // And the fleet's: ten concurrent warm pulls, the machine's own cost of ten skopeo processes.
            const fleetLocal = await measure(link, () => Promise.all(dirs.map((d) => pull(server.hostPort, d, ref, PLATFORM_ARGS))).then(() => undefined));
            await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
            ctx.results.add('wan_fleet_local_s', who, round, fleetLocal.seconds);
            ctx.log(
              `    local floors ${who} (link off): warm pull ${floors[who]!.toFixed(3)} s, ${s.wanFleet} concurrent warm pulls ${fleetLocal.seconds.toFixed(2)} s`,
            );
          }
        } finally {
          await server.done();
        }
      } finally {
        await link.close();
      }
    }
    const floor = Math.min(...contenders(0).map((who) => floors[who]!));
    const warmLimit = floor + p.rttMs / 1000;
    for (const who of contenders(0)) ctx.results.add(id(p, 'warm_x_limit'), who, round, warm[who]! / warmLimit);
    ctx.results.notes.push(
      `WAN ${p.key} round ${round + 1}: cold-pull limit ${limit.toFixed(2)} s (${(bytes / MiB).toFixed(1)} MiB at ${p.mbPerSec} MB/s + ${COLD_ROUND_TRIPS} x ${p.rttMs} ms); warm-pull limit ${warmLimit.toFixed(3)} s (local floor ${floor.toFixed(3)} s, ${contenders(
        0,
      )
        .map((who) => `${who} ${floors[who]!.toFixed(3)}`)
        .join(', ')}, + 1 round trip)`,
    );
  }
}

/** The WAN rows and targets of the report, for `profiles`. */
export function registerWanReport(profiles: WanProfile[]): void {
  const metrics: MetricView[] = [];
  const targets: Target[] = [];
  const oursMedian = (metric: string) => (r: Parameters<Target['value']>[0]) => median(r.values(metric, 'ours'));
  for (const p of profiles) {
    const name = `WAN ${p.rttMs} ms / ${p.mbPerSec} MB/s`;
    const view = (what: string, label: string, unit: string, digits: number): MetricView => ({ id: id(p, what), label, unit, scale: 1, digits });
    metrics.push(
      view('cold_s', `W. ${name}: cold pull`, 's', 2),
      view('cold_x_limit', '   (cold pull / physical limit)', 'x', 2),
      view('cold_requests', '   (cold pull: upstream requests)', 'count', 0),
      view('cold_rt', '   (cold pull: round trips one after another)', 'count', 1),
      view('fleet_s', `   ${name}: fleet of 10 cold pulls`, 's', 2),
      view('fleet_x_cold', '   (fleet / own cold pull)', 'x', 2),
      view('fleet_x_limit', '   (fleet / physical limit)', 'x', 2),
      view('fleet_link_x', '   (fleet: bytes over the link)', 'x image', 2),
      view('warm_s', `   ${name}: warm pull by tag (median of 10)`, 's', 3),
      view('warm_x_limit', '   (warm pull / limit)', 'x', 2),
      view('warm_requests', '   (warm pull: upstream requests)', 'per pull', 1),
      view('warm_rt', '   (warm pull: round trips)', 'per pull', 2),
    );
    targets.push(
      { label: `${name}: cold pull / physical limit`, value: oursMedian(id(p, 'cold_x_limit')), op: '<=', limit: 1.2 },
      { label: `${name}: fleet of 10 / one cold pull`, value: oursMedian(id(p, 'fleet_x_cold')), op: '<=', limit: 1.1 },
      { label: `${name}: warm pull round trips to the upstream`, value: oursMedian(id(p, 'warm_rt')), op: '<=', limit: 1.001 },
    );
  }
  metrics.push({ id: 'wan_fleet_local_s', label: "W. 10 concurrent warm pulls, link off (the machine's floor for a fleet)", unit: 's', scale: 1, digits: 2 });
  registerReport({ metrics, targets });
}
