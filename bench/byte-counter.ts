/**
 * An HTTP reverse proxy between a pull-through cache and the upstream that counts the response body
 * bytes the cache fetched (what the upstream, or a metered link, pays for).
 */
import http from 'node:http';
import { listenOnLoopback } from './loopback.js';

/** A running byte-counting proxy. */
export interface ByteCounter {
  readonly url: string;
  /** Response body bytes sent to the cache so far. */
  bytes(): number;
  /** `METHOD path` of every request so far. */
  requests(): string[];
  /** Resolves once no request has been in flight for `quietMs` (or after `timeoutMs`). */
  waitIdle(quietMs: number, timeoutMs: number): Promise<void>;
  close(): Promise<void>;
}

/** Starts a byte-counting proxy of `target` on 127.0.0.1. */
export async function startByteCounter(target: string): Promise<ByteCounter> {
  const t = new URL(target);
  const agent = new http.Agent({ keepAlive: true });
  let bytes = 0;
  let active = 0;
  let lastActivity = Date.now();
  const requests: string[] = [];
  const server = http.createServer((req, res) => {
    requests.push(`${req.method} ${req.url!.split('?')[0]}`);
    active++;
    lastActivity = Date.now();
    let done = false;
    const finish = (): void => {
      if (done) return;
      done = true;
      active--;
      lastActivity = Date.now();
    };
    res.once('close', finish);
    const upstream = http.request({ host: t.hostname, port: t.port, method: req.method, path: req.url, headers: req.headers, agent }, (r) => {
      res.writeHead(r.statusCode!, r.headers);
      r.on('data', (c: Buffer) => {
        bytes += c.length;
        lastActivity = Date.now();
      });
      r.pipe(res);
    });
    upstream.on('error', () => res.destroy());
    // A client (the contender) that hangs up must not leave the upstream download running.
    res.once('close', () => {
      if (!res.writableFinished) upstream.destroy();
    });
    req.pipe(upstream);
  });
  const { port, close } = await listenOnLoopback(server, agent);
  return {
    url: `http://127.0.0.1:${port}`,
    bytes: () => bytes,
    requests: () => requests,
    waitIdle: async (quietMs, timeoutMs) => {
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline && (active > 0 || Date.now() - lastActivity < quietMs)) await new Promise((r) => setTimeout(r, 50));
    },
    close,
  };
}
