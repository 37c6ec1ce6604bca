/**
 * Purging of abandoned uploads, as distribution's `registry/storage/purgeuploads.go` and the
 * purger `registry/handlers/app.go` starts from `storage.maintenance.uploadpurging` (enabled, age
 * 168h, interval 24h, dryrun false by default): every `repositories/**\/_uploads/<uuid>` whose
 * `startedat` is older than `age` is removed. An upload without a readable `startedat` is kept
 * (distribution dates it far in the future). The first run waits a random jitter of up to an hour,
 * as distribution's.
 */
import type { Logger } from 'winston';
import type { StorageDriver } from '../storage/driver.js';
import { listOrEmpty } from '../storage/blob-store.js';
import { isValidName } from '../distribution/reference.js';
import { throwIfStopping } from '../errors.js';
import { RESERVED_PREFIX, UPLOADS_ENTRY, repositoriesRoot, uploadDir, uploadStartedAtPath } from '../storage/paths.js';

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** What one purge found. */
interface PurgeResult {
  /** Upload directories removed (or, in a dry run, that would have been). */
  readonly deleted: string[];
  readonly errors: string[];
}

/**
 * Removes uploads started before `olderThan`; with `actuallyDelete` false only reports them.
 * `signal` (the registry's stop) ends the walk at its next directory with `StoppingError`.
 */
export async function purgeUploads(
  driver: StorageDriver,
  olderThan: Date,
  actuallyDelete: boolean,
  logger?: Logger,
  signal?: AbortSignal,
): Promise<PurgeResult> {
  logger?.info(`PurgeUploads starting: olderThan=${olderThan.toISOString()}, actuallyDelete=${actuallyDelete}`);
  const deleted: string[] = [];
  const errors: string[] = [];
  const walk = async (name: string): Promise<void> => {
    const dir = name === '' ? repositoriesRoot() : `${repositoriesRoot()}/${name}`;
    for (const entry of await listOrEmpty(driver, dir)) {
      throwIfStopping(signal, 'the purge of uploads');
      if (entry === UPLOADS_ENTRY) {
        for (const uuid of await listOrEmpty(driver, `${dir}/${entry}`)) {
          // Only the layout's own: a valid repository name and a UUID (no other value can name a path).
          const upload = UUID_RE.test(uuid) && isValidName(name) ? uploadDir(name, uuid) : undefined;
          if (!upload) continue;
          const startedAt = await readStartedAt(driver, uploadStartedAtPath(name, uuid), errors);
          if (!startedAt || startedAt >= olderThan) continue;
          logger?.info(
            `Upload files in ${upload} have older date (${startedAt.toISOString()}) than purge date (${olderThan.toISOString()}). Removing upload directory.`,
          );
          try {
            if (actuallyDelete) {
              // The data's pending write goes first: on S3 a multipart upload outlives its directory.
              await (await driver.writer(`${upload}/data`, { append: true }).catch(() => undefined))?.cancel();
              await driver.delete(upload);
            }
            deleted.push(upload);
          } catch (err) {
            errors.push(`${upload}: ${(err as Error).message}`);
          }
        }
        continue;
      }
      if (entry.startsWith(RESERVED_PREFIX)) continue;
      const child = name === '' ? entry : `${name}/${entry}`;
      if ((await driver.stat(`${dir}/${entry}`))?.isDir) await walk(child);
    }
  };
  await walk('');
  logger?.info(`Purge uploads finished. Num deleted=${deleted.length}, num errors=${errors.length}`);
  return { deleted, errors };
}

async function readStartedAt(driver: StorageDriver, path: string, errors: string[]): Promise<Date | undefined> {
  try {
    const text = (await driver.getContent(path)).toString('utf8').trim();
    // Go's time.RFC3339: `2006-01-02T15:04:05Z07:00`, optional fractional seconds.
    if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/.test(text)) throw new Error(`cannot parse ${JSON.stringify(text)} as RFC 3339`);
    return new Date(text);
  } catch (err) {
    errors.push(`${path}: ${(err as Error).message}`);
    return undefined;
  }
}

/** Options of the periodic purger. */
interface UploadPurgerOptions {
  readonly driver: StorageDriver;
  readonly agems: number;
  readonly intervalms: number;
  readonly dryrun: boolean;
  readonly logger: Logger;
  /** Delay before the first run; default a random whole number of minutes below 60 (distribution's jitter). */
  readonly firstRunMs?: number;
}

/** Runs `purgeUploads` after a jitter, then every `intervalms`. */
export class UploadPurger {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<unknown> = Promise.resolve();
  private stopped = false;
  private readonly stopping = new AbortController();

  constructor(private readonly options: UploadPurgerOptions) {}

  /** Schedules the runs (timers do not keep the process alive). */
  start(): void {
    const first = this.options.firstRunMs ?? Math.floor(Math.random() * 60) * 60_000;
    // distribution's line, with the settings as fields named after storage.maintenance.uploadpurging's keys.
    this.options.logger.info(`Starting upload purge in ${Math.round(first / 60_000)}m`, {
      'uploadpurging.age': `${this.options.agems / 3_600_000}h`,
      'uploadpurging.interval': `${this.options.intervalms / 3_600_000}h`,
      'uploadpurging.dryrun': this.options.dryrun,
    });
    this.schedule(first);
  }

  /** Runs one purge now. */
  runOnce(): Promise<PurgeResult> {
    const run = purgeUploads(this.options.driver, new Date(Date.now() - this.options.agems), !this.options.dryrun, this.options.logger, this.stopping.signal);
    this.running = run.catch(() => undefined);
    return run;
  }

  /** Cancels the next run and ends a running one at its next directory. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.stopping.abort();
    if (this.timer) clearTimeout(this.timer);
    await this.running;
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(
      () => {
        this.runOnce()
          .catch((err: Error) => this.options.logger.error('upload purge failed', { 'err.message': err.message }))
          .finally(() => this.schedule(Math.max(this.options.intervalms, 1000)));
        // Node's timers hold at most 2^31-1 ms (about 24 days); a longer wait is not a busy loop.
      },
      Math.min(ms, 2 ** 31 - 1),
    );
    this.timer.unref();
  }
}
