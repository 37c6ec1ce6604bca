/**
 * A registry process started with `bin/registry serve` (the built CLI), for tests that need real
 * separate processes: replicas sharing one storage root, crashes.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { freePort, waitForHttp } from './ports.js';
import { registryYaml } from './registry-yaml.js';

/** A running registry process. */
export interface Replica {
  readonly url: string;
  readonly pid: number;
  readonly process: ChildProcess;
  /** The metrics endpoint (`http.debug` with Prometheus), when started with `debug`. */
  readonly metricsUrl?: string;
  logs(): string;
  /** True until the process exits. */
  alive(): boolean;
  /** SIGKILL, and wait for the exit. */
  kill(): Promise<void>;
  /** SIGTERM (a clean stop), and wait for the exit. */
  stop(): Promise<void>;
}

/** More of a replica's configuration. */
export interface ReplicaOptions {
  /** Lines of a storage driver under `storage:` instead of `filesystem` at `root` (S3). */
  readonly storage?: readonly string[];
  /** More top-level YAML (`redis:`). */
  readonly extra?: readonly string[];
  /** Serve the metrics on a debug port of its own. */
  readonly debug?: boolean;
  /** More environment variables of the process (`NODE_EXTRA_CA_CERTS`). */
  readonly env?: NodeJS.ProcessEnv;
}

/** Starts a registry on a free port with `root` and `proxyYaml` lines under `proxy:`; its config goes into `dir`. */
export async function startReplica(dir: string, root: string, remoteurl: string, proxyYaml: string[] = [], options: ReplicaOptions = {}): Promise<Replica> {
  const port = await freePort();
  const debugPort = options.debug ? await freePort() : undefined;
  const config = join(dir, `replica-${port}.yml`);
  const http = [`addr: 127.0.0.1:${port}`, ...(debugPort ? ['debug:', `  addr: 127.0.0.1:${debugPort}`, '  prometheus:', '    enabled: true'] : [])];
  await writeFile(config, registryYaml({ root, storage: options.storage, level: 'info', http, proxy: [`remoteurl: ${remoteurl}`, ...proxyYaml], extra: options.extra }));
  const child = spawn(process.execPath, [resolve('bin/registry'), 'serve', config], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...options.env } });
  let logs = '';
  child.stdout!.on('data', (c: Buffer) => (logs += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (logs += c.toString()));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const url = `http://127.0.0.1:${port}`;
  await waitForHttp(`${url}/v2/`, 20_000).catch((err: Error) => {
    child.kill('SIGKILL');
    throw new Error(`${err.message}\n${logs}`);
  });
  const alive = (): boolean => child.exitCode === null && child.signalCode === null;
  return {
    url,
    pid: child.pid!,
    process: child,
    metricsUrl: debugPort ? `http://127.0.0.1:${debugPort}/metrics` : undefined,
    logs: () => logs,
    alive,
    kill: async () => {
      if (alive()) child.kill('SIGKILL');
      await exited;
    },
    stop: async () => {
      if (alive()) child.kill('SIGTERM');
      await exited;
    },
  };
}

/**
 * Stops `replicas` after a test; with `DUMP_REPLICA_LOGS=<file>` their logs are appended to the
 * file first, under the test's name.
 */
export async function stopReplicas(replicas: readonly Replica[], testName: string | undefined): Promise<void> {
  const dump = process.env.DUMP_REPLICA_LOGS;
  if (dump) {
    const { appendFileSync } = await import('node:fs');
    replicas.forEach((r, i) => appendFileSync(dump, `=== ${testName} replica ${i}\n${r.logs()}\n`));
  }
  await Promise.all(replicas.map((r) => r.stop()));
}
