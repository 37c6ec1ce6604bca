/**
 * A highly available Redis as operators run it: a primary, a replica of it, and three Debian
 * `redis-sentinel`s (quorum 2) watching them, all on free loopback ports. Every wait is on the
 * Sentinels' and servers' own state (`SENTINEL get-master-addr-by-name`, `INFO replication`),
 * never on a sleep, with generous deadlines.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { spawnChild, type Child } from './children.js';
import { freePort } from './ports.js';
import { REDIS_SERVER_BIN, startRedis, type RedisServer } from './redis.js';
import { until } from './until.js';

/** Debian's `redis-sentinel` (the server binary in Sentinel mode). */
export const REDIS_SENTINEL_BIN = '/usr/bin/redis-sentinel';

/** True when Debian's redis-sentinel and redis-server are installed. */
export function sentinelAvailable(): boolean {
  return existsSync(REDIS_SENTINEL_BIN) && existsSync(REDIS_SERVER_BIN);
}

/** The group. */
export interface SentinelGroup {
  readonly mastername: string;
  /** The Sentinels' `host:port`, for `redis.addrs`. */
  readonly addrs: readonly string[];
  readonly primary: RedisServer;
  readonly replica: RedisServer;
  /** The primary's `host:port` as every Sentinel names it (throws while they disagree). */
  masterAddr(): Promise<string>;
  /** Waits until every Sentinel names `addr` the primary and that server says it is one. */
  waitForPrimary(addr: string, ms: number): Promise<void>;
  /** Stops every process and removes their directories. */
  stop(): Promise<void>;
}

/** Asks one server or Sentinel something, on a connection of its own. */
async function ask<T>(port: number, command: string, ...args: string[]): Promise<T> {
  const r = new Redis({
    host: '127.0.0.1',
    port,
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    connectTimeout: 2000,
    retryStrategy: () => null,
  });
  r.on('error', () => undefined);
  try {
    await r.connect();
    return (await r.call(command, ...args)) as T;
  } finally {
    r.disconnect();
  }
}

const field = (info: string, name: string): string | undefined => new RegExp(`^${name}:(.*)$`, 'm').exec(info)?.[1]?.trim();

/** Starts the group and waits until the Sentinels know the replica and each other. */
export async function startSentinelGroup(mastername = 'mirror-primary'): Promise<SentinelGroup> {
  const primary = await startRedis();
  const replica = await startRedis({ args: ['--replicaof', '127.0.0.1', String(primary.port)] });
  const dir = await mkdtemp(join(tmpdir(), 'sentinels-'));
  const sentinels: { port: number; child: Child; logs: () => string }[] = [];
  const stop = async (): Promise<void> => {
    await Promise.all(sentinels.map(({ child }) => child.kill()));
    await Promise.all([primary.stop(), replica.stop()]);
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await until(async () => field(await ask<string>(replica.port, 'INFO', 'replication'), 'master_link_status') === 'up', 'the replica to sync', 30_000);
    for (let i = 0; i < 3; i++) {
      const port = await freePort();
      const conf = join(dir, `sentinel-${i}.conf`);
      // Sentinel rewrites its file: each has its own, in a directory of its own.
      await writeFile(
        conf,
        [
          `port ${port}`,
          'bind 127.0.0.1',
          `dir ${dir}`,
          `sentinel monitor ${mastername} 127.0.0.1 ${primary.port} 2`,
          `sentinel down-after-milliseconds ${mastername} 1000`,
          `sentinel failover-timeout ${mastername} 10000`,
          `sentinel parallel-syncs ${mastername} 1`,
          '',
        ].join('\n'),
      );
      // Tracked (spec/helpers/children.ts): killed with the test worker however the test ends.
      const child = spawnChild(REDIS_SENTINEL_BIN, [conf, '--loglevel', 'warning'], { stdio: ['ignore', 'pipe', 'pipe'] });
      let logs = '';
      child.process.stdout!.on('data', (c: Buffer) => (logs += c.toString()));
      child.process.stderr!.on('data', (c: Buffer) => (logs += c.toString()));
      sentinels.push({ port, child, logs: () => logs });
    }
    // Each Sentinel has found the two others (hello messages) and the replica (from the primary).
    for (const s of sentinels) {
      await until(
        async () => {
          const others = await ask<unknown[]>(s.port, 'SENTINEL', 'SENTINELS', mastername).catch(() => []);
          const replicas = await ask<string[][]>(s.port, 'SENTINEL', 'REPLICAS', mastername).catch(() => []);
          const ok = replicas.some((r) => r[r.indexOf('port') + 1] === String(replica.port) && !/s_down|disconnected/.test(r[r.indexOf('flags') + 1] ?? ''));
          return others.length === 2 && ok;
        },
        `Sentinel ${s.port} to know the group (${s.logs()})`,
        60_000,
      );
    }
  } catch (err) {
    await stop();
    throw err;
  }
  const masterAddr = async (): Promise<string> => {
    const named = await Promise.all(
      sentinels.map(async (s) => (await ask<string[] | null>(s.port, 'SENTINEL', 'GET-MASTER-ADDR-BY-NAME', mastername))?.join(':')),
    );
    if (new Set(named).size !== 1) throw new Error(`the Sentinels disagree: ${named.join(', ')}`);
    return named[0]!;
  };
  return {
    mastername,
    addrs: sentinels.map((s) => `127.0.0.1:${s.port}`),
    primary,
    replica,
    masterAddr,
    waitForPrimary: async (addr, ms) => {
      const port = Number(addr.split(':')[1]);
      await until(
        async () => (await masterAddr().catch(() => '')) === addr && field(await ask<string>(port, 'INFO', 'replication').catch(() => ''), 'role') === 'master',
        `every Sentinel to name ${addr} the primary`,
        ms,
      );
    },
    stop,
  };
}
