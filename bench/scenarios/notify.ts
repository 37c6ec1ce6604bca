/**
 * `BENCH_ONLY=notify` (issue 29): what a notification endpoint that is down or hangs costs the pull
 * path. Ours is started three times on one warm cache: without notifications, with an endpoint
 * whose port refuses connections, and with one that accepts posts and never answers; wrk measures
 * manifest GETs by digest (each one a pull event) against each. Reported as ratios to the run
 * without notifications, in the notes of the results.
 */
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { appendFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { APP_REPO, type BenchContext } from '../context.js';
import { runWrk } from '../wrk.js';
import { startServer } from '../proc.js';
import { contenderCommand } from '../servers.js';
import { freePort } from '../../spec/helpers/ports.js';
import { onCleanup } from '../cleanup.js';
import { ACCEPT } from './warm.js';

type Endpoint = 'none' | 'dead' | 'hanging';

/** One round: the three set-ups in turn, each measured once. */
export async function notifyRound(ctx: BenchContext, round: number): Promise<void> {
  const sockets = new Set<Socket>();
  const hanging = http.createServer(() => undefined);
  hanging.on('connection', (s: Socket) => void sockets.add(s));
  await new Promise<void>((r) => hanging.listen(0, '127.0.0.1', r));
  const deadPort = await freePort();
  const urls: Record<Exclude<Endpoint, 'none'>, string> = {
    dead: `http://127.0.0.1:${deadPort}/events`,
    hanging: `http://127.0.0.1:${(hanging.address() as AddressInfo).port}/events`,
  };
  const rates: Partial<Record<Endpoint, number>> = {};
  try {
    for (const endpoint of ['none', 'dead', 'hanging'] as const) {
      const dir = join(ctx.workDir, `notify-${endpoint}`);
      const port = await freePort();
      const { cmd, args } = await contenderCommand('ours', ctx.upstream.url, dir, port);
      if (endpoint !== 'none') {
        await appendFile(join(dir, 'config.yml'), ['notifications:', '  endpoints:', '    - name: bench', `      url: ${urls[endpoint]}`, '      timeout: 30s', ''].join('\n'));
      }
      const undo = onCleanup(() => rm(dir, { recursive: true, force: true }));
      const server = await startServer({ name: `ours-notify-${endpoint}`, cmd, args, env: process.env, hostPort: `127.0.0.1:${port}`, readyPath: '/v2/' });
      try {
        const url = `${server.url}/v2/${APP_REPO}/manifests/${ctx.app.manifest.digest}`;
        // Fills the cache (the first GET) and warms the process up.
        await runWrk(url, { connections: 2, threads: 1, seconds: 1, headers: { Accept: ACCEPT } });
        const r = await runWrk(url, { connections: ctx.settings.manifestClients, threads: 2, seconds: ctx.settings.wrkSeconds, headers: { Accept: ACCEPT } });
        if (r.errors > 0) ctx.results.notes.push(`round ${round + 1} notify ${endpoint}: ${r.errors} of ${r.requests} requests failed`);
        rates[endpoint] = r.requestsPerSec;
        ctx.log(`  notify ${endpoint}: ${r.requestsPerSec.toFixed(0)} manifest GETs/s${r.errors ? `, ${r.errors} errors` : ''}`);
      } finally {
        await server.stop();
        await undo();
      }
    }
  } finally {
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => hanging.close(() => r()));
  }
  const ratio = (e: Endpoint): string => (rates.none && rates[e] !== undefined ? (rates[e]! / rates.none).toFixed(2) : 'n/a');
  ctx.results.notes.push(`round ${round + 1} notify: manifest GETs/s with a dead endpoint ${ratio('dead')} x, with a hanging one ${ratio('hanging')} x those without notifications`);
}
