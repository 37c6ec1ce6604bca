/**
 * Loads the configuration once at start-up: YAML (distribution's format), then `REGISTRY_*`
 * overrides, then the one schema; unknown and unimplemented keys warn, wrong values fail with the
 * key's path. The result is frozen.
 */
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import yaml from 'js-yaml';
import type { ErrorObject } from 'ajv';
import { ConfigError } from '../errors.js';
import { parseDuration } from './duration.js';
import { tryParseSize } from './size.js';
import { applyEnvOverrides } from './env.js';
import { s3Config } from './s3.js';
import { redisConfig } from './redis.js';
import { notificationsConfig } from './notifications.js';
import { KNOWN_KEYS, EXTENSION_KEYS, type KeyStatus, type KeyTree } from './schema.js';
import { validateConfig } from './config-validator.js';
import { defaultOf } from './keys.js';
import type { Config, ImmutableTagsConfig, UpstreamConfig } from './types.js';
import { isDockerHub, registryHostOf, storageComponentOf } from '../distribution/registry-host.js';

/** Where the configuration comes from. */
export interface ConfigSource {
  readonly path?: string;
  readonly text?: string;
  readonly env?: NodeJS.ProcessEnv;
}

/** Where `registry:3` reads its configuration. */
const V3_CONFIG_PATH = '/etc/distribution/config.yml';
/** Where `registry:2` reads its configuration. */
const V2_CONFIG_PATH = '/etc/docker/registry/config.yml';

/**
 * The configuration path: the argument, else `REGISTRY_CONFIGURATION_PATH`, else the image's
 * default: `registry:3`'s `/etc/distribution/config.yml` when that file exists, else
 * `registry:2`'s `/etc/docker/registry/config.yml` (so a volume mounted where either image
 * expects it is found).
 */
export function resolveConfigPath(arg: string | undefined, env: NodeJS.ProcessEnv, exists: (path: string) => boolean = existsSync): string {
  if (arg !== undefined) return arg;
  if (env.REGISTRY_CONFIGURATION_PATH) return env.REGISTRY_CONFIGURATION_PATH;
  return exists(V3_CONFIG_PATH) || !exists(V2_CONFIG_PATH) ? V3_CONFIG_PATH : V2_CONFIG_PATH;
}

const invalid = (message: string, cause?: unknown): ConfigError => new ConfigError(message, { cause });

/** Loads, overrides, validates, converts and freezes. */
export function loadConfig(source: ConfigSource): { config: Config; warnings: string[] } {
  let text = source.text;
  const where = source.path ?? 'configuration';
  if (text === undefined) {
    try {
      text = readFileSync(source.path ?? '', 'utf8');
    } catch (err) {
      throw invalid(`cannot read configuration file ${where}: ${(err as Error).message}`, err);
    }
  }
  let raw: unknown;
  try {
    // `json`: a key given twice takes the last value, as distribution's YAML parser (its own
    // documented example repeats `redis.tls`).
    raw = yaml.load(text, { json: true });
  } catch (err) {
    throw invalid(`${where} is not valid YAML: ${(err as Error).message}`, err);
  }
  if (raw === undefined || raw === null) raw = {};
  if (typeof raw !== 'object' || Array.isArray(raw)) throw invalid(`${where} must be a YAML mapping`);
  const tree = raw as Record<string, unknown>;
  const warnings = applyEnvOverrides(tree, source.env ?? {});
  // `storage: s3` (or `REGISTRY_STORAGE=s3`) names a driver with no parameters, as distribution.
  if (typeof tree.storage === 'string') tree.storage = { [tree.storage]: {} };
  warnings.push(...storageWarnings(tree));
  warnings.push(...checkKeys(tree, KNOWN_KEYS, []));
  warnings.push(...v3Settings(tree));
  if (!validateConfig(tree)) throw invalid(describeAll(validateConfig.errors ?? [], tree));
  return { config: deepFreeze(convert(tree, warnings)), warnings };
}

/**
 * Distribution 3's settings read before validation: the deprecated top-level `loglevel` (used when
 * `log.level` is not set), `validation.manifests.indexes.platforms` in any case, Let's Encrypt
 * (refused: no ACME here), HTTP/2 cleartext (warned: HTTP/1.1 only).
 */
function v3Settings(tree: Raw): string[] {
  const warnings: string[] = [];
  if (tree.loglevel !== undefined && tree.loglevel !== null) {
    const log = (tree.log ??= {}) as Raw;
    if (log !== null && typeof log === 'object' && log.level === undefined)
      log.level = typeof tree.loglevel === 'string' ? tree.loglevel.toLowerCase() : tree.loglevel;
  }
  const indexes = tree.validation?.manifests?.indexes as Raw | undefined;
  if (indexes && typeof indexes.platforms === 'string') indexes.platforms = indexes.platforms.toLowerCase();
  const tls = tree.http?.tls as Raw | undefined;
  const le = tls?.letsencrypt as Raw | undefined;
  if (le && typeof le === 'object' && Object.keys(le).length > 0) {
    // distribution uses Let's Encrypt only when no certificate is given.
    if (!tls!.certificate) {
      throw invalid(
        "http.tls.letsencrypt: this registry cannot obtain certificates from Let's Encrypt (no ACME client); give http.tls.certificate and http.tls.key (from certbot, cert-manager or a TLS-terminating proxy) instead",
      );
    }
    warnings.push('http.tls.letsencrypt is not used: http.tls.certificate is set (as distribution)');
  }
  const h2c = tree.http?.h2c as Raw | undefined;
  if (h2c?.enabled === true) {
    warnings.push(
      'http.h2c.enabled: HTTP/2 cleartext is not served: this registry speaks HTTP/1.1 without TLS, so a load balancer in front must too (Cloud Run: turn end-to-end HTTP/2 off)',
    );
  }
  return warnings;
}

/** Warns about ignored and unknown keys, fails on rejected ones. */
function checkKeys(node: Record<string, unknown>, known: KeyTree, path: string[]): string[] {
  const warnings: string[] = [];
  for (const [key, value] of Object.entries(node)) {
    const here = [...path, key];
    const status: KeyStatus | KeyTree | undefined = known[key] ?? (path.length === 1 ? EXTENSION_KEYS[path[0]!]?.[key] : undefined);
    const name = here.join('.');
    if (status === undefined) warnings.push(`${name} is not a known configuration key: it is ignored`);
    else if (status === 'ignored') warnings.push(`${name} is accepted but not implemented by this registry: it is ignored`);
    else if (status === 'rejected') {
      throw invalid(
        path[0] === 'storage'
          ? `${name}: only the filesystem and s3 storage drivers are supported`
          : `${name} is not implemented by this registry yet; refusing to start without it`,
      );
    } else if (typeof status === 'object' && value !== null && typeof value === 'object' && !Array.isArray(value)) {
      warnings.push(...checkKeys(value as Record<string, unknown>, status, here));
    }
  }
  return warnings;
}

/** One message per wrong value: an `anyOf` failure stands for the alternatives' errors at its path. */
function describeAll(errors: ErrorObject[], tree: Record<string, unknown>): string {
  const anyOf = new Set(errors.filter((e) => e.keyword === 'anyOf').map((e) => e.instancePath));
  const shown = errors.filter((e) => e.keyword === 'anyOf' || e.keyword === 'propertyNames' || (!anyOf.has(e.instancePath) && e.propertyName === undefined));
  return [...new Set(shown.map((e) => describe(e, tree)))].join('; ');
}

function describe(e: ErrorObject, tree: Record<string, unknown>): string {
  const path = e.instancePath.split('/').filter(Boolean);
  const value = path.reduce<unknown>((n, k) => (n as Record<string, unknown> | undefined)?.[k], tree);
  const name = path.join('.') || 'configuration';
  const shown = JSON.stringify(value);
  switch (e.keyword) {
    case 'goDuration':
      return `${name}: ${shown} is not a duration like 168h`;
    case 'enum':
      return `${name}: ${shown} must be one of ${(e.params.allowedValues as unknown[]).join(', ')}`;
    case 'type':
      return `${name}: ${shown} must be a ${String(e.params.type).replace(',', ' or ')}`;
    case 'pattern':
      return `${name}: ${shown} is not an http(s) URL`;
    case 'size':
      return `${name}: ${shown} is not a size like 50GiB or 500MB`;
    case 'positiveDuration':
      return `${name}: ${shown} must be a duration above zero`;
    case 'hostedPrefix':
      return `${name}: ${shown} is not a repository name prefix like internal/`;
    case 'regex':
      return `${name}: ${shown} is not a regular expression`;
    case 'anyOf':
      return `${name}: ${shown} must be true, false or a mapping with exclude: [regular expressions]`;
    case 'propertyNames':
      return `${name}: ${JSON.stringify(e.params.propertyName)} is not a registry host like ghcr.io or registry.example.com:5000`;
    case 'additionalProperties':
      return `${name}.${String(e.params.additionalProperty)} is not a known key`;
    case 'required':
      return `${name}.${String(e.params.missingProperty)} is required`;
    case 'maxProperties':
      return `${name}: exactly one access controller may be configured, found ${Object.keys(value as object).join(', ')}`;
    default:
      return `${name}: ${shown} ${e.message ?? 'is invalid'}`;
  }
}

type Raw = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

function convert(t: Raw, warnings: string[]): Config {
  const http = t.http as Raw;
  const net = http.net as 'tcp' | 'unix';
  if (net === 'tcp' && !/^(?:\[[^\]]*\]|[^:]*):\d+$/.test(String(http.addr))) {
    throw invalid(`http.addr: ${JSON.stringify(http.addr)} is not an address like :5000 or host:port`);
  }
  const prefix = `/${String(http.prefix).replace(/^\/+|\/+$/g, '')}/`.replace(/^\/\/$/, '/');
  const headers = Object.fromEntries(Object.entries(http.headers as Raw).map(([k, v]) => [k, Array.isArray(v) ? v.map(String) : [String(v)]]));
  const storage = t.storage as Raw;
  const purging = storage.maintenance.uploadpurging as Raw;
  const level = ({ warning: 'warn', fatal: 'error', panic: 'error' } as Record<string, string>)[t.log.level] ?? t.log.level;
  const proxy = t.proxy as Raw | undefined;
  const remoteurl = proxy?.remoteurl as string | undefined;
  const ttl = proxy ? parseDuration(proxy.ttl) : 0;
  if (remoteurl) noUserinfo('proxy', remoteurl);
  return {
    version: String(t.version),
    log: { level: level as Config['log']['level'], formatter: t.log.formatter, fields: t.log.fields, accesslog: { disabled: t.log.accesslog.disabled } },
    http: {
      addr: String(http.addr),
      net,
      prefix,
      host: http.host,
      secret: http.secret,
      headers,
      tls: http.tls
        ? {
            certificate: http.tls.certificate,
            key: http.tls.key,
            clientcas: http.tls.clientcas,
            clientauth: http.tls.clientauth,
            minimumtls: http.tls.minimumtls,
            ciphersuites: http.tls.ciphersuites,
          }
        : undefined,
      debug: http.debug?.addr ? { addr: http.debug.addr, prometheus: http.debug.prometheus } : undefined,
      draintimeoutms: parseDuration(http.draintimeout),
      cachepage: http.cachepage,
    },
    storage: {
      ...storageDriver(storage),
      delete: { enabled: storage.delete.enabled },
      maintenance: {
        uploadpurging: { enabled: purging.enabled, agems: parseDuration(purging.age), intervalms: parseDuration(purging.interval), dryrun: purging.dryrun },
        readonly: { enabled: storage.maintenance.readonly.enabled },
      },
      redirect: { disable: storage.redirect.disable },
    },
    proxy: remoteurl
      ? {
          ...upstream(proxy!, ttl, isDockerHub(String(proxy!.remoteurl))),
          timeouts: {
            connectms: parseDuration(proxy!.timeouts.connect),
            responsems: parseDuration(proxy!.timeouts.response),
            idlems: parseDuration(proxy!.timeouts.idle),
          },
          upstreams: upstreams(proxy!, ttl),
          // `0` turns the cap off, as `ttl: 0` turns expiry off.
          maxsizebytes: tryParseSize(proxy!.maxsize) || undefined,
          touchonhit: proxy!.touchonhit,
          lockstalems: Math.max(2000, parseDuration(proxy!.lockstale)),
          overtake: { minratebytes: tryParseSize(proxy!.overtake.minrate)!, afterms: parseDuration(proxy!.overtake.after) },
          hosted: hostedPrefixes(proxy!, upstream(proxy!, ttl, isDockerHub(String(proxy!.remoteurl))).dockerhub),
          hostedanonymouspush: proxy!.hostedanonymouspush,
          exec: proxy!.exec
            ? {
                command: String(proxy!.exec.command),
                lifetimems: proxy!.exec.lifetime === undefined || proxy!.exec.lifetime === null ? undefined : Math.max(0, parseDuration(proxy!.exec.lifetime)),
              }
            : undefined,
          // distribution 3: `0` is the default too.
          cachewritetimeoutms: parseDuration(proxy!.cachewritetimeout) || parseDuration(defaultOf('proxy.cachewritetimeout') as string),
          budget: { reserve: proxy!.budget.reserve, recheckms: parseDuration(proxy!.budget.recheck) },
          maxupstreamconns: proxy!.maxupstreamconns,
        }
      : undefined,
    catalog: { maxentries: t.catalog.maxentries },
    tags: { maxtags: t.tags.maxtags || (defaultOf('tags.maxtags') as number) },
    validation: validationConfig(t.validation as Raw),
    auth: authConfig(t.auth as Raw | undefined),
    health: healthConfig(t.health as Raw),
    redis: t.redis === undefined || t.redis === null ? undefined : redisConfig(t.redis as Raw, warnings),
    notifications: notificationsConfig(t.notifications),
  };
}

/** The sections of `storage` that are not a driver (distribution's `Storage.Type`). */
const STORAGE_SETTINGS = ['maintenance', 'cache', 'delete', 'redirect', 'tag'];

/** The one configured driver and its parameters; filesystem at `/var/lib/registry` when none is. */
function storageDriver(storage: Raw): Pick<Config['storage'], 'driver' | 'filesystem' | 's3'> {
  const drivers = Object.keys(storage).filter((k) => !STORAGE_SETTINGS.includes(k));
  if (drivers.length > 1) throw invalid(`storage: exactly one storage driver may be configured, found ${drivers.join(', ')}`);
  if (drivers[0] === 's3') {
    if (storage.s3 === null || typeof storage.s3 !== 'object' || Array.isArray(storage.s3)) throw invalid('storage.s3 must be a mapping');
    return { driver: 's3', s3: s3Config(storage.s3 as Raw) };
  }
  return {
    driver: 'filesystem',
    filesystem: { rootdirectory: resolve(String(storage.filesystem?.rootdirectory ?? defaultOf('storage.filesystem.rootdirectory'))) },
  };
}

/** Keys of a driver accepted with a warning because this registry cannot honour them as given. */
function storageWarnings(tree: Raw): string[] {
  const s3 = (tree.storage as Raw | undefined)?.s3 as Raw | undefined;
  if (!s3 || typeof s3 !== 'object') return [];
  const v4 = s3.v4auth;
  return v4 === false || v4 === 'false' || v4 === 'False' || v4 === 'FALSE' || v4 === 'f' || v4 === 'F' || v4 === '0'
    ? ['storage.s3.v4auth: false (signature version 2) is not supported by this registry: requests are signed with version 4']
    : [];
}

/**
 * `validation`: distribution checks pushed manifests unless `disabled` (or `enabled: false` with
 * no `disabled`); checked, an index's children must all be present unless `indexes.platforms`
 * says `none` or `list`.
 */
function validationConfig(v: Raw): Config['validation'] {
  const enabled = v.enabled === true || v.disabled !== true;
  const indexes = (v.manifests?.indexes ?? {}) as Raw;
  const platforms = enabled ? ((indexes.platforms as 'all' | 'none' | 'list' | undefined) ?? 'all') : 'none';
  return { indexes: { platforms, platformlist: ((indexes.platformlist ?? []) as Raw[]).map((p) => ({ architecture: p.architecture, os: p.os })) } };
}

function healthConfig(h: Raw): Config['health'] {
  // Every check's interval and timeout have this default (keys.ts), which `0` means too: a zero
  // timeout would wait for the OS.
  const period = parseDuration(defaultOf('health.storagedriver.interval') as string);
  const interval = (v: string | number): number => parseDuration(v) || period;
  const timeout = interval;
  return {
    storagedriver: { enabled: h.storagedriver.enabled, intervalms: interval(h.storagedriver.interval), threshold: h.storagedriver.threshold },
    file: (h.file as Raw[]).map((f) => ({ file: resolve(String(f.file)), intervalms: interval(f.interval) })),
    http: (h.http as Raw[]).map((c) => ({
      uri: String(c.uri),
      headers: Object.fromEntries(Object.entries((c.headers ?? {}) as Raw).map(([k, v]) => [k, Array.isArray(v) ? v.map(String) : [String(v)]])),
      statuscode: c.statuscode,
      timeoutms: timeout(c.timeout),
      intervalms: interval(c.interval),
      threshold: c.threshold,
    })),
    tcp: (h.tcp as Raw[]).map((c) => ({ addr: String(c.addr), timeoutms: timeout(c.timeout), intervalms: interval(c.interval), threshold: c.threshold })),
  };
}

/** `auth`: the one configured controller (`none` and empty sections leave the registry open). */
function authConfig(auth: Raw | undefined): Config['auth'] {
  if (auth?.htpasswd) return { htpasswd: { realm: auth.htpasswd.realm, path: resolve(String(auth.htpasswd.path)) } };
  if (auth?.token) {
    const t = auth.token as Raw;
    return { token: { realm: t.realm, service: t.service, issuer: t.issuer, rootcertbundle: resolve(String(t.rootcertbundle)), autoredirect: t.autoredirect } };
  }
  if (auth?.silly) return { silly: { realm: auth.silly.realm, service: auth.silly.service } };
  return undefined;
}

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

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}
