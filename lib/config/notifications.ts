/**
 * `notifications:` as distribution reads it (`configuration.Notifications`, 2.8 and 3.x alike):
 * `events.includereferences` and a list of `endpoints`, each with `name`, `url`, `disabled`,
 * `headers`, `timeout`, `threshold`, `backoff`, `ignoredmediatypes` and `ignore: {mediatypes,
 * actions}`, with distribution's defaults (1s, 10, 1s) for a timeout, threshold or backoff unset or
 * zero. Three extension keys per endpoint: `include.actions` opts into our `cached` and `evicted`
 * events, `queuelimit` bounds the events waiting for a slow or dead endpoint (distribution's
 * queue has no bound), and `mediatype` picks the envelope's media type (2.8's by default, or 3.x's). An unknown key in an endpoint refuses the start: a mistyped `ignore` would
 * silently change what an audit log or a scanner receives.
 */
import { ConfigError } from '../errors.js';
import { parseDuration, tryParseDuration } from './duration.js';
import { checked, converted, defAt, defaultAt, isKeyOf, isMapping, section, shaped, type KeyDef } from './key-def.js';

/**
 * The envelope's `Content-Type`: 2.8's, and 3.x's (the same fields; distribution bumped the version
 * when it dropped schema 1). Receivers differ in which one they parse, so an endpoint picks it.
 */
export const ENVELOPE_MEDIA_TYPES = ['application/vnd.docker.distribution.events.v1+json', 'application/vnd.docker.distribution.events.v2+json'] as const;
type EnvelopeMediaType = (typeof ENVELOPE_MEDIA_TYPES)[number];

/** Our extra actions, beyond distribution's `pull`, `push`, `mount` and `delete`. */
const EXTRA_ACTIONS = ['cached', 'evicted'] as const;
type ExtraAction = (typeof EXTRA_ACTIONS)[number];

/** One `notifications.endpoints` entry. Durations in milliseconds. */
export interface NotificationEndpointConfig {
  readonly name: string;
  readonly url: string;
  readonly disabled: boolean;
  readonly headers: Readonly<Record<string, readonly string[]>>;
  readonly timeoutms: number;
  /** Consecutive failures after which a retry waits `backoffms`. */
  readonly threshold: number;
  readonly backoffms: number;
  /** `ignoredmediatypes` and `ignore.mediatypes` together. */
  readonly ignoredmediatypes: readonly string[];
  readonly ignoredactions: readonly string[];
  /** Extension `include.actions`: which of our extra actions this endpoint receives. */
  readonly includedactions: readonly ExtraAction[];
  /** Extension `queuelimit` (default 10000): events queued for the endpoint at most; beyond, new ones are dropped and counted. */
  readonly queuelimit: number;
  /** Extension `mediatype` (default 2.8's `...events.v1+json`): the envelope's `Content-Type`. */
  readonly mediatype: EnvelopeMediaType;
}

/** `notifications:`. */
export interface NotificationsConfig {
  /** `events.includereferences`: manifest events list the manifest's references. */
  readonly includereferences: boolean;
  readonly endpoints: readonly NotificationEndpointConfig[];
}

/**
 * `notifications:`'s keys, an endpoint's too, each checked here (no schema: a list is not walked
 * by the key-status tables). The defaults of `timeout`, `threshold` and `backoff` are
 * distribution's `EndpointConfig.defaults`; `include`, `queuelimit` and `mediatype` are ours.
 */
const KEYS: KeyDef = section({
  events: section({ includereferences: checked(false) }),
  endpoints: shaped({
    name: checked(),
    url: checked(),
    disabled: checked(false),
    headers: checked(),
    timeout: checked('1s'),
    threshold: checked(10),
    backoff: checked('1s'),
    ignoredmediatypes: checked(),
    ignore: section({ mediatypes: checked(), actions: checked() }),
    include: section({ actions: checked() }),
    queuelimit: checked(10_000),
    mediatype: checked(ENVELOPE_MEDIA_TYPES[0], ENVELOPE_MEDIA_TYPES),
  }),
});

/** `notifications:` and its conversion. */
export const NOTIFICATIONS_KEYS = converted(KEYS, (raw: unknown): NotificationsConfig => notificationsConfig(raw));

/** An endpoint's keys, defined above. */
const ENDPOINT = defAt(KEYS, 'endpoints');

/** The default of an endpoint's `key`. */
const endpointDefault = <T>(key: string): T => defaultAt(ENDPOINT, key) as T;

const invalid = (message: string): ConfigError => new ConfigError(`notifications.${message}`);

function strings(v: unknown, name: string): string[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v) || v.some((s) => typeof s !== 'string')) throw invalid(`${name}: ${JSON.stringify(v)} must be a list of strings`);
  return v as string[];
}

/** A duration (`1s`, or Go's nanoseconds as a number); unset or zero: `fallback`. */
function duration(v: unknown, name: string, fallback: number): number {
  if (v === undefined || v === null) return fallback;
  const ms = tryParseDuration(v);
  if (ms === undefined || ms < 0) throw invalid(`${name}: ${JSON.stringify(v)} is not a duration like 1s`);
  return ms > 0 ? ms : fallback;
}

function integer(v: unknown, name: string, fallback: number, min: number): number {
  if (v === undefined || v === null) return fallback;
  const n = typeof v === 'string' && /^\d+$/.test(v.trim()) ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < min) throw invalid(`${name}: ${JSON.stringify(v)} must be an integer of at least ${min}`);
  return n;
}

function bool(v: unknown, name: string, fallback: boolean): boolean {
  if (v === undefined || v === null) return fallback;
  if (typeof v === 'boolean') return v;
  if (v === 'true' || v === 'false') return v === 'true';
  throw invalid(`${name}: ${JSON.stringify(v)} must be true or false`);
}

function endpoint(raw: unknown, i: number): NotificationEndpointConfig {
  const at = `endpoints[${i}]`;
  if (!isMapping(raw)) throw invalid(`${at} must be a mapping with name and url`);
  for (const key of Object.keys(raw)) if (!isKeyOf(ENDPOINT, key)) throw invalid(`${at}.${key} is not a known key of an endpoint`);
  const name = raw.name;
  if (typeof name !== 'string' || name === '') throw invalid(`${at}.name is required`);
  const url = raw.url;
  if (typeof url !== 'string' || !/^https?:\/\/[^/]+/.test(url)) throw invalid(`${at}.url: ${JSON.stringify(url)} is not an http(s) URL`);
  const headers: Record<string, string[]> = {};
  if (raw.headers !== undefined && raw.headers !== null) {
    if (!isMapping(raw.headers)) throw invalid(`${at}.headers must be a mapping of header names to lists of values`);
    for (const [k, v] of Object.entries(raw.headers)) headers[k] = typeof v === 'string' ? [v] : strings(v, `${at}.headers.${k}`);
  }
  const ignore = raw.ignore ?? {};
  if (!isMapping(ignore)) throw invalid(`${at}.ignore must be a mapping with mediatypes and actions`);
  for (const key of Object.keys(ignore)) if (!isKeyOf(defAt(ENDPOINT, 'ignore'), key)) throw invalid(`${at}.ignore.${key} is not a known key`);
  const include = raw.include ?? {};
  if (!isMapping(include)) throw invalid(`${at}.include must be a mapping with actions`);
  for (const key of Object.keys(include)) if (!isKeyOf(defAt(ENDPOINT, 'include'), key)) throw invalid(`${at}.include.${key} is not a known key`);
  const included = strings(include.actions, `${at}.include.actions`);
  const unknown = included.filter((a) => !(EXTRA_ACTIONS as readonly string[]).includes(a));
  if (unknown.length > 0) throw invalid(`${at}.include.actions: ${unknown.join(', ')} is not one of ${EXTRA_ACTIONS.join(', ')}`);
  const mediatype = raw.mediatype ?? endpointDefault<EnvelopeMediaType>('mediatype');
  if (!(ENVELOPE_MEDIA_TYPES as readonly unknown[]).includes(mediatype))
    throw invalid(`${at}.mediatype: ${JSON.stringify(mediatype)} is not one of ${ENVELOPE_MEDIA_TYPES.join(', ')}`);
  return {
    name,
    url,
    disabled: bool(raw.disabled, `${at}.disabled`, endpointDefault('disabled')),
    headers,
    timeoutms: duration(raw.timeout, `${at}.timeout`, parseDuration(endpointDefault('timeout'))),
    // distribution: `0` is the default too.
    threshold: integer(raw.threshold, `${at}.threshold`, 0, 0) || endpointDefault<number>('threshold'),
    backoffms: duration(raw.backoff, `${at}.backoff`, parseDuration(endpointDefault('backoff'))),
    ignoredmediatypes: [...strings(raw.ignoredmediatypes, `${at}.ignoredmediatypes`), ...strings(ignore.mediatypes, `${at}.ignore.mediatypes`)],
    ignoredactions: strings(ignore.actions, `${at}.ignore.actions`),
    includedactions: included as ExtraAction[],
    queuelimit: integer(raw.queuelimit, `${at}.queuelimit`, endpointDefault('queuelimit'), 1),
    mediatype: mediatype as EnvelopeMediaType,
  };
}

/** Checks and converts `notifications`; no endpoints at all is no notifications. */
export function notificationsConfig(raw: unknown): NotificationsConfig {
  if (raw === undefined || raw === null) return notificationsConfig({});
  if (!isMapping(raw)) throw invalid('must be a mapping with endpoints');
  const events = raw.events ?? {};
  if (!isMapping(events)) throw invalid('events must be a mapping');
  const endpoints = raw.endpoints ?? [];
  if (!Array.isArray(endpoints)) throw invalid('endpoints must be a list');
  return {
    includereferences: bool(events.includereferences, 'events.includereferences', defaultAt(KEYS, 'events.includereferences') as boolean),
    endpoints: endpoints.map(endpoint),
  };
}
