/**
 * `proxy:`, defined and converted in one place: distribution's upstream (`remoteurl`, credentials,
 * `ttl`, `exec`, `cachewritetimeout`) and our extensions (more upstreams, timeouts, immutable and
 * fresh tags, the rate-limit budget, the size cap, locks, overtaking, hosted names).
 */
import { ConfigError } from '../errors.js';
import { isDockerHub, registryHostOf, storageComponentOf } from '../distribution/registry-host.js';
import { parseDuration } from './duration.js';
import { tryParseSize } from './size.js';
import { converted, defaultAt, extension, key, map, section, type KeyDef, type Raw } from './key-def.js';

const duration = { goDuration: true };
const bool = { type: 'boolean' };
const str = { type: 'string' };
const count = { type: 'integer', minimum: 0 };
const url = { type: 'string', pattern: '^https?://[^/]+' };
/** `true`, `false`, or `{exclude: [regex, ...]}`. */
const immutableTagsSchema = {
  anyOf: [bool, { type: 'object', additionalProperties: false, properties: { exclude: { type: 'array', items: { type: 'string', regex: true } } } }],
};
/** Extension `freshness`: tag patterns (regular expressions) and how long a checked tag is served unasked. */
const freshnessSchema = { type: 'object', propertyNames: { regex: true }, additionalProperties: duration };
/** Extension `dockerhub`: whether an upstream serves Docker Hub's names. */
const dockerHubSchema = { enum: ['auto', true, false] };
/** A registry host as clients name it: `ghcr.io`, `registry.example.com:5000`. */
const REGISTRY_HOST_PATTERN = '^[a-z0-9]+(?:[.-][a-z0-9]+)*(?::[0-9]+)?$';

/** Extension `immutabletags`: cached tags served with no upstream check, except those matching `exclude`. */
export interface ImmutableTagsConfig {
  /** Regular expressions (JavaScript syntax) of tags that stay mutable, e.g. `^latest$`. */
  readonly exclude: readonly string[];
}

/** One entry of the extension `freshness`. */
export interface FreshnessRule {
  readonly pattern: string;
  readonly ms: number;
}

/** One upstream registry: `proxy:` itself, or an entry of the extension `proxy.upstreams`. */
export interface UpstreamConfig {
  readonly remoteurl: string;
  readonly username?: string;
  readonly password?: string;
  /** Cache lifetime in ms; `0` (or negative in the file) turns expiry off. Default 168h. */
  readonly ttlms: number;
  /** Extension: undefined when every tag is checked with the upstream (distribution's behaviour). */
  readonly immutabletags?: ImmutableTagsConfig;
  /**
   * Extension `freshness`: tag patterns (JavaScript regular expressions, first match wins) with the
   * time a tag checked upstream is served from the cache without asking again. Empty: every pull of
   * a tag is checked (distribution's behaviour).
   */
  readonly freshness?: readonly FreshnessRule[];
  /**
   * Extension `dockerhub` (`auto`, `true`, `false`): the upstream serves Docker Hub's names, so a
   * client's one-component name (`busybox`) is asked for as `library/busybox`. `auto` (the default)
   * is true for Docker Hub's own hosts and for an upstream listed as `docker.io`; set `true` for
   * another mirror of Docker Hub (a regional mirror in a chain).
   */
  readonly dockerhub: boolean;
}

/** `proxy:` (its presence with `remoteurl` turns on pull-through mode). */
export interface ProxyConfig extends UpstreamConfig {
  /** Extension `proxy.timeouts`: upstream connect, response-headers and idle-body timeouts (10s, 30s, 60s). */
  readonly timeouts: { readonly connectms: number; readonly responsems: number; readonly idlems: number };
  /**
   * Extension `proxy.upstreams`: more registries behind this mirror, by the registry host clients
   * name (`ghcr.io`), selected with containerd's `?ns=` or a path prefix. Empty: distribution's
   * single-upstream behaviour.
   */
  readonly upstreams: Readonly<Record<string, UpstreamConfig>>;
  /** Extension `proxy.maxsize`: the cache's blob data is kept under this many bytes, least recently pulled evicted first. */
  readonly maxsizebytes?: number;
  /** Extension `proxy.touchonhit` (default true): a cache hit extends the expiry; false is distribution's behaviour. */
  readonly touchonhit: boolean;
  /**
   * Extension `proxy.lockstale` (default 10s, at least 2s): a lock of a process sharing the storage
   * (a replica) that is not refreshed for this long is taken over.
   */
  readonly lockstalems: number;
  /**
   * Extension `proxy.overtake`: a blob fetch slower than `minrate` bytes per second (default
   * 128KiB; 0 turns it off) over `after` (default 5s) is raced by a second upstream connection.
   */
  readonly overtake: { readonly minratebytes: number; readonly afterms: number };
  /**
   * Extension `proxy.hosted`: repository name prefixes (`internal/`, `ci/`) hosted here and pushed
   * to by clients, never asked of an upstream. Each ends with `/`; empty: pull-through only.
   */
  readonly hosted: readonly string[];
  /** Extension `proxy.hostedanonymouspush` (default false): pushes to hosted names without client authentication. */
  readonly hostedanonymouspush: boolean;
  /**
   * `proxy.exec` (distribution 3): a docker-credential-helpers program giving the upstream
   * credentials in place of `username`/`password`. `lifetimems` undefined: run once; `0`: run for
   * every request; above 0: its answer is reused that long.
   */
  readonly exec?: { readonly command: string; readonly lifetimems?: number };
  /**
   * Extension `proxy.budget`: an upstream's rate-limit budget (Docker Hub's `RateLimit-Remaining`)
   * at or below `reserve` (default 5) stops the revalidation of cached tags; a reading (or a 429's
   * `Retry-After`) is trusted for `recheckms` (default 60s) before the upstream is asked again.
   */
  readonly budget: { readonly reserve: number; readonly recheckms: number };
  /** Extension `proxy.maxupstreamconns` (default 64): the most connections open to one upstream at once. */
  readonly maxupstreamconns: number;
  /** `proxy.cachewritetimeout` (default 5m): how long a blob fetch no client reads any more goes on filling the cache. */
  readonly cachewritetimeoutms: number;
}

const invalid = (message: string): ConfigError => new ConfigError(message);

/** `proxy:`'s keys. */
const KEYS: KeyDef = section({
  remoteurl: key(url),
  username: key(str),
  password: key(str),
  ttl: key({ ...duration, default: '168h' }),
  exec: section({ command: key({ ...str, minLength: 1 }), lifetime: key(duration) }, { required: ['command'] }),
  // distribution 3: unset or not above zero is 5 minutes.
  cachewritetimeout: key({ ...duration, default: '5m' }),
  timeouts: extension(
    section(
      { connect: key({ ...duration, default: '10s' }), response: key({ ...duration, default: '30s' }), idle: key({ ...duration, default: '60s' }) },
      { default: {} },
    ),
  ),
  immutabletags: extension(key({ ...immutableTagsSchema, default: false })),
  freshness: extension(map(freshnessSchema)),
  budget: extension(
    section({ reserve: key({ ...count, default: 5 }), recheck: key({ ...duration, positiveDuration: true, default: '60s' }) }, { default: {} }),
  ),
  maxupstreamconns: extension(key({ type: 'integer', minimum: 1, default: 64 })),
  dockerhub: extension(key({ ...dockerHubSchema, default: 'auto' })),
  // `0` turns the cap off, as `ttl: 0` turns expiry off.
  maxsize: extension(key({ size: true })),
  touchonhit: extension(key({ ...bool, default: true })),
  lockstale: extension(key({ ...duration, default: '10s' })),
  overtake: extension(
    section({ minrate: key({ size: true, default: '128KiB' }), after: key({ ...duration, positiveDuration: true, default: '5s' }) }, { default: {} }),
  ),
  hosted: extension(key({ type: 'array', default: [], items: { type: 'string', hostedPrefix: true } })),
  hostedanonymouspush: extension(key({ ...bool, default: false })),
  upstreams: extension(
    map({
      type: 'object',
      default: {},
      propertyNames: { pattern: REGISTRY_HOST_PATTERN },
      additionalProperties: {
        type: 'object',
        required: ['remoteurl'],
        additionalProperties: false,
        properties: {
          remoteurl: url,
          username: str,
          password: str,
          ttl: duration,
          immutabletags: immutableTagsSchema,
          freshness: freshnessSchema,
          dockerhub: dockerHubSchema,
        },
      },
    }),
  ),
});

/** The least `proxy.lockstale`: a lock is refreshed more often than that. */
const MIN_LOCK_STALE_MS = 2000;

/** `proxy:` and its conversion: undefined without `remoteurl`. */
export const PROXY_KEYS = converted(KEYS, (proxy: Raw | undefined): ProxyConfig | undefined => {
  const remoteurl = proxy?.remoteurl as string | undefined;
  if (!proxy || !remoteurl) return undefined;
  noUserinfo('proxy', remoteurl);
  const ttl = parseDuration(proxy.ttl);
  const own = upstream(proxy, ttl, isDockerHub(remoteurl));
  const lifetime = proxy.exec?.lifetime as string | number | null | undefined;
  return {
    ...own,
    timeouts: {
      connectms: parseDuration(proxy.timeouts.connect),
      responsems: parseDuration(proxy.timeouts.response),
      idlems: parseDuration(proxy.timeouts.idle),
    },
    upstreams: upstreams(proxy, ttl),
    // `0` turns the cap off, as `ttl: 0` turns expiry off.
    maxsizebytes: tryParseSize(proxy.maxsize) || undefined,
    touchonhit: proxy.touchonhit,
    lockstalems: Math.max(MIN_LOCK_STALE_MS, parseDuration(proxy.lockstale)),
    overtake: { minratebytes: tryParseSize(proxy.overtake.minrate)!, afterms: parseDuration(proxy.overtake.after) },
    hosted: hostedPrefixes(proxy, own.dockerhub),
    hostedanonymouspush: proxy.hostedanonymouspush,
    exec: proxy.exec
      ? { command: String(proxy.exec.command), lifetimems: lifetime === undefined || lifetime === null ? undefined : Math.max(0, parseDuration(lifetime)) }
      : undefined,
    // distribution 3: `0` is the default too.
    cachewritetimeoutms: parseDuration(proxy.cachewritetimeout) || parseDuration(defaultAt(KEYS, 'cachewritetimeout') as string),
    budget: { reserve: proxy.budget.reserve, recheckms: parseDuration(proxy.budget.recheck) },
    maxupstreamconns: proxy.maxupstreamconns,
  };
});

/** One upstream; `hubByDefault` is what `dockerhub: auto` (or no key) means for it. */
function upstream(u: Raw, defaultTtl: number, hubByDefault: boolean): UpstreamConfig {
  return {
    remoteurl: String(u.remoteurl).replace(/\/+$/, ''),
    username: u.username,
    password: u.password,
    ttlms: Math.max(0, u.ttl === undefined ? defaultTtl : parseDuration(u.ttl)),
    immutabletags: immutableTags(u.immutabletags),
    freshness: Object.entries((u.freshness ?? {}) as Record<string, string | number>).map(([pattern, d]) => ({ pattern, ms: Math.max(0, parseDuration(d)) })),
    dockerhub: u.dockerhub === undefined || u.dockerhub === 'auto' ? hubByDefault : u.dockerhub === true,
  };
}

function immutableTags(v: unknown): ImmutableTagsConfig | undefined {
  if (v === undefined || v === false) return undefined;
  if (v === true) return { exclude: [] };
  return { exclude: ((v as Raw).exclude as string[] | undefined) ?? [] };
}

/**
 * Refuses credentials written into a `remoteurl` (`http://user:pass@host`): the URL is shown on the
 * cache page and in log lines, the credentials have keys of their own. The message names the keys,
 * never the password.
 */
function noUserinfo(section: string, remoteurl: string): void {
  let url: URL;
  try {
    url = new URL(remoteurl);
  } catch {
    return;
  }
  if (url.username !== '' || url.password !== '') {
    throw invalid(
      `${section}.remoteurl: credentials in the URL are refused (the URL is shown on the cache page and in logs): set ${section}.username and ${section}.password instead`,
    );
  }
}

/** `proxy.upstreams`; the default upstream's own host may not be listed again. */
function upstreams(proxy: Raw, defaultTtl: number): Record<string, UpstreamConfig> {
  const own = registryHostOf(String(proxy.remoteurl));
  const result: Record<string, UpstreamConfig> = {};
  for (const [host, u] of Object.entries((proxy.upstreams ?? {}) as Record<string, Raw>)) {
    if (host === own) throw invalid(`proxy.upstreams.${host}: ${host} is already the registry of proxy.remoteurl`);
    noUserinfo(`proxy.upstreams.${host}`, String(u.remoteurl));
    // Listed as docker.io (another Hub mirror, such as mirror.gcr.io): Docker Hub's names.
    result[host] = upstream(u, defaultTtl, host === 'docker.io' || isDockerHub(String(u.remoteurl)));
  }
  return result;
}

/**
 * `proxy.hosted`, each prefix ending with `/`. A prefix may not collide with another spelling of a
 * proxied name: an upstream of `proxy.upstreams` (as keyed, or as stored: `host_5000/`), the
 * aliases of the default upstream (`docker.io/`, its own host) once there are upstreams to choose
 * from, or Docker Hub's `library/` when the default upstream has Docker Hub's names (a client's
 * `busybox` is stored as `library/busybox`).
 */
function hostedPrefixes(proxy: Raw, defaultIsHub: boolean): string[] {
  const prefixes = [...new Set((proxy.hosted as string[]).map((p) => `${p.replace(/\/+$/, '')}/`))];
  const hosts = Object.keys((proxy.upstreams ?? {}) as Raw);
  const aliases = new Map<string, string>();
  if (hosts.length > 0) {
    aliases.set('docker.io', 'the default upstream (docker.io)');
    aliases.set(registryHostOf(String(proxy.remoteurl)), 'the default upstream (proxy.remoteurl)');
  }
  for (const host of hosts) {
    aliases.set(storageComponentOf(host), `the upstream ${host} of proxy.upstreams (stored under ${storageComponentOf(host)}/)`);
    aliases.set(host, `the upstream ${host} of proxy.upstreams`);
  }
  for (const p of prefixes) {
    const first = p.slice(0, p.indexOf('/'));
    const alias = aliases.get(first);
    if (alias) throw invalid(`proxy.hosted: ${p} would hide ${alias}`);
    if (defaultIsHub && first === 'library') {
      throw invalid(`proxy.hosted: ${p} collides with Docker Hub's official images on the default upstream: a client's busybox is stored as library/busybox`);
    }
  }
  return prefixes;
}
