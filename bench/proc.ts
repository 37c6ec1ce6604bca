/** Server processes the bench starts on 127.0.0.1, with their pid for memory readings. */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { waitForHttp } from '../spec/helpers/ports.js';
import { onCleanup } from './cleanup.js';

/** A running server process. */
export interface ServerProcess {
  readonly name: string;
  readonly pid: number;
  readonly url: string;
  readonly hostPort: string;
  /** The last 64 KiB the process wrote to stdout/stderr. */
  logs(): string;
  /** Peak resident set size so far (VmHWM), in bytes. */
  peakRss(): Promise<number>;
  /** Current resident set size (VmRSS), in bytes. */
  rss(): Promise<number>;
  /** CPU time (user + system, all threads) used so far, in seconds. */
  cpuSeconds(): Promise<number>;
  /** SIGTERM, then SIGKILL after 5 s. */
  stop(): Promise<void>;
}

/** Reads one `kB` field of /proc/<pid>/status, in bytes. */
export async function procStatusBytes(pid: number, field: 'VmHWM' | 'VmRSS'): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status);
  if (!m) throw new Error(`no ${field} for pid ${pid}`);
  return Number(m[1]) * 1024;
}

/** User + system CPU seconds of `pid` (fields 14 and 15 of /proc/<pid>/stat, in clock ticks of 1/100 s). */
export async function procCpuSeconds(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** Spawns `cmd args` and resolves once `hostPort` answers `readyPath` over HTTP. */
export async function startServer(opts: {
  name: string;
  cmd: string;
  args: string[];
  env?: NodeJS.ProcessEnv;
  hostPort: string;
  readyPath: string;
}): Promise<ServerProcess> {
  let logs = '';
  const child: ChildProcess = spawn(opts.cmd, opts.args, { stdio: ['ignore', 'pipe', 'pipe'], env: opts.env });
  const keep = (c: Buffer): void => {
    logs = (logs + c.toString()).slice(-65536);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  // A command that cannot be spawned emits 'error' and no 'exit'.
  const exited = new Promise<void>((r) => {
    child.once('exit', () => r());
    child.once('error', (err) => {
      keep(Buffer.from(String(err)));
      r();
    });
  });
  const kill = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  };
  const stop = onCleanup(kill);
  const url = `http://${opts.hostPort}`;
  try {
    await Promise.race([
      waitForHttp(`${url}${opts.readyPath}`, 20_000),
      exited.then(() => {
        throw new Error('exited at start-up');
      }),
    ]);
  } catch (err) {
    await stop();
    throw new Error(`${opts.name} did not start: ${(err as Error).message}\n${logs}`);
  }
  return {
    name: opts.name,
    pid: child.pid!,
    url,
    hostPort: opts.hostPort,
    logs: () => logs,
    peakRss: () => procStatusBytes(child.pid!, 'VmHWM'),
    rss: () => procStatusBytes(child.pid!, 'VmRSS'),
    cpuSeconds: () => procCpuSeconds(child.pid!),
    stop,
  };
}
