/**
 * Scenario 6: peak resident memory (VmHWM of a contender started for the measurement, so the peak
 * belongs to it) while `coldStreams` clients each stream a different cold blob as fast as they can,
 * and while `slowClients` clients read one cold blob at `slowBytesPerSec` each.
 */
import { setMaxListeners } from 'node:events';
import http from 'node:http';
import { BIG_REPO, freshContender, secondsSince, type BenchContext } from '../context.js';
import { BulkGetter } from '../http-client.js';
import { contenders } from '../servers.js';
import type { ServerProcess } from '../proc.js';

const MiB = 2 ** 20;

/** Samples VmRSS every 100 ms until stopped; resolves with the largest reading. */
function sampleRss(server: ServerProcess): { stop(): Promise<number> } {
  let max = 0;
  let running = true;
  const loop = (async () => {
    while (running) {
      max = Math.max(max, await server.rss().catch(() => 0));
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      return max;
    },
  };
}

/** Scenario 6a: every client GETs its own cold blob at full speed. */
export async function coldStreamsRound(ctx: BenchContext, round: number): Promise<void> {
  for (const who of contenders(round)) {
    const server = await freshContender(ctx, who, `r${round}-streams`);
    try {
      const sampler = sampleRss(server);
      const start = process.hrtime.bigint();
      const results = await Promise.all(
        ctx.coldBlobs.map(async (blob) => {
          const getter = new BulkGetter(server.hostPort, `/v2/${BIG_REPO}/blobs/${blob.digest}`);
          try {
            return await getter.get();
          } finally {
            getter.close();
          }
        }),
      );
      const wall = secondsSince(start);
      const sampled = await sampler.stop();
      const peak = await server.peakRss();
      const bad = results.filter((r, i) => r.status !== 200 || r.bytes !== ctx.coldBlobs[i]!.size).length;
      if (bad) ctx.results.notes.push(`round ${round + 1} cold streams ${who}: ${bad} streams failed or were short`);
      ctx.results.add('rss_streams', who, round, peak);
      ctx.results.add('streams_s', who, round, wall);
      ctx.log(
        `  ${ctx.coldBlobs.length} cold streams ${who}: peak RSS ${(peak / MiB).toFixed(0)} MiB (sampled ${(sampled / MiB).toFixed(0)}), ${wall.toFixed(1)} s`,
      );
    } finally {
      await server.done();
    }
  }
}

/** One slow reader: pauses whenever it is ahead of `rate`; resolves with the bytes read when destroyed. */
function slowReader(url: string, rate: number, signal: AbortSignal): Promise<{ status: number; bytes: number }> {
  return new Promise((resolve) => {
    let bytes = 0;
    let status = 0;
    const start = Date.now();
    const req = http.get(url, { agent: false, signal }, (res) => {
      status = res.statusCode!;
      res.on('data', (c: Buffer) => {
        bytes += c.length;
        const ahead = bytes / rate - (Date.now() - start) / 1000;
        if (ahead > 0) {
          res.pause();
          setTimeout(() => res.resume(), ahead * 1000).unref();
        }
      });
      res.on('error', () => undefined);
    });
    req.on('error', () => undefined);
    req.on('close', () => resolve({ status, bytes }));
  });
}

/** Scenario 6b: `slowClients` readers of one cold blob for `slowSeconds`, then they hang up. */
export async function slowClientsRound(ctx: BenchContext, round: number): Promise<void> {
  const { slowClients, slowSeconds, slowBytesPerSec } = ctx.settings;
  const blob = ctx.coldBlobs[0]!;
  for (const who of contenders(round)) {
    const server = await freshContender(ctx, who, `r${round}-slow`);
    try {
      const sampler = sampleRss(server);
      const abort = new AbortController();
      setMaxListeners(slowClients + 10, abort.signal);
      const url = `${server.url}/v2/${BIG_REPO}/blobs/${blob.digest}`;
      const readers = Array.from({ length: slowClients }, () => slowReader(url, slowBytesPerSec, abort.signal));
      await new Promise((r) => setTimeout(r, slowSeconds * 1000));
      const peak = await server.peakRss();
      abort.abort();
      const done = await Promise.all(readers);
      const sampled = await sampler.stop();
      const ok = done.filter((d) => d.status === 200).length;
      const read = done.reduce((n, d) => n + d.bytes, 0);
      if (ok < slowClients) ctx.results.notes.push(`round ${round + 1} slow clients ${who}: only ${ok} of ${slowClients} got 200`);
      ctx.results.add('rss_slow', who, round, peak);
      ctx.results.add('slow_read_bytes', who, round, read);
      ctx.log(
        `  ${slowClients} slow clients ${who}: peak RSS ${(peak / MiB).toFixed(0)} MiB (sampled ${(sampled / MiB).toFixed(0)}), ${ok} answered 200, ${(read / MiB).toFixed(0)} MiB read`,
      );
    } finally {
      await server.done();
    }
  }
}
