/**
 * Scenarios 4 and 5, each on contenders started with an empty cache: the wall time of one skopeo
 * pull of the multi-layer image, and the upstream body bytes of 10 concurrent pulls of it (counted
 * by a proxy between the contender and the upstream, until the contender stops fetching).
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { skopeo } from '../../spec/helpers/skopeo.js';
import { APP_REPO, freshContender, secondsSince, type BenchContext } from '../context.js';
import { startByteCounter } from '../byte-counter.js';
import { contenders, type Contender } from '../servers.js';
import { median } from '../results.js';
import { imageBytes } from '../seed.js';

/** `skopeo copy [args] docker://hostPort/<ref> dir:<dest>` (ref default `bench/app:latest`); throws when it fails or outlasts `timeoutMs`. */
export async function pull(hostPort: string, dest: string, ref = `${APP_REPO}:latest`, args: string[] = [], timeoutMs = 300_000): Promise<void> {
  await mkdir(dest, { recursive: true });
  const r = await skopeo([...args, 'copy', '--src-tls-verify=false', `docker://${hostPort}/${ref}`, `dir:${dest}`], { timeoutMs });
  if (r.code !== 0) throw new Error(`skopeo pull of ${ref} from ${hostPort} failed: ${r.stderr}`);
}

/** Scenario 4: seconds for one cold pull; the round's sample is the median of `coldPullReps` pulls, alternating. */
export async function coldPullRound(ctx: BenchContext, round: number): Promise<void> {
  const times = Object.fromEntries(contenders(0).map((who) => [who, [] as number[]])) as Record<Contender, number[]>;
  for (let rep = 0; rep < ctx.settings.coldPullReps; rep++) {
    for (const who of contenders(round + rep)) {
      const server = await freshContender(ctx, who, `r${round}-coldpull${rep}`);
      try {
        const start = process.hrtime.bigint();
        await pull(server.hostPort, join(server.root, '..', 'pulled'));
        times[who].push(secondsSince(start));
      } finally {
        await server.done();
      }
    }
  }
  for (const who of contenders(0)) {
    ctx.results.add('cold_pull', who, round, median(times[who]));
    ctx.log(`  cold pull ${who}: ${times[who].map((t) => t.toFixed(2)).join(', ')} s`);
  }
}

/** Scenario 5: upstream bytes (as multiples of the image's size) for `concurrentPulls` simultaneous cold pulls. */
export async function upstreamBytesRound(ctx: BenchContext, round: number): Promise<void> {
  const size = imageBytes(ctx.app);
  for (const who of contenders(round)) {
    const counter = await startByteCounter(ctx.upstream.url);
    const server = await freshContender(ctx, who, `r${round}-concurrent`, counter.url);
    try {
      const start = process.hrtime.bigint();
      await Promise.all(Array.from({ length: ctx.settings.concurrentPulls }, (_, i) => pull(server.hostPort, join(server.root, '..', `pulled-${i}`))));
      const wall = secondsSince(start);
      // distribution 2.8 keeps fetching in the background after its clients are served: count that too.
      await counter.waitIdle(1500, 120_000);
      const x = counter.bytes() / size;
      ctx.results.add('upstream_x', who, round, x);
      ctx.results.add('concurrent_pulls_s', who, round, wall);
      const gets = counter.requests().filter((r) => r.startsWith('GET ') && r.includes('/blobs/')).length;
      ctx.log(`  ${ctx.settings.concurrentPulls} concurrent cold pulls ${who}: ${x.toFixed(3)}x image size upstream (${gets} blob GETs), ${wall.toFixed(2)} s`);
    } finally {
      await server.done();
      await counter.close();
    }
  }
}
