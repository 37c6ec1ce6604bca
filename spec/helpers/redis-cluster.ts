/**
 * A Redis Cluster as operators run one for distribution 3's go-redis cluster client: Debian
 * `redis-server`s in cluster mode on free loopback ports, their slots assigned by `redis-cli
 * --cluster create`, with replicas or without. Every wait is on the servers' own state (`CLUSTER
 * INFO` saying `cluster_state:ok` on each, `INFO replication`), never on a sleep.
 */
import { existsSync } from 'node:fs';
import { Redis } from 'ioredis';
import { spawnChild } from './children.js';
import { REDIS_SERVER_BIN, startRedis, type RedisServer } from './redis.js';
import { until } from './until.js';

/** Debian's `redis-cli`, which assigns the slots. */
export const REDIS_CLI_BIN = '/usr/bin/redis-cli';

/** True when Debian's redis-server and redis-cli are installed. */
export function clusterAvailable(): boolean {
  return existsSync(REDIS_SERVER_BIN) && existsSync(REDIS_CLI_BIN);
}

/** The cluster. */
export interface RedisCluster {
  /** Every node's `host:port` (over TLS, the announced host name's), for `redis.addrs`. */
  readonly addrs: readonly string[];
  readonly nodes: readonly RedisServer[];
  /** The node serving `key`'s slot (`CLUSTER KEYSLOT`, then `CLUSTER SLOTS`, asked of `via`, the first node by default). */
  nodeOf(key: string, via?: RedisServer): Promise<RedisServer>;
  /** Stops every node and removes their directories. */
  stop(): Promise<void>;
}

/** How the nodes speak: TLS only (`--tls-port`, the cluster bus too) with these files, and the host name they announce. */
export interface ClusterTls {
  readonly certificate: string;
  readonly key: string;
  readonly ca: string;
  /** Announced in `CLUSTER SLOTS` instead of the address (`cluster-preferred-endpoint-type hostname`). */
  readonly hostname: string;
}

/** Asks one node something, on a connection of its own (over TLS without verifying it: the test's own servers). */
async function ask<T>(node: RedisServer, fn: (r: Redis) => Promise<T>, tls?: ClusterTls): Promise<T> {
  const r = new Redis({
    host: node.host,
    port: node.port,
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    tls: tls && { rejectUnauthorized: false },
  });
  try {
    await r.connect();
    return await fn(r);
  } finally {
    r.disconnect();
  }
}

/**
 * Starts `primaries` nodes and makes them one cluster; with `replicas`, that many more nodes, each
 * a replica of one primary (`--cluster-replicas`), which the cluster promotes when its primary dies.
 */
export async function startRedisCluster(primaries = 3, replicas = 0, tls?: ClusterTls): Promise<RedisCluster> {
  // On CI the specs run whatever is installed: say what is missing rather than fail obscurely.
  if (!clusterAvailable()) throw new Error('this test needs redis-server and redis-cli: .ci/prerequisites installs them');
  const nodes: RedisServer[] = [];
  const stop = async (): Promise<void> => {
    await Promise.all(nodes.map((n) => n.stop()));
  };
  try {
    for (let i = 0; i < primaries * (1 + replicas); i++) {
      // Each node's cluster state file goes in its own directory (`--dir`).
      const cluster = ['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-node-timeout', '2000'];
      const secure = tls
        ? [
            ...['--tls-cert-file', tls.certificate, '--tls-key-file', tls.key, '--tls-ca-cert-file', tls.ca, '--tls-auth-clients', 'no'],
            ...[
              '--tls-cluster',
              'yes',
              '--tls-replication',
              'yes',
              '--cluster-announce-hostname',
              tls.hostname,
              '--cluster-preferred-endpoint-type',
              'hostname',
            ],
          ]
        : [];
      nodes.push(await startRedis({ tls: tls !== undefined, args: [...cluster, ...secure] }));
    }
    const addrs = nodes.map((n) => n.addr);
    const cliTls = tls ? ['--tls', '--insecure'] : [];
    const create = spawnChild(REDIS_CLI_BIN, [...cliTls, '--cluster', 'create', ...addrs, '--cluster-replicas', String(replicas), '--cluster-yes'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    create.process.stdout!.on('data', (c: Buffer) => (out += c.toString()));
    create.process.stderr!.on('data', (c: Buffer) => (out += c.toString()));
    const code = await create.exited;
    if (code !== 0) throw new Error(`redis-cli --cluster create exited with ${code}:\n${out}`);
    await until(
      async () => (await Promise.all(nodes.map((n) => ask(n, (r) => r.cluster('INFO'), tls)))).every((info) => /cluster_state:ok/.test(String(info))),
      'every node of the Redis Cluster to report cluster_state:ok',
      30_000,
    );
    // Each replica has taken its primary's data (the replication link is up).
    if (replicas > 0)
      await until(
        async () =>
          (await Promise.all(nodes.map((n) => ask(n, (r) => r.info('replication'), tls)))).every(
            (info) => !/role:slave/.test(info) || /master_link_status:up/.test(info),
          ),
        'every replica of the Redis Cluster to be linked to its primary',
        30_000,
      );
    return {
      // Over TLS the nodes are named by the host their certificate names.
      addrs: tls ? nodes.map((n) => `${tls.hostname}:${n.port}`) : addrs,
      nodes,
      nodeOf: async (key, via = nodes[0]!) => {
        const slot = await ask(via, (r) => r.cluster('KEYSLOT', key), tls);
        const slots = await ask(via, (r) => r.cluster('SLOTS'), tls);
        const owner = slots.find(([from, to]) => from <= Number(slot) && Number(slot) <= to);
        const node = owner && nodes.find((n) => n.port === owner[2]?.[1]);
        if (!node) throw new Error(`no node serves the slot of ${key}`);
        return node;
      },
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
