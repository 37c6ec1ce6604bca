/**
 * Every configuration key, defined once: distribution's keys (`configuration/configuration.go`, 2.8
 * and 3.x) with what this registry does with them, and ours (`extension`), each with its schema,
 * its default and, for a top-level section, its conversion into `Config`. The larger sections are
 * defined in modules of their own (`http.ts`, `storage.ts` with `s3.ts`, `proxy.ts`, ...), the
 * smaller ones here. `schema.ts` derives the key-status tables and the ajv schema from this tree,
 * `types.ts` the type `Config`; `load.ts` runs each section's conversion.
 */
import { converted, defaultAt, ignored as I, key, section, type KeyDef } from './key-def.js';
import { LOG_KEYS } from './log.js';
import { HTTP_KEYS } from './http.js';
import { STORAGE_KEYS } from './storage.js';
import { PROXY_KEYS } from './proxy.js';
import { HEALTH_KEYS } from './health.js';
import { REDIS_KEYS } from './redis.js';
import { VALIDATION_KEYS } from './validation.js';
import { AUTH_KEYS } from './auth.js';
import { NOTIFICATIONS_KEYS } from './notifications.js';
import { MIDDLEWARE_KEYS } from './middleware.js';

/** `catalog:` */
export interface CatalogConfig {
  readonly maxentries: number;
}

/** `tags:` (distribution 3): a larger `n` on a tag list is lowered to `maxtags` (default 1000), as v3.1.1. */
export interface TagsConfig {
  readonly maxtags: number;
}

/**
 * `policy:` (distribution 2.8 and 3): `repository.classes`, the classes of manifest a push may
 * store (`image`, `plugin`); none listed, any.
 */
export interface PolicyConfig {
  readonly repository: { readonly classes: readonly string[] };
}

const TAGS_KEYS = section({ maxtags: key({ type: 'integer', minimum: 0, default: 1000 }) }, { default: {} });

/** The top-level sections, in distribution's order; those with a conversion are members of `Config`. */
export const SECTIONS = {
  version: converted(key({ type: ['string', 'number'], default: '0.1' }), (v): string => String(v)),
  // Deprecated in distribution: used when `log.level` is not set (load.ts).
  loglevel: key(),
  log: LOG_KEYS,
  storage: STORAGE_KEYS,
  http: HTTP_KEYS,
  proxy: PROXY_KEYS,
  health: HEALTH_KEYS,
  // 2.8 and 3.x (go-redis UniversalOptions); one server, a Sentinel group or a Cluster.
  redis: REDIS_KEYS,
  catalog: converted(section({ maxentries: key({ type: 'integer', minimum: 1, default: 1000 }) }, { default: {} }), (c): CatalogConfig => ({
    maxentries: c.maxentries,
  })),
  // distribution 3.1.1: `0` (or unset) is 1000, a negative value an error.
  tags: converted(TAGS_KEYS, (t): TagsConfig => ({ maxtags: t.maxtags || (defaultAt(TAGS_KEYS, 'maxtags') as number) })),
  validation: VALIDATION_KEYS,
  auth: AUTH_KEYS,
  notifications: NOTIFICATIONS_KEYS,
  middleware: MIDDLEWARE_KEYS,
  reporting: I,
  compatibility: section({ schema1: section({ signingkeyfile: I, enabled: I }) }),
  policy: converted(section({ repository: section({ classes: key({ type: 'array', items: { type: 'string' } }) }) }, { default: {} }), (p): PolicyConfig => ({
    repository: { classes: [...((p.repository?.classes ?? []) as string[])] },
  })),
} satisfies Record<string, KeyDef>;

/** The root of the configuration. */
export const CONFIG_KEYS: KeyDef = section(SECTIONS);

/** The default of the key at `path` (dotted), as its definition states it. */
export function defaultOf(path: string): unknown {
  return defaultAt(CONFIG_KEYS, path);
}
