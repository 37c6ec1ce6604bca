/** A reverse proxy in front of an upstream that records every request, so tests can count them. */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

/** A running counting proxy. */
export interface CountingProxy {
  readonly url: string;
  /** `METHOD /path` of every request, query left off. */
  readonly hits: string[];
  close(): Promise<void>;
}

/** Starts a counting proxy of `target` on 127.0.0.1. */
export async function countingProxy(target: string): Promise<CountingProxy> {
  const hits: string[] = [];
  const t = new URL(target);
  const server = http.createServer((req, res) => {
    hits.push(`${req.method} ${req.url!.split('?')[0]}`);
    const upstream = http.request({ host: t.hostname, port: t.port, method: req.method, path: req.url, headers: req.headers }, (r) => {
      res.writeHead(r.statusCode!, r.headers);
      r.pipe(res);
    });
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    hits,
    close: () =>
      new Promise((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
