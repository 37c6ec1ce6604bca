/**
 * A registry process started with `bin/registry serve` (the built CLI), for tests that need real
 * separate processes: replicas sharing one storage root, crashes, signals. Every one is started by
 * `startRegistry` (through spec/helpers/children.ts: tracked, and killed however the test ends).
 */
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { spawnChild } from './children.js';
import type { FakeUpstream } from './fake-upstream.js';
import { getHashed } from './hashed-get.js';
import { answers } from './ports.js';
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
  /** Resolves with the exit code (null when ended by a signal) once the process has exited. */
  readonly exited: Promise<number | null>;
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

/** Starts a registry with `root` and `proxyYaml` lines under `proxy:`; its config goes into `dir`. */
export async function startReplica(dir: string, root: string, remoteurl: string, proxyYaml: string[] = [], options: ReplicaOptions = {}): Promise<Replica> {
  // Port 0, and the port read from the registry's log: a free port picked here and bound seconds
  // later (an S3 replica loads the AWS SDK first) may meanwhile be another socket's, and the
  // replica would then never answer.
  const config = join(dir, `replica-${++configs}-${process.pid}.yml`);
  const http = ['addr: 127.0.0.1:0', ...(options.debug ? ['debug:', '  addr: 127.0.0.1:0', '  prometheus:', '    enabled: true'] : [])];
  await writeFile(
    config,
    registryYaml({ root, storage: options.storage, level: 'info', http, proxy: [`remoteurl: ${remoteurl}`, ...proxyYaml], extra: options.extra }),
  );
  return startRegistry(config, undefined, options.env, options.debug);
}

let configs = 0;

/**
 * Starts `count` replicas at once with `start`; if one fails, those started are stopped before
 * the error is passed on, so no test is left with processes it has no handle on.
 */
export async function startReplicas(count: number, start: () => Promise<Replica>): Promise<Replica[]> {
  const settled = await Promise.allSettled(Array.from({ length: count }, () => start()));
  const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (!failed) return settled.map((s) => (s as PromiseFulfilledResult<Replica>).value);
  await Promise.all(settled.flatMap((s) => (s.status === 'fulfilled' ? [s.value.kill()] : [])));
  throw failed.reason;
}

/**
 * How long a start may take before it counts as failed: a condition waited for, not a speed
 * measured. What a start does before it listens is CPU work only (reading the bundle, loading the
 * AWS SDK's modules for S3, at most `redis.dialtimeout` for Redis; no storage request), and three
 * S3 + Redis replicas started at once on 2 busy cores took 13-16 s each at load 24 (most of it
 * loading the SDK), over 20 s at times in a whole-suite run. Start-up speed is measured in the bench.
 */
const START_DEADLINE_MS = 60_000;

/**
 * Runs `bin/registry serve <config>` (with `env` added to the environment) and resolves once
 * `<url>/v2/` answers; without `url`, the address is the one the registry logs it listens on (a
 * config with port 0 and `log.level` info or lower), and with `debug` the metrics URL is the debug
 * port it logs. If the process exits first, or does not answer within {@link START_DEADLINE_MS},
 * it is killed (and awaited) and the error carries its logs.
 */
export async function startRegistry(config: string, url?: string, env: NodeJS.ProcessEnv = {}, debug = false): Promise<Replica> {
  const child = spawnChild(process.execPath, [resolve('bin/registry'), 'serve', config], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });
  let logs = '';
  child.process.stdout!.on('data', (c: Buffer) => (logs += c.toString()));
  child.process.stderr!.on('data', (c: Buffer) => (logs += c.toString()));
  const deadline = Date.now() + START_DEADLINE_MS;
  /** Polls `found` until it gives a value; throws once the process has exited or the deadline passed. */
  const awaitStart = async <T>(what: string, found: () => Promise<T | undefined> | T | undefined): Promise<T> => {
    for (;;) {
      const value = await found();
      if (value !== undefined) return value;
      if (!child.alive()) throw new Error(`the registry exited (${await child.exited}) before ${what}`);
      if (Date.now() > deadline) throw new Error(`no ${what} within ${START_DEADLINE_MS} ms`);
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  let base: string;
  let metricsUrl: string | undefined;
  try {
    base = url ?? `http://${await awaitStart('"listening on" logged', () => /msg="listening on (\S+)"/.exec(logs)?.[1])}`;
    if (debug) {
      const port = await awaitStart('debug port logged', () => /msg="debug server listening on \S+ \(port (\d+)\)"/.exec(logs)?.[1]);
      metricsUrl = `http://127.0.0.1:${port}/metrics`;
    }
    await awaitStart(`an answer from ${base}/v2/`, async () => ((await answers(`${base}/v2/`)) ? true : undefined));
  } catch (err) {
    await child.kill();
    throw new Error(`${(err as Error).message}\n${logs}`);
  }
  return {
    url: base,
    pid: child.pid,
    process: child.process,
    exited: child.exited,
    metricsUrl,
    logs: () => logs,
    alive: child.alive,
    kill: child.kill,
    // A long grace: a clean stop is what the tests check (one that hangs is killed 30 s later).
    stop: () => child.stop(30_000),
  };
}

/**
 * The warnings and errors the replicas logged (configuration warnings left out), each line under
 * its replica's number: for the message of a failed expectation, which says why a replica answered
 * as it did without a rerun.
 */
export function replicaProblems(replicas: readonly Replica[]): string {
  return replicas
    .flatMap((r, i) =>
      r
        .logs()
        .split('\n')
        .filter((l) => /level=(warning|error)/.test(l) && !/configuration key/.test(l))
        .map((l) => `replica ${i}: ${l}`),
    )
    .join('\n');
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

/** A metric's value as the replica's Prometheus endpoint reports it (started with `debug`); NaN when absent. */
export async function replicaMetric(replica: Replica, name: string): Promise<number> {
  const text = await (await fetch(replica.metricsUrl!)).text();
  return Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1]);
}

/**
 * Six concurrent cold pulls of a new blob of `bytes`, alternating between the first two replicas,
 * the upstream answering each `GET` of it after `delayMs` (so that they overlap): every client must
 * get the whole blob. Resolves with the number of upstream fetches they made.
 */
export async function concurrentColdPulls(upstream: FakeUpstream, replicas: readonly Replica[], bytes: number, delayMs: number): Promise<number> {
  const blob = upstream.addBlob('library/app', randomBytes(bytes));
  const gets = new RegExp(`^GET /v2/library/app/blobs/${blob}$`);
  upstream.fault(gets, { kind: 'delay', ms: delayMs });
  const results = await Promise.all([0, 1, 0, 1, 0, 1].map((i) => getHashed(`${replicas[i]!.url}/v2/library/app/blobs/${blob}`)));
  for (const res of results) expect(res).toEqual({ status: 200, digest: blob, bytes, complete: true });
  return upstream.count(gets);
}
