/** Free ports and readiness polling for servers the tests start on 127.0.0.1. */
import http from 'node:http';
import net from 'node:net';
import { readFileSync } from 'node:fs';

/**
 * Where the kernel's ephemeral ports begin (`ip_local_port_range`): outgoing connections take
 * their local port at or above it, so a port below it that is free now stays free for the child
 * the test starts next. A port the kernel gave a listener on port 0 and which was closed again may
 * meanwhile be taken by any of the suite's outgoing connections (a replica then fails to bind).
 */
function ephemeralStart(): number {
  try {
    const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    if (Number.isInteger(low) && low > 12_000) return low;
  } catch {
    // Not Linux: the IANA range's start.
  }
  return 49_152;
}

const LOWEST = 10_000;
const HIGHEST = ephemeralStart() - 1;
/** Each jest worker picks in its own band, so that two workers never pick one port at once. */
const BANDS = 8;
const band = (Number(process.env.JEST_WORKER_ID ?? '1') - 1) % BANDS;
const bandSize = Math.floor((HIGHEST - LOWEST) / BANDS);

/** Whether a listener can bind 127.0.0.1:`port` now. */
function bindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

/** A port nobody listens on right now, below the kernel's ephemeral ports (see `ephemeralStart`). */
export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = LOWEST + band * bandSize + Math.floor(Math.random() * bandSize);
    if (await bindable(port)) return port;
  }
  throw new Error(`no free port found between ${LOWEST} and ${HIGHEST}`);
}

/** Whether `url` answers any HTTP status now (one attempt, given a second). */
export function answers(url: string): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const req = http.get(url, { agent: false }, (res) => {
      res.resume();
      resolve(true);
    });
    req.on('error', () => resolve(false));
    req.setTimeout(1000, () => req.destroy());
  });
}

/** Resolves once `url` answers any HTTP status; rejects after `timeoutMs`. */
export async function waitForHttp(url: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await answers(url)) return;
    if (Date.now() > deadline) throw new Error(`${url} did not answer within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
