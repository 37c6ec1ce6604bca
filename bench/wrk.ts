/** wrk, the load generator for the request-rate scenarios: runs it and parses its summary. */
import { execFile } from 'node:child_process';
import { WRK_BIN } from './prereqs.js';

/** What one wrk run measured. */
export interface WrkResult {
  readonly requestsPerSec: number;
  readonly bytesPerSec: number;
  readonly requests: number;
  /** Non-2xx/3xx answers plus socket errors: a run with any is not comparable. */
  readonly errors: number;
}

const UNITS: Record<string, number> = { B: 1, KB: 1024, MB: 1024 ** 2, GB: 1024 ** 3, TB: 1024 ** 4 };

/** Parses wrk's text summary. */
export function parseWrk(out: string): WrkResult {
  const num = (re: RegExp): number => Number(re.exec(out)?.[1] ?? 0);
  const transfer = /Transfer\/sec:\s+([\d.]+)(\w+)/.exec(out);
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const socketErrors = socket ? socket.slice(1).reduce((n, v) => n + Number(v), 0) : 0;
  if (!/Requests\/sec:/.test(out)) throw new Error(`unexpected wrk output:\n${out}`);
  return {
    requestsPerSec: num(/Requests\/sec:\s+([\d.]+)/),
    bytesPerSec: transfer ? Number(transfer[1]) * (UNITS[transfer[2]!] ?? 1) : 0,
    requests: num(/(\d+) requests in/),
    errors: num(/Non-2xx or 3xx responses: (\d+)/) + socketErrors,
  };
}

/** Runs wrk against `url` with `connections` over `threads` threads for `seconds`. */
export function runWrk(url: string, opts: { connections: number; threads: number; seconds: number; headers?: Record<string, string> }): Promise<WrkResult> {
  const args = [`-t${opts.threads}`, `-c${opts.connections}`, `-d${opts.seconds}s`, '--timeout', '10s'];
  for (const [k, v] of Object.entries(opts.headers ?? {})) args.push('-H', `${k}: ${v}`);
  args.push(url);
  return new Promise((resolve, reject) => {
    execFile(WRK_BIN, args, { timeout: (opts.seconds + 30) * 1000 }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`wrk failed: ${err.message}\n${stderr}`));
      try {
        resolve(parseWrk(stdout));
      } catch (e) {
        reject(e as Error);
      }
    });
  });
}
