/**
 * What the scaling scenario measures on a running contender: time until `/v2/` answers, CPU and
 * RSS over a window, latency percentiles under wrk, a paged catalog walk, a tags list, the cache
 * page's first byte and `garbage-collect --dry-run`.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import { WRK_BIN } from '../prereqs.js';
import { parseWrk, type WrkResult } from '../wrk.js';
import { procCpuSeconds, procStatusBytes } from '../proc.js';
import { onCleanup } from '../cleanup.js';

/** A contender process started by the scaling scenario. */
export interface Started {
  readonly pid: number;
  readonly url: string;
  /** Seconds from spawn until `/v2/` answered. */
  readonly readySeconds: number;
  logs(): string;
  stop(): Promise<void>;
}

/** A GET; resolves with the status, headers, body and the time to the first body byte (s). */
export function get(
  url: string,
  headers: Record<string, string> = {},
  timeoutMs = 120_000,
): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer; firstByteSeconds: number; seconds: number }> {
  const start = process.hrtime.bigint();
  const since = (): number => Number(process.hrtime.bigint() - start) / 1e9;
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      let first: number | undefined;
      res.on('data', (c: Buffer) => {
        first ??= since();
        chunks.push(c);
      });
      res.on('end', () =>
        resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks), firstByteSeconds: first ?? since(), seconds: since() }),
      );
      res.on('error', reject);
    });
    req.on('error', reject);
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`no answer from ${url} within ${timeoutMs} ms`)));
  });
}

/** Spawns `cmd args` and times it until `/v2/` at `hostPort` answers (polling every 20 ms). */
export async function startTimed(
  name: string,
  cmd: string,
  args: string[],
  hostPort: string,
  env: NodeJS.ProcessEnv = process.env,
  timeoutMs = 300_000,
): Promise<Started> {
  let logs = '';
  const begun = process.hrtime.bigint();
  const child: ChildProcess = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
  const keep = (c: Buffer): void => void (logs = (logs + c.toString()).slice(-65536));
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  let exited = false;
  const exit = new Promise<void>((r) => {
    child.once('exit', () => {
      exited = true;
      r();
    });
    child.once('error', (err) => {
      keep(Buffer.from(String(err)));
      exited = true;
      r();
    });
  });
  const stop = onCleanup(async () => {
    if (exited) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    await exit;
    clearTimeout(timer);
  });
  const url = `http://${hostPort}`;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const req = http.get(`${url}/v2/`, { agent: false }, (res) => {
        res.resume();
        resolve(true);
      });
      req.on('error', () => resolve(false));
      req.setTimeout(2000, () => req.destroy());
    });
    if (ok) break;
    if (exited || Date.now() > deadline) {
      await stop();
      throw new Error(`${name} did not start${exited ? ' (exited)' : ` within ${timeoutMs} ms`}:\n${logs}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return { pid: child.pid!, url, readySeconds: Number(process.hrtime.bigint() - begun) / 1e9, logs: () => logs, stop };
}

/** CPU used by `pid` over `seconds`, as a percentage of one core, and its RSS at the end (bytes). */
export async function cpuWindow(pid: number, seconds: number): Promise<{ cpuPercent: number; rss: number }> {
  const c0 = await procCpuSeconds(pid);
  const t0 = process.hrtime.bigint();
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const c1 = await procCpuSeconds(pid);
  const wall = Number(process.hrtime.bigint() - t0) / 1e9;
  return { cpuPercent: ((c1 - c0) / wall) * 100, rss: await procStatusBytes(pid, 'VmRSS') };
}

/**
 * Waits until `pid` is quiet: two consecutive one-second samples under `percent` of a core (the
 * work a contender does in the background after it answers, such as our walk of the cache).
 * Resolves with the seconds waited; gives up after `maxSeconds`.
 */
export async function settle(pid: number, percent = 3, maxSeconds = 300): Promise<number> {
  const start = process.hrtime.bigint();
  let quiet = 0;
  while (Number(process.hrtime.bigint() - start) / 1e9 < maxSeconds) {
    const { cpuPercent } = await cpuWindow(pid, 1);
    quiet = cpuPercent < percent ? quiet + 1 : 0;
    if (quiet === 2) break;
  }
  return Number(process.hrtime.bigint() - start) / 1e9;
}

/** wrk with `--latency`: the summary and the 50th/99th percentiles (seconds). */
export interface LatencyResult extends WrkResult {
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
}

const TIME_UNITS: Record<string, number> = { us: 1e-6, ms: 1e-3, s: 1, m: 60 };

/** Parses wrk's `--latency` distribution. */
export function parseLatency(out: string): LatencyResult {
  const pct = (p: string): number => {
    const m = new RegExp(`^\\s+${p}%\\s+([\\d.]+)(us|ms|s|m)\\s*$`, 'm').exec(out);
    return m ? Number(m[1]) * TIME_UNITS[m[2]!]! : NaN;
  };
  const max = /^\s+Latency\s+\S+\s+\S+\s+([\d.]+)(us|ms|s|m)/m.exec(out);
  return { ...parseWrk(out), p50: pct('50'), p99: pct('99'), max: max ? Number(max[1]) * TIME_UNITS[max[2]!]! : NaN };
}

/** Runs wrk on `url` (16 connections over 2 threads by default) for `seconds`. */
export function wrkLatency(url: string, seconds: number, headers: Record<string, string>, connections = 16): Promise<LatencyResult> {
  const args = ['-t2', `-c${connections}`, `-d${seconds}s`, '--timeout', '10s', '--latency'];
  for (const [k, v] of Object.entries(headers)) args.push('-H', `${k}: ${v}`);
  args.push(url);
  return new Promise((resolve, reject) => {
    execFile(WRK_BIN, args, { timeout: (seconds + 30) * 1000 }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`wrk failed: ${err.message}\n${stderr}`));
      try {
        resolve(parseLatency(stdout));
      } catch (e) {
        reject(e as Error);
      }
    });
  });
}

/** Walks `/v2/_catalog?n=<page>` along its `Link` headers; the names found and the seconds taken. */
export async function walkCatalog(url: string, page = 1000): Promise<{ names: number; seconds: number }> {
  const start = process.hrtime.bigint();
  let next: string | undefined = `/v2/_catalog?n=${page}`;
  let names = 0;
  while (next) {
    const r = await get(`${url}${next}`);
    if (r.status !== 200) throw new Error(`catalog page ${next}: ${r.status} ${r.body.toString().slice(0, 200)}`);
    names += (JSON.parse(r.body.toString()) as { repositories: string[] }).repositories.length;
    const link = r.headers.link;
    next = typeof link === 'string' ? /<([^>]+)>/.exec(link)?.[1] : undefined;
  }
  return { names, seconds: Number(process.hrtime.bigint() - start) / 1e9 };
}

/** Times `cmd args` to completion (output discarded). */
export function timeCommand(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const start = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], env });
    let err = '';
    child.stderr!.on('data', (c: Buffer) => void (err = (err + c.toString()).slice(-4096)));
    child.once('error', reject);
    child.once('exit', (code) =>
      code === 0 ? resolve(Number(process.hrtime.bigint() - start) / 1e9) : reject(new Error(`${cmd} ${args.join(' ')} exited ${code}: ${err}`)),
    );
  });
}
