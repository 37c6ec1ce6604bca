/**
 * The `http.debug.addr` listener: `/debug/health` (JSON; 503 while a check fails) and Prometheus
 * metrics at `http.debug.prometheus.path`, as distribution serves them.
 */
import http from 'node:http';
import { randomUUID } from 'node:crypto';
import { rm, writeFile, mkdir } from 'node:fs/promises';
import type { Metrics } from './metrics.js';

/** A named health check: resolves when healthy, rejects with the reason otherwise. */
export type HealthCheck = () => Promise<void>;

/** Checks that the storage root accepts a write (distribution's `health.storagedriver`). */
export function storageWritableCheck(root: string): HealthCheck {
  return async () => {
    const dir = `${root}/.tmp`;
    await mkdir(dir, { recursive: true });
    const probe = `${dir}/health-${randomUUID()}`;
    await writeFile(probe, 'ok');
    await rm(probe, { force: true });
  };
}

/** Runs every check and reports `{name: error}` for the failing ones. */
export async function runChecks(checks: Record<string, HealthCheck>): Promise<Record<string, string>> {
  const failures: Record<string, string> = {};
  await Promise.all(
    Object.entries(checks).map(async ([name, check]) => {
      try {
        await check();
      } catch (err) {
        failures[name] = err instanceof Error ? err.message : String(err);
      }
    }),
  );
  return failures;
}

/** Starts the debug listener on `addr` (`host:port` or `:port`). */
export async function startDebugServer(opts: {
  addr: string;
  metrics: Metrics;
  prometheus: { enabled: boolean; path: string };
  checks: Record<string, HealthCheck>;
}): Promise<{ port: number; close(): Promise<void> }> {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/debug/health') {
      runChecks(opts.checks).then((failures) => {
        const body = JSON.stringify(failures);
        res.writeHead(Object.keys(failures).length > 0 ? 503 : 200, { 'content-type': 'application/json; charset=utf-8' }).end(body);
      }, () => res.writeHead(500).end());
      return;
    }
    if (opts.prometheus.enabled && path === opts.prometheus.path) {
      opts.metrics.registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': opts.metrics.registry.contentType }).end(text),
        () => res.writeHead(500).end(),
      );
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain' }).end('404 page not found\n');
  });
  const m = /^(?:\[([^\]]*)\]|([^:]*)):(\d+)$/.exec(opts.addr);
  if (!m) throw new Error(`http.debug.addr: ${opts.addr} is not an address like :5001`);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: m[1] ?? (m[2] || undefined), port: Number(m[3]) }, resolve);
  });
  const address = server.address();
  return {
    port: typeof address === 'object' && address ? address.port : 0,
    close: () =>
      new Promise((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
