/**
 * The background work whose size is the cache's, started at once so that requests never wait for
 * it: removing what dead processes left in storage (at start-up, then every minute), loading the
 * expiry schedule, and one walk of the storage that fills the link index and measures the cache for
 * the size cap. One stop ends all of it at its next step.
 */
import type { Logger } from 'winston';
import type { StorageDriver } from '../storage/driver.js';
import type { RepositoryStore } from '../storage/repository-store.js';
import { walkLinks, type LinkIndex } from '../storage/link-index.js';
import { StoppingError } from '../errors.js';
import type { CacheLifetime } from '../expiry/cache-lifetime.js';
import type { SizeCap } from '../retention/size-cap.js';

/** How often temporary files of processes that died are looked for while serving. */
const TEMP_CLEANUP_INTERVAL_MS = 60_000;

/** What the background work runs on. */
interface BackgroundParts {
  readonly driver: StorageDriver;
  readonly repository: (name: string) => RepositoryStore;
  readonly links: LinkIndex;
  readonly lifetime: CacheLifetime;
  readonly sizeCap: SizeCap;
  readonly logger: Logger;
}

/** The background work under way. */
interface Background {
  /** Settles when the start-up work (schedule load, walk of the storage) is done, or was stopped. */
  readonly started: Promise<void>;
  /** Ends it all at its next step (the janitor at once, expiries and the walk when they see `signal`). */
  halt(): Promise<void>;
}

/**
 * Starts the janitor of dead processes' temporary files, then the schedule's load and the walk.
 * `stopping` is the registry's stop: every background loop watches its signal.
 */
export function startBackground(parts: BackgroundParts, stopping: AbortController): Background {
  const { driver, repository, links, lifetime, sizeCap, logger } = parts;
  // Housekeeping only: it removes what dead processes left, never this one's, and a store that
  // cannot be reached now must not keep the registry from starting.
  void (driver.cleanup?.() ?? Promise.resolve(0)).then(
    (removed) => void (removed > 0 && logger.info('removed unfinished temporary files left by an earlier run', { files: removed })),
    (err: Error) => void logger.warn('could not remove what earlier runs left in storage', { 'err.message': err.message }),
  );
  // And while serving: a replica on the volume may die any time (its pid then reused, or a zombie).
  const janitor = setInterval(() => {
    driver.cleanup?.().then(
      (n) => n > 0 && logger.info('removed temporary files of processes that died', { files: n }),
      (err: Error) => logger.warn('could not remove temporary files of dead processes', { 'err.message': err.message }),
    );
  }, TEMP_CLEANUP_INTERVAL_MS);
  janitor.unref();
  // The schedule loads (expiries then run as their data's links are known), then one walk of the
  // storage fills the link index and measures the cache for the size cap.
  const started = (async () => {
    const began = Date.now();
    const loaded = await lifetime.start();
    if (loaded.problem) logger.warn(`scheduler state: ${loaded.problem}`);
    if (loaded.loaded !== undefined) logger.info('schedule loaded', { entries: loaded.loaded, 'duration.ms': Date.now() - began });
    const walk = await walkLinks(
      driver,
      repository,
      async (repo, digest, type) => {
        links.linked(repo, digest.value);
        await sizeCap.found(repo, digest, type);
      },
      stopping.signal,
      async (name, repo) => links.tagsOf(name, { count: (await repo.tagNames()).length }),
    );
    links.markBuilt();
    logger.info('cache walked', { repositories: walk.repositories, links: walk.links });
    await sizeCap.measuredAll();
  })().catch((err: Error) => {
    // The link index lives in memory only: the next start walks the cache again.
    if (err instanceof StoppingError) return void logger.info('start-up work on the cache interrupted', { 'err.message': err.message });
    logger.error('start-up work on the cache failed', { 'err.message': err.message });
  });
  return {
    started,
    halt: async () => {
      clearInterval(janitor);
      stopping.abort();
      await lifetime.halt();
      // Every step of it watches the signal: it ends at its next one.
      await started;
    },
  };
}
