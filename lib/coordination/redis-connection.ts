/**
 * The connection of one replica to the cache's Redis (`redis:`), with ioredis: one multiplexed
 * command connection and, on first use, one for pub/sub. Commands never queue while Redis is
 * unreachable (`enableOfflineQueue: false`): they fail at once, so a replica goes on serving its
 * cache and fetching without coordination instead of holding requests, and says so (the `down`
 * and `up` callbacks: a log line and `registry_mirror_redis_up`). ioredis reconnects on its own,
 * backing off from `minretrybackoff` to `maxretrybackoff`. With a Sentinel `mastername` it asks the
 * Sentinels for the primary on every (re)connection: a primary that dies closes the connection,
 * and one demoted under it refuses writes (`READONLY`), which reconnects. With several `addrs` and
 * no `mastername`, a Redis Cluster (ioredis's `Cluster`, as go-redis's universal client): every key
 * of this cache carries the hash tag `{<prefix>}`, so that they are all in one slot, which the
 * leases' scripts need (their keys must be on one node); a release is published cluster-wide.
 * (ioredis's `failoverDetector` is not used: its disconnect on `+switch-master`, racing a
 * reconnection already under way, left a connection that never came back in 2 of 5 failovers.)
 */
import { readFileSync } from 'node:fs';
import { Cluster, Redis, type RedisOptions } from 'ioredis';
import type { RedisConfig } from '../config/types.js';

/** What the connection reports. */
export interface RedisConnectionEvents {
  /** Redis became unreachable (once per outage). */
  down?(reason: string): void;
  /** Redis is reachable (again). */
  up?(): void;
}

/** A replica's connection to Redis. */
export class RedisConnection {
  readonly client: Redis | Cluster;
  private subscriber?: Redis | Cluster;
  private readonly handlers = new Map<string, Set<(message: string) => void>>();
  private reachable = false;
  private reportedDown = false;
  /** A cluster's liveness probe (see the constructor). */
  private readonly probe?: NodeJS.Timeout;

  constructor(
    readonly config: RedisConfig,
    private readonly events: RedisConnectionEvents = {},
  ) {
    this.client = this.connect();
    this.client.on('ready', () => {
      this.reachable = true;
      this.reportedDown = false;
      this.events.up?.();
    });
    this.client.on('error', (err: Error) => this.lost(err.message));
    this.client.on('close', () => this.lost('connection closed'));
    // A cluster client learns that its nodes are gone only from a command: without one a second,
    // an idle replica would go on reporting Redis up (the metric, the log) through an outage.
    if (config.cluster) {
      this.probe = setInterval(() => void this.client.ping().catch(() => undefined), 1000);
      this.probe.unref();
    }
  }

  private options(): RedisOptions {
    const c = this.config;
    const min = Math.max(1, c.minretrybackoffms);
    const max = Math.max(min, c.maxretrybackoffms);
    const retryStrategy = (times: number): number => Math.min(max, min * 2 ** Math.min(times, 20));
    const tls = c.tls && {
      cert: c.tls.certificate ? readFileSync(c.tls.certificate) : undefined,
      key: c.tls.key ? readFileSync(c.tls.key) : undefined,
      ca: c.tls.rootcas.length > 0 ? c.tls.rootcas.map((f) => readFileSync(f)) : undefined,
    };
    const s = c.sentinel;
    return {
      ...(s
        ? {
            sentinels: s.sentinels.map((n) => ({ host: n.host, port: n.port })),
            name: s.mastername,
            sentinelUsername: s.username,
            sentinelPassword: s.password,
            // As go-redis's failover client: the TLS settings apply to the Sentinels too.
            enableTLSForSentinelMode: tls !== undefined,
            sentinelTLS: tls,
            sentinelRetryStrategy: retryStrategy,
            sentinelCommandTimeout: c.readtimeoutms,
            // A primary demoted under us answers writes with READONLY: reconnect (to the new one) and resend.
            reconnectOnError: (err: Error) => (err.message.startsWith('READONLY') ? 2 : false),
          }
        : { host: c.host, port: c.port }),
      username: c.username,
      password: c.password,
      db: c.db,
      connectionName: c.clientname,
      connectTimeout: c.dialtimeoutms,
      // ioredis has one timeout for a command's round trip: the longer of the two.
      commandTimeout: Math.max(c.readtimeoutms, c.writetimeoutms),
      maxRetriesPerRequest: Math.max(0, c.maxretries),
      enableOfflineQueue: false,
      retryStrategy,
      tls,
    };
  }

  /** A connection: to the one server or the Sentinels' primary, or a cluster client (`overrides` apply to each node). */
  private connect(overrides: Partial<RedisOptions> = {}): Redis | Cluster {
    const options = { ...this.options(), ...overrides };
    const cluster = this.config.cluster;
    if (!cluster) return new Redis(options);
    const { retryStrategy, enableOfflineQueue, db: _db, host: _host, port: _port, ...node } = options;
    return new Cluster(
      cluster.nodes.map((n) => ({ host: n.host, port: n.port })),
      {
        // Commands fail at once while the cluster is unreachable, as with one server.
        enableOfflineQueue,
        clusterRetryStrategy: retryStrategy,
        // Nodes are connected to by the name given (the connection resolves it), not by an address
        // looked up first: with TLS the certificate names the host (ElastiCache in cluster mode).
        dnsLookup: (address, callback) => callback(null, address),
        redisOptions: node,
      },
    );
  }

  private lost(reason: string): void {
    this.reachable = false;
    if (this.reportedDown) return;
    this.reportedDown = true;
    this.events.down?.(reason);
  }

  /** True while the command connection is up. */
  get available(): boolean {
    return this.reachable;
  }

  /** `<prefix>:<name>`, on a cluster `{<prefix>}:<name>` (one slot): every key of this cache. */
  key(name: string): string {
    return this.config.cluster ? `{${this.config.prefix}}:${name}` : `${this.config.prefix}:${name}`;
  }

  /** Waits until Redis answers, at most `ms`; false when it did not (the replica starts regardless). */
  async ready(ms: number): Promise<boolean> {
    const deadline = Date.now() + ms;
    while (Date.now() < deadline) {
      if (
        this.client.status === 'ready' &&
        (await this.client.ping().then(
          () => true,
          () => false,
        ))
      )
        return true;
      await new Promise((r) => setTimeout(r, 50));
    }
    return false;
  }

  /** Calls `handler` with each message published on `channel` (re-subscribed after a reconnect). */
  subscribe(channel: string, handler: (message: string) => void): () => void {
    let set = this.handlers.get(channel);
    if (!set) {
      set = new Set();
      this.handlers.set(channel, set);
      this.subscriberConnection()
        .subscribe(channel)
        .catch(() => undefined);
    }
    set.add(handler);
    return () => set!.delete(handler);
  }

  private subscriberConnection(): Redis | Cluster {
    if (this.subscriber) return this.subscriber;
    // Subscriptions wait for the connection: the offline queue is on for this one.
    const sub = this.connect({ enableOfflineQueue: true, maxRetriesPerRequest: null, commandTimeout: undefined });
    sub.on('error', () => undefined);
    sub.on('message', (channel: string, message: string) => {
      for (const h of this.handlers.get(channel) ?? []) h(message);
    });
    this.subscriber = sub;
    return sub;
  }

  async close(): Promise<void> {
    clearInterval(this.probe);
    const quit = (r: Redis | Cluster): Promise<unknown> => r.quit().catch(() => r.disconnect());
    await Promise.all([quit(this.client), this.subscriber ? quit(this.subscriber) : undefined]);
  }
}
