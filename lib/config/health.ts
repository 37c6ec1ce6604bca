/**
 * `health:`, defined and converted in one place: distribution's periodic checks of the storage
 * driver, of files, of HTTP URIs and of TCP addresses.
 */
import { resolve } from 'node:path';
import { parseDuration } from './duration.js';
import { HEADERS_SCHEMA, headerLists } from './http.js';
import { converted, defaultAt, key, section, type KeyDef, type Raw } from './key-def.js';

const url = { type: 'string', pattern: '^https?://[^/]+' };
const count = { type: 'integer', minimum: 0 };
const str = { type: 'string' };
/** A check's `interval` and `timeout` (distribution's; `0` means it too: a zero timeout would wait for the OS). */
const CHECK_PERIOD = { goDuration: true, default: '10s' };

/**
 * `health:` as distribution: periodic checks (`interval`, default 10s) that turn unhealthy after
 * `threshold` consecutive failures (0: the first). Durations are in milliseconds.
 */
export interface HealthConfig {
  readonly storagedriver: { readonly enabled: boolean; readonly intervalms: number; readonly threshold: number };
  /** Unhealthy while the file exists (a maintenance switch). */
  readonly file: readonly { readonly file: string; readonly intervalms: number }[];
  /** A `HEAD` of `uri` must answer `statuscode` (default 200). */
  readonly http: readonly {
    readonly uri: string;
    readonly headers: Readonly<Record<string, readonly string[]>>;
    readonly statuscode: number;
    readonly timeoutms: number;
    readonly intervalms: number;
    readonly threshold: number;
  }[];
  /** A TCP connection to `addr` must open. */
  readonly tcp: readonly { readonly addr: string; readonly timeoutms: number; readonly intervalms: number; readonly threshold: number }[];
}

/** `health:`'s keys; the entries of the lists are checked by their schemas. */
const KEYS: KeyDef = section(
  {
    storagedriver: section(
      { enabled: key({ type: 'boolean', default: false }), interval: key(CHECK_PERIOD), threshold: key({ ...count, default: 0 }) },
      { default: {} },
    ),
    file: key({
      type: 'array',
      default: [],
      items: { type: 'object', required: ['file'], properties: { file: { ...str, minLength: 1 }, interval: CHECK_PERIOD } },
    }),
    http: key({
      type: 'array',
      default: [],
      items: {
        type: 'object',
        required: ['uri'],
        properties: {
          uri: url,
          headers: HEADERS_SCHEMA,
          statuscode: { type: 'integer', minimum: 100, maximum: 599, default: 200 },
          timeout: CHECK_PERIOD,
          interval: CHECK_PERIOD,
          threshold: { ...count, default: 0 },
        },
      },
    }),
    tcp: key({
      type: 'array',
      default: [],
      items: {
        type: 'object',
        required: ['addr'],
        properties: { addr: { ...str, minLength: 1 }, timeout: CHECK_PERIOD, interval: CHECK_PERIOD, threshold: { ...count, default: 0 } },
      },
    }),
  },
  { default: {} },
);

/** `health:` and its conversion. */
export const HEALTH_KEYS = converted(KEYS, (h): HealthConfig => {
  // Every check's interval and timeout have this default, which `0` means too.
  const period = parseDuration(defaultAt(KEYS, 'storagedriver.interval') as string);
  const interval = (v: string | number): number => parseDuration(v) || period;
  const timeout = interval;
  return {
    storagedriver: { enabled: h.storagedriver.enabled, intervalms: interval(h.storagedriver.interval), threshold: h.storagedriver.threshold },
    file: (h.file as Raw[]).map((f) => ({ file: resolve(String(f.file)), intervalms: interval(f.interval) })),
    http: (h.http as Raw[]).map((c) => ({
      uri: String(c.uri),
      headers: headerLists(c.headers),
      statuscode: c.statuscode,
      timeoutms: timeout(c.timeout),
      intervalms: interval(c.interval),
      threshold: c.threshold,
    })),
    tcp: (h.tcp as Raw[]).map((c) => ({ addr: String(c.addr), timeoutms: timeout(c.timeout), intervalms: interval(c.interval), threshold: c.threshold })),
  };
});
