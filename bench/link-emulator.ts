/**
 * An internet-like link between a pull-through cache and its upstream, as a TCP proxy on 127.0.0.1
 * (no tc/netem): every byte waits half the round-trip time in each direction, and each direction
 * is one shared FIFO link of the given bandwidth (all connections queue on it, as behind one
 * bottleneck router). A new connection costs one round trip before its first byte is delivered
 * (the TCP handshake). The link counts bytes each way, connections, and the HTTP requests the
 * cache sent (request heads parsed from its side of the stream), and measures how much of a period
 * was spent waiting on round trips.
 *
 * Round trips are counted as the link sees them: each new connection and each request opens a
 * window of one round-trip time from the moment its first byte leaves on the link (a request on a
 * new connection, after the handshake's round trip); the union of the
 * windows, divided by the round-trip time, is the number of round trips spent one after another
 * (overlapping requests, such as parallel blob GETs, count once).
 */
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { onCleanup } from './cleanup.js';

/** The link's characteristics, settable while it runs. */
export interface LinkProfile {
  /** Round-trip time in milliseconds (half of it each way). */
  readonly rttMs: number;
  /** Bytes per second each way, shared by every connection; Infinity for no limit. */
  readonly bytesPerSec: number;
}

/** What crossed the link since the last `reset`. */
export interface LinkStats {
  /** Bytes from the cache to the upstream, and from the upstream to the cache (TCP payload). */
  readonly bytesUp: number;
  readonly bytesDown: number;
  readonly connections: number;
  /** `METHOD path` of every request the cache sent, in order. */
  readonly requests: string[];
  /** Round trips spent one after another (see the file's comment). */
  readonly serialRoundTrips: number;
}

/** A running link emulator. */
export interface LinkEmulator {
  /** `http://127.0.0.1:<port>`: the `remoteurl` to give the cache. */
  readonly url: string;
  profile: LinkProfile;
  stats(): LinkStats;
  /** Zeroes the counters (a new measurement). */
  reset(): void;
  /** Resolves once no byte has crossed for `quietMs` (or after `timeoutMs`). */
  waitIdle(quietMs: number, timeoutMs: number): Promise<void>;
  close(): Promise<void>;
}

/** One direction of the link: the time its last queued byte finishes being sent. */
interface Direction {
  busyUntil: number;
}

const now = (): number => performance.now();

/** Starts a link to `target` (`host:port`) with `profile`. */
export async function startLinkEmulator(target: string, profile: LinkProfile): Promise<LinkEmulator> {
  const [targetHost, targetPort] = target.split(':');
  const up: Direction = { busyUntil: 0 };
  const down: Direction = { busyUntil: 0 };
  let stats = { bytesUp: 0, bytesDown: 0, connections: 0, requests: [] as string[] };
  /** Start times (ms) of the round-trip windows. */
  let windows: number[] = [];
  let lastActivity = now();
  const sockets = new Set<net.Socket>();
  const link = { profile };

  const openWindow = (at: number): void => void windows.push(at);
  /** The length of the union of the windows, in round trips. */
  const serialRoundTrips = (): number => {
    const rtt = link.profile.rttMs;
    if (rtt <= 0) return 0;
    let total = 0;
    let end = -Infinity;
    for (const at of [...windows].sort((a, b) => a - b)) {
      total += Math.max(0, at + rtt - Math.max(at, end));
      end = Math.max(end, at + rtt);
    }
    return total / rtt;
  };

  const server = net.createServer((client) => {
    const accepted = now();
    stats.connections++;
    openWindow(accepted);
    const upstream = net.connect({ host: targetHost, port: Number(targetPort) });
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.once('close', () => sockets.delete(s));
      s.setNoDelay(true);
    }
    let departs = 0;
    const parser = requestParser((line) => {
      stats.requests.push(line);
      openWindow(departs);
    });
    // The handshake: the cache's first bytes leave one round trip after it connected.
    pipeDelayed(client, upstream, up, accepted + link.profile.rttMs, (n, chunk, start) => {
      stats.bytesUp += n;
      departs = start;
      parser(chunk);
    });
    pipeDelayed(upstream, client, down, 0, (n) => {
      stats.bytesDown += n;
    });
  });

  /**
   * Forwards `from` to `to` through `dir`: each chunk departs when the shared link is free (after
   * `notBefore`), takes size/bandwidth to send, and arrives half a round trip later. The source is
   * paused while more than about two bandwidth-delay products of this connection are in the link
   * or in the destination's buffer (TCP's window would hold a real sender back the same way).
   */
  function pipeDelayed(
    from: net.Socket,
    to: net.Socket,
    dir: Direction,
    notBefore: number,
    counted: (n: number, chunk: Buffer, departs: number) => void,
  ): void {
    const queue: Array<{ at: number; chunk: Buffer }> = [];
    let queued = 0;
    let timer: NodeJS.Timeout | undefined;
    let ended = false;
    const limit = (): number => {
      const { rttMs, bytesPerSec } = link.profile;
      return Number.isFinite(bytesPerSec) ? Math.max(256 * 1024, Math.ceil((2 * bytesPerSec * rttMs) / 1000)) : 4 << 20;
    };
    const backlog = (): number => queued + to.writableLength;
    const flush = (): void => {
      timer = undefined;
      const t = now();
      while (queue.length > 0 && queue[0]!.at <= t) {
        const { chunk } = queue.shift()!;
        queued -= chunk.length;
        if (!to.destroyed) to.write(chunk);
      }
      if (queue.length > 0) timer = setTimeout(flush, Math.max(0, queue[0]!.at - now()));
      else if (ended && !to.destroyed) to.end();
      if (from.isPaused() && backlog() < limit()) from.resume();
    };
    to.on('drain', () => {
      if (from.isPaused() && backlog() < limit()) from.resume();
    });
    from.on('data', (chunk: Buffer) => {
      lastActivity = now();
      const { rttMs, bytesPerSec } = link.profile;
      const start = Math.max(now(), dir.busyUntil, notBefore);
      counted(chunk.length, chunk, start);
      const departed = start + (Number.isFinite(bytesPerSec) ? (chunk.length / bytesPerSec) * 1000 : 0);
      dir.busyUntil = departed;
      queue.push({ at: departed + rttMs / 2, chunk });
      queued += chunk.length;
      timer ??= setTimeout(flush, Math.max(0, queue[0]!.at - now()));
      if (backlog() >= limit()) from.pause();
    });
    from.once('end', () => {
      ended = true;
      if (queue.length === 0 && !timer && !to.destroyed) to.end();
    });
    // A reset on one side resets the other, without waiting for the queue.
    from.once('error', () => to.destroy());
    from.once('close', () => {
      if (!ended) {
        if (timer) clearTimeout(timer);
        to.destroy();
      }
    });
  }

  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const close = onCleanup(
    () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  );
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    get profile() {
      return link.profile;
    },
    set profile(p: LinkProfile) {
      link.profile = p;
    },
    stats: () => ({
      ...stats,
      requests: [...stats.requests],
      serialRoundTrips: serialRoundTrips(),
    }),
    reset: () => {
      stats = { bytesUp: 0, bytesDown: 0, connections: 0, requests: [] };
      windows = [];
    },
    waitIdle: async (quietMs, timeoutMs) => {
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline && now() - lastActivity < quietMs) await new Promise((r) => setTimeout(r, 50));
    },
    close,
  };
}

/**
 * Parses HTTP/1.1 request heads out of a client's byte stream and reports each request line's
 * `METHOD path` (query dropped). Bodies with a Content-Length are skipped; a chunked request body
 * (a cache never sends one upstream) would end the parsing.
 */
export function requestParser(onRequest: (line: string) => void): (chunk: Buffer) => void {
  let pending = Buffer.alloc(0);
  let skip = 0;
  let broken = false;
  return (chunk) => {
    if (broken) return;
    let buf = pending.length ? Buffer.concat([pending, chunk]) : chunk;
    for (;;) {
      if (skip > 0) {
        const n = Math.min(skip, buf.length);
        skip -= n;
        buf = buf.subarray(n);
        if (skip > 0) break;
      }
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) break;
      const head = buf.toString('latin1', 0, end);
      const [method, target] = head.split('\r\n', 1)[0]!.split(' ');
      onRequest(`${method} ${(target ?? '').split('?')[0]}`);
      if (/\r\ntransfer-encoding:\s*chunked/i.test(head)) broken = true;
      skip = Number(/\r\ncontent-length:\s*(\d+)/i.exec(head)?.[1] ?? 0);
      buf = buf.subarray(end + 4);
      if (broken) break;
    }
    pending = Buffer.from(buf);
  };
}
