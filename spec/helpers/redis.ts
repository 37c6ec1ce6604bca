/**
 * Debian's `redis-server`, started by a test on a free loopback port with a directory of its own
 * (no persistence, nothing on 6379), killed and restarted on the same port to play an outage.
 */
import { spawnChild, type Child } from './children.js';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './ports.js';

export const REDIS_SERVER_BIN = '/usr/bin/redis-server';

/** True when Debian's redis-server is installed. */
export function redisAvailable(): boolean {
  return existsSync(REDIS_SERVER_BIN);
}

/** A running redis-server. */
export interface RedisServer {
  readonly host: string;
  readonly port: number;
  /** `127.0.0.1:<port>`, for `redis.addr`. */
  readonly addr: string;
  /** SIGKILL (an outage); `start()` brings it back on the same port, empty. */
  kill(): Promise<void>;
  start(): Promise<void>;
  /** Stops it and removes its directory. */
  stop(): Promise<void>;
}

/** Resolves once something accepts connections on `port`. */
async function listening(port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`redis-server did not listen on ${port} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** How to start it: more arguments (`--replicaof`, TLS files), and whether its port speaks TLS only. */
export interface RedisOptions {
  readonly args?: readonly string[];
  /** The port is `--tls-port` (plain `--port 0`); `args` then names the certificate files. */
  readonly tls?: boolean;
}

/** Starts a redis-server. */
export async function startRedis(options: RedisOptions = {}): Promise<RedisServer> {
  const port = await freePort();
  const dir = await mkdtemp(join(tmpdir(), 'redis-'));
  let child: Child | undefined;
  let logs = '';
  const start = async (): Promise<void> => {
    const ports = options.tls ? ['--port', '0', '--tls-port', String(port)] : ['--port', String(port)];
    const started = spawnChild(
      REDIS_SERVER_BIN,
      [
        ...ports,
        '--bind',
        '127.0.0.1',
        '--dir',
        dir,
        '--save',
        '',
        '--appendonly',
        'no',
        '--daemonize',
        'no',
        '--loglevel',
        'warning',
        ...(options.args ?? []),
      ],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    child = started;
    started.process.stdout!.on('data', (c: Buffer) => (logs += c.toString()));
    started.process.stderr!.on('data', (c: Buffer) => (logs += c.toString()));
    // A test run that dies must not leave it behind (spawnChild kills it when the worker exits).
    started.process.unref();
    try {
      await listening(port, 10_000);
    } catch (err) {
      await started.kill();
      throw new Error(`${(err as Error).message}\n${logs}`);
    }
  };
  const kill = async (): Promise<void> => {
    const c = child;
    child = undefined;
    await c?.kill();
  };
  await start();
  return {
    host: '127.0.0.1',
    port,
    addr: `127.0.0.1:${port}`,
    kill,
    start,
    stop: async () => {
      await kill();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
