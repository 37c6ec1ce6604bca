/**
 * The chaos scenario's fault proxy: an HTTP reverse proxy on 127.0.0.1 between a pull-through cache
 * and a real upstream that, per request at random, breaks the answer the way networks and
 * overloaded registries do: a connection reset mid-body (RST), a stall, a trickle, a body cut short
 * with a clean FIN, one flipped byte, a 500, a 429 with Retry-After; and, from time to time, a
 * window of refused connections (the listener closed, idle keep-alive connections dropped).
 */
import http from 'node:http';
import net from 'node:net';
import { onCleanup } from './cleanup.js';

/** The faults, in the order the report lists them. */
export const FAULT_KINDS = ['reset', 'stall', 'trickle', 'truncate', 'flip', 'status500', 'status429', 'refused'] as const;
/** One kind of fault. */
export type FaultKind = (typeof FAULT_KINDS)[number];

/** What the proxy is told. */
export interface FaultProxyOptions {
  /** Share of requests that get a fault (0..1). */
  readonly rate: number;
  /** Chance per second that a window of refused connections (1 to 3 s) begins. */
  readonly refuseChancePerSec: number;
  readonly random?: () => number;
}

/** A running fault proxy. */
export interface FaultProxy {
  readonly url: string;
  /** Faults are injected only while enabled. */
  enabled: boolean;
  /** Requests seen, and faults injected by kind. */
  counts(): { requests: number } & Record<FaultKind, number>;
  close(): Promise<void>;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Starts a fault proxy in front of `target` (`http://host:port`). */
export async function startFaultProxy(target: string, o: FaultProxyOptions): Promise<FaultProxy> {
  const t = new URL(target);
  const random = o.random ?? Math.random;
  const between = (lo: number, hi: number): number => lo + random() * (hi - lo);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  const counts = { requests: 0, ...(Object.fromEntries(FAULT_KINDS.map((k) => [k, 0])) as Record<FaultKind, number>) };
  const state = { enabled: true };

  const pick = (hasBody: boolean): FaultKind | undefined => {
    if (!state.enabled || random() >= o.rate) return undefined;
    const kinds: FaultKind[] = hasBody
      ? ['reset', 'stall', 'trickle', 'truncate', 'flip', 'status500', 'status429']
      : ['reset', 'stall', 'status500', 'status429'];
    return kinds[Math.floor(random() * kinds.length)]!;
  };

  const server = http.createServer((req, res) => {
    counts.requests++;
    const fault = pick(req.method === 'GET');
    if (fault) counts[fault]++;
    if (fault === 'status500' || fault === 'status429') {
      const code = fault === 'status500' ? 'UNKNOWN' : 'TOOMANYREQUESTS';
      const body = JSON.stringify({ errors: [{ code, message: `injected ${fault}` }] });
      res.writeHead(fault === 'status500' ? 500 : 429, {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(body),
        ...(fault === 'status429' ? { 'retry-after': '1' } : {}),
      });
      res.end(body);
      return;
    }
    if (fault === 'reset' && req.method !== 'GET') {
      req.socket.resetAndDestroy();
      return;
    }
    const upstream = http.request(
      { host: t.hostname, port: t.port, method: req.method, path: req.url, headers: { ...req.headers, host: t.host }, agent },
      (r) => {
        void relay(r, res, fault).catch(() => res.destroy());
      },
    );
    upstream.on('error', () => res.destroy());
    res.once('close', () => {
      if (!res.writableFinished) upstream.destroy();
    });
    req.pipe(upstream);
  });

  /** Sends the upstream's answer `r` to `res`, breaking it as `fault` says. */
  async function relay(r: http.IncomingMessage, res: http.ServerResponse, fault: FaultKind | undefined): Promise<void> {
    const length = Number(r.headers['content-length'] ?? NaN);
    if (fault === 'stall' && !(length > 0)) await sleep(between(3000, 10_000));
    res.writeHead(r.statusCode!, r.headers);
    if (!fault || !(length > 0)) {
      r.pipe(res);
      return;
    }
    // Where the fault strikes: anywhere in the body.
    const at = Math.floor(random() * length);
    let offset = 0;
    let trickleUntil = 0;
    for await (const data of r) {
      let chunk = data as Buffer;
      const end = offset + chunk.length;
      if (end > at && offset <= at) {
        const cut = at - offset;
        if (fault === 'reset' || fault === 'truncate') {
          await write(res, chunk.subarray(0, cut));
          r.destroy();
          if (fault === 'reset') res.socket?.resetAndDestroy();
          else res.socket?.end();
          return;
        }
        if (fault === 'flip') {
          chunk = Buffer.from(chunk);
          chunk[cut] = chunk[cut]! ^ 0x01;
        }
        if (fault === 'stall') {
          await write(res, chunk.subarray(0, cut));
          chunk = chunk.subarray(cut);
          await sleep(between(3000, 10_000));
        }
        if (fault === 'trickle') trickleUntil = Date.now() + between(2000, 6000);
      }
      // A trickle: 4 KiB every 50 ms (80 KiB/s) for a few seconds, then full speed.
      while (chunk.length > 0 && Date.now() < trickleUntil) {
        await write(res, chunk.subarray(0, 4096));
        chunk = chunk.subarray(4096);
        await sleep(50);
      }
      offset = end;
      await write(res, chunk);
    }
    res.end();
  }

  // Connections are accepted by a net listener that hands them to the HTTP server, so the listener
  // can be closed for a refusal window while the connections it accepted live on.
  let listener: net.Server | undefined;
  const port = await new Promise<number>((resolve) => {
    const l = net.createServer((s) => server.emit('connection', s));
    l.listen(0, '127.0.0.1', () => resolve((l.address() as net.AddressInfo).port));
    listener = l;
  });
  const listen = (): Promise<void> =>
    new Promise((resolve, reject) => {
      const l = net.createServer((s) => server.emit('connection', s));
      l.once('error', reject);
      l.listen(port, '127.0.0.1', () => resolve());
      listener = l;
    });
  let closed = false;
  const refusals = (async () => {
    while (!closed) {
      await sleep(1000);
      if (closed || !state.enabled || random() >= o.refuseChancePerSec) continue;
      counts.refused++;
      listener?.close();
      listener = undefined;
      server.closeIdleConnections();
      await sleep(between(1000, 3000));
      if (!closed) await listen().catch(() => undefined);
    }
  })();

  const close = onCleanup(async () => {
    closed = true;
    listener?.close();
    server.closeAllConnections();
    agent.destroy();
    await refusals;
  });
  return {
    url: `http://127.0.0.1:${port}`,
    get enabled() {
      return state.enabled;
    },
    set enabled(v: boolean) {
      state.enabled = v;
    },
    counts: () => ({ ...counts }),
    close,
  };
}

/** Writes `chunk`, waiting for the socket to drain when it asks to. */
function write(res: http.ServerResponse, chunk: Buffer): Promise<void> {
  if (chunk.length === 0 || res.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    if (res.write(chunk)) resolve();
    else {
      const done = (): void => {
        res.off('drain', done);
        res.off('close', done);
        resolve();
      };
      res.once('drain', done);
      res.once('close', done);
    }
  });
}
