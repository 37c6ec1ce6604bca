/**
 * `storage:`, defined and converted in one place: exactly one driver (the filesystem, or S3 as
 * distribution's `s3-aws`, `s3.ts`), deletes, redirects, and the maintenance of hosted uploads.
 */
import { resolve } from 'node:path';
import { ConfigError } from '../errors.js';
import { parseDuration } from './duration.js';
import { converted, defaultAt, ignored as I, isMapping, key, rejected as R, section, type Raw } from './key-def.js';
import { S3_KEYS, s3Config, type S3StorageConfig } from './s3.js';

const bool = { type: 'boolean' };
const duration = { goDuration: true };

/** `storage:` */
export interface StorageConfig {
  /** The one configured driver (`filesystem` when none is). */
  readonly driver: 'filesystem' | 's3';
  /** Set when `driver` is `filesystem`. */
  readonly filesystem?: { readonly rootdirectory: string; readonly maxthreads?: number };
  /** Set when `driver` is `s3`. */
  readonly s3?: S3StorageConfig;
  readonly delete: { readonly enabled: boolean };
  readonly maintenance: {
    readonly uploadpurging: { readonly enabled: boolean; readonly agems: number; readonly intervalms: number; readonly dryrun: boolean };
    readonly readonly: { readonly enabled: boolean };
  };
  readonly redirect: { readonly disable: boolean };
  readonly cache?: { readonly blobdescriptor?: string };
}

/** The sections of `storage` that are not a driver (distribution's `Storage.Type`). */
const STORAGE_SETTINGS = ['maintenance', 'cache', 'delete', 'redirect', 'tag'];

const FILESYSTEM_KEYS = section({ rootdirectory: key({ type: 'string', minLength: 1, default: '/var/lib/registry' }), maxthreads: I });

/** The one configured driver and its parameters; filesystem at its default root when none is. */
function storageDriver(storage: Raw): Pick<StorageConfig, 'driver' | 'filesystem' | 's3'> {
  const drivers = Object.keys(storage).filter((k) => !STORAGE_SETTINGS.includes(k));
  if (drivers.length > 1) throw new ConfigError(`storage: exactly one storage driver may be configured, found ${drivers.join(', ')}`);
  if (drivers[0] === 's3') {
    if (!isMapping(storage.s3)) throw new ConfigError('storage.s3 must be a mapping');
    return { driver: 's3', s3: s3Config(storage.s3 as Raw) };
  }
  const root = (storage.filesystem?.rootdirectory ?? defaultAt(FILESYSTEM_KEYS, 'rootdirectory')) as string;
  return { driver: 'filesystem', filesystem: { rootdirectory: resolve(root) } };
}

/** `storage:` and its conversion. */
export const STORAGE_KEYS = converted(
  section(
    {
      filesystem: FILESYSTEM_KEYS,
      // Checked key by key in s3.ts, with distribution's lenient booleans and integers.
      s3: S3_KEYS,
      inmemory: R,
      azure: R,
      gcs: R,
      swift: R,
      oss: R,
      delete: section({ enabled: key({ ...bool, default: false }) }, { default: {} }),
      redirect: section({ disable: key({ ...bool, default: false }) }, { default: {} }),
      maintenance: section(
        {
          uploadpurging: section(
            {
              enabled: key({ ...bool, default: true }),
              age: key({ ...duration, default: '168h' }),
              interval: key({ ...duration, default: '24h' }),
              dryrun: key({ ...bool, default: false }),
            },
            { default: {} },
          ),
          readonly: section({ enabled: key({ ...bool, default: false }) }, { default: {} }),
        },
        { default: {} },
      ),
      cache: section({ blobdescriptor: I, blobdescriptorsize: I }),
      tag: section({ concurrencylimit: I }),
    },
    { default: {} },
  ),
  (storage): StorageConfig => {
    const purging = storage.maintenance.uploadpurging as Raw;
    return {
      ...storageDriver(storage),
      delete: { enabled: storage.delete.enabled },
      maintenance: {
        uploadpurging: { enabled: purging.enabled, agems: parseDuration(purging.age), intervalms: parseDuration(purging.interval), dryrun: purging.dryrun },
        readonly: { enabled: storage.maintenance.readonly.enabled },
      },
      redirect: { disable: storage.redirect.disable },
    };
  },
);
