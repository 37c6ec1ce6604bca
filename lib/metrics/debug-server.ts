/**
 * The `http.debug.addr` listener: `/debug/health` (JSON; 503 while a check fails) and Prometheus
 * metrics at `http.debug.prometheus.path`, as distribution serves them.
 */
import http from 'node:http';
import type { HealthChecks } from '../health/health-checks.js';
import type { Metrics } from './metrics.js';

/** Starts the debug listener on `addr` (`host:port` or `:port`). */
export async function startDebugServer(opts: {
  addr: string;
  metrics: Metrics;
  prometheus: { enabled: boolean; path: string };
  health: HealthChecks;
}): Promise<{ port: number; close(): Promise<void> }> {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/debug/health') {
      // The last polled status, as distribution: a request never waits for a check.
      const failures = opts.health.failures();
      res.writeHead(Object.keys(failures).length > 0 ? 503 : 200, { 'content-type': 'application/json; charset=utf-8' }).end(JSON.stringify(failures));
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
