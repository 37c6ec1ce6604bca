/**
 * How the replicas on one storage coordinate: through Redis when `redis:` is configured (any
 * storage), else through the volume's lock directories (filesystem), else not at all (S3 without
 * Redis: one replica). ioredis is loaded only when `redis:` is configured.
 */
import type { Logger } from 'winston';
import type { Config, RedisConfig } from '../config/types.js';
import { createSharedLocks } from '../storage/factory.js';
import type { SharedLocks } from '../storage/shared-lock.js';
import { SCHEDULER_LEASE_KEY } from '../storage/paths.js';
import type { RedisConnection } from '../coordination/redis-connection.js';
import type { Metrics } from '../metrics/metrics.js';

/** The replicas' locks, and the Redis connection they use (closed last on a stop). */
interface Coordination {
  readonly locks?: SharedLocks;
  readonly redis?: RedisConnection;
}

/** Connects what `config` names for coordinating replicas. */
export async function createCoordination(config: Config, lockStaleMs: number, metrics: Metrics, logger: Logger): Promise<Coordination> {
  const lockLost = (key: string, err: Error): void =>
    void logger.warn('shared lock lost: another replica may fetch the same content', { key, 'err.message': err.message });
  if (!config.redis) return { locks: createSharedLocks(config.storage, lockStaleMs, lockLost) };
  const redis = await connectRedis(config.redis, metrics, logger);
  return { redis, locks: await redisLocks(redis, lockStaleMs, metrics, logger, lockLost) };
}

/**
 * The connection to the cache's Redis, waited for up to `redis.dialtimeout` at start-up: the
 * replica starts without it too (serving its cache, fetching without coordination) and says so.
 */
async function connectRedis(config: RedisConfig, metrics: Metrics, logger: Logger): Promise<RedisConnection> {
  const { RedisConnection } = await import('../coordination/redis-connection.js');
  const addrs = (nodes: readonly { host: string; port: number }[]): string => nodes.map((n) => `${n.host}:${n.port}`).join(', ');
  const where = config.sentinel
    ? `primary ${config.sentinel.mastername} (Sentinels ${addrs(config.sentinel.sentinels)})`
    : config.cluster
      ? `Cluster (${addrs(config.cluster.nodes)})`
      : `${config.host}:${config.port}`;
  metrics.redisUp.set(0);
  const connection = new RedisConnection(config, {
    down: (reason) => {
      metrics.redisUp.set(0);
      logger.warn(
        `Redis ${where} unreachable (${reason}): serving the cache and fetching from the upstream without coordination across replicas until it answers again`,
      );
    },
    up: () => {
      metrics.redisUp.set(1);
      logger.info(`Redis ${where} connected: replicas coordinate through it (one upstream fetch per blob, one expiry runner)`);
    },
  });
  await connection.ready(config.dialtimeoutms);
  return connection;
}

/** The replicas' locks as Redis leases; the expiry lease is never held without Redis. */
async function redisLocks(
  redis: RedisConnection,
  staleMs: number,
  metrics: Metrics,
  logger: Logger,
  lost: (key: string, err: Error) => void,
): Promise<SharedLocks> {
  const { RedisLocks } = await import('../coordination/redis-locks.js');
  return new RedisLocks(
    redis,
    staleMs,
    {
      compromised: lost,
      uncoordinated: (key, err) => {
        metrics.uncoordinated.inc();
        logger.debug('fetched without coordination: Redis did not answer', { key, 'err.message': err.message });
      },
    },
    (key) => key === SCHEDULER_LEASE_KEY,
  );
}
