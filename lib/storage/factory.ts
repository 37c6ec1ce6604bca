/**
 * The one place a storage driver is made from configuration (distribution's `factory.Create`), and
 * the locks that come with it: replicas on one filesystem volume coordinate through lock
 * directories on it; an object store has no such primitive, so on S3 the locks are this process's
 * own (its in-flight maps) until replicas coordinate through Redis.
 */
import type { StorageConfig, StorageMiddleware } from '../config/types.js';
import type { StorageDriver } from './driver.js';
import { FilesystemDriver } from './filesystem.js';
import { applyStorageMiddleware } from './middleware.js';
import { DirectoryLocks, type SharedLocks } from './shared-lock.js';

/**
 * The configured driver, wrapped in the storage middlewares listed (`middleware.storage`, which
 * change only where blobs are redirected to; `warn` hears of one that cannot work on the driver).
 * The S3 driver (and the AWS SDK, a few hundred modules) is loaded only when configured: a
 * filesystem start would otherwise spend most of its time loading it.
 */
export async function createDriver(
  storage: StorageConfig,
  middleware: readonly StorageMiddleware[] = [],
  warn: (message: string) => void = () => undefined,
): Promise<StorageDriver> {
  let driver: StorageDriver;
  if (storage.driver === 's3') {
    const { S3Driver } = await import('./s3.js');
    driver = new S3Driver(storage.s3!);
  } else {
    driver = new FilesystemDriver(storage.filesystem!.rootdirectory);
  }
  return applyStorageMiddleware(driver, middleware, warn);
}

/**
 * Locks shared with the other processes on the same storage, or undefined where the storage
 * offers none (S3: one process per bucket without Redis).
 */
export function createSharedLocks(storage: StorageConfig, staleMs: number, onCompromised: (key: string, err: Error) => void): SharedLocks | undefined {
  if (storage.driver !== 'filesystem') return undefined;
  return new DirectoryLocks(storage.filesystem!.rootdirectory, staleMs, onCompromised);
}
