/**
 * The validated, defaulted and frozen configuration, in distribution's key names
 * (`configuration/configuration.go`). `load.ts` is the only producer. Its type is derived from the
 * key definitions (`keys.ts`): a member per top-level section with a conversion, of the type that
 * conversion gives, declared beside it. Durations are parsed from Go syntax (`168h`, `5m30s`) into
 * milliseconds.
 */
import type { ConfigOf } from './key-def.js';
import type { SECTIONS } from './keys.js';

export type { LogConfig } from './log.js';
export type { HttpConfig, TlsConfig } from './http.js';
export type { StorageConfig } from './storage.js';
export type { S3StorageConfig } from './s3.js';
export type { FreshnessRule, ImmutableTagsConfig, ProxyConfig, UpstreamConfig } from './proxy.js';
export type { HealthConfig } from './health.js';
export type { RedisConfig } from './redis.js';
export type { ValidationConfig } from './validation.js';
export type { AuthConfig } from './auth.js';
export type { MiddlewareConfig, StorageMiddleware } from './middleware.js';
export type { CatalogConfig, PolicyConfig, TagsConfig } from './keys.js';
export type { NotificationsConfig } from './notifications.js';

/** The whole configuration. */
export type Config = ConfigOf<typeof SECTIONS>;
