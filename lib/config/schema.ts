/**
 * Every key of distribution's configuration (`configuration/configuration.go`) with what this
 * registry does with it, and the one ajv schema that validates and defaults the keys it implements
 * (compiled in `config-validator.ts`).
 */
import { isDuration, tryParseDuration } from './duration.js';
import { tryParseSize } from './size.js';
import { isValidName } from '../distribution/reference.js';
import { GO_CIPHER_SUITES } from './tls-ciphers.js';

/**
 * A key's status: `supported` (validated and used), `ignored` (accepted with a warning), `rejected`
 * (start-up fails: silently ignoring it would be unsafe), or `map` (free-form sub-keys).
 */
export type KeyStatus = 'supported' | 'ignored' | 'rejected' | 'map';
/** A tree of keys. */
export interface KeyTree {
  readonly [key: string]: KeyStatus | KeyTree;
}

const S = 'supported';
const I = 'ignored';
const R = 'rejected';
const M = 'map';

/** The official keys. */
export const KNOWN_KEYS: KeyTree = {
  version: S,
  // Deprecated in distribution: used when `log.level` is not set.
  loglevel: S,
  log: { level: S, formatter: S, fields: M, hooks: I, accesslog: { disabled: S }, reportcaller: I },
  storage: {
    filesystem: { rootdirectory: S, maxthreads: I },
    s3: {
      accesskey: S, secretkey: S, sessiontoken: S, region: S, regionendpoint: S, forcepathstyle: S, bucket: S, encrypt: S, keyid: S,
      secure: S, skipverify: S, v4auth: S, chunksize: S, multipartcopychunksize: S, multipartcopymaxconcurrency: S,
      multipartcopythresholdsize: S, rootdirectory: S, storageclass: S, useragent: S, objectacl: S, usedualstack: S, accelerate: S,
      usefipsendpoint: S, loglevel: I, redirectendpoint: I,
    },
    inmemory: R, azure: R, gcs: R, swift: R, oss: R,
    delete: { enabled: S },
    redirect: { disable: S },
    cache: { blobdescriptor: I, blobdescriptorsize: I },
    maintenance: { uploadpurging: { enabled: S, age: S, interval: S, dryrun: S }, readonly: { enabled: S } },
    tag: { concurrencylimit: I },
  },
  auth: {
    silly: { realm: S, service: S },
    token: { realm: S, service: S, issuer: S, rootcertbundle: S, autoredirect: S, jwks: R, signingalgorithms: I },
    htpasswd: { realm: S, path: S },
    none: I,
  },
  middleware: I,
  reporting: I,
  http: {
    addr: S, net: S, prefix: S, host: S, secret: S, relativeurls: I, draintimeout: S,
    // `letsencrypt` without a certificate refuses to start (load.ts): this registry does no ACME.
    tls: { certificate: S, key: S, clientcas: S, clientauth: S, minimumtls: S, ciphersuites: S, letsencrypt: { cachefile: I, email: I, hosts: I, directoryurl: I } },
    debug: { addr: S, prometheus: { enabled: S, path: S } },
    headers: M,
    http2: { disabled: I },
    h2c: { enabled: I },
  },
  // Checked key by key in notifications.ts (an endpoint's keys too: a list is not walked here).
  notifications: { events: { includereferences: S }, endpoints: S },
  // 2.8 and 3.x (go-redis UniversalOptions); one server or a Sentinel group, whose connection ioredis multiplexes (no pool).
  redis: {
    addr: S, addrs: S, username: S, password: S, db: S, clientname: S, dialtimeout: S, readtimeout: S, writetimeout: S,
    maxretries: S, minretrybackoff: S, maxretrybackoff: S,
    pool: { maxidle: I, maxactive: I, idletimeout: I },
    poolsize: I, pooltimeout: I, poolfifo: I, minidleconns: I, maxidleconns: I, maxactiveconns: I, connmaxidletime: I, connmaxlifetime: I,
    protocol: I, contexttimeoutenabled: I, readonly: I, routebylatency: I, routerandomly: I, maxredirects: I, disableidentity: I, identitysuffix: I, unstableresp3: I,
    tls: { enabled: S, certificate: S, key: S, clientcas: S, rootcas: S },
    mastername: S, sentinelusername: S, sentinelpassword: S,
  },
  health: { storagedriver: { enabled: S, interval: S, threshold: S }, file: S, http: S, tcp: S },
  proxy: { remoteurl: S, username: S, password: S, ttl: S, exec: { command: S, lifetime: S }, cachewritetimeout: S },
  catalog: { maxentries: S },
  tags: { maxtags: S },
  compatibility: { schema1: { signingkeyfile: I, enabled: I } },
  validation: {
    enabled: S, disabled: S,
    manifests: { urls: { allow: I, deny: I }, indexes: { platforms: S, platformlist: { architecture: S, os: S } } },
  },
  policy: { repository: { classes: I } },
};

/** Extension keys (ours; the official registry ignores them), by section. Additive only. */
export const EXTENSION_KEYS: Record<string, Record<string, KeyStatus | KeyTree>> = {
  http: { cachepage: S },
  redis: { prefix: S },
  proxy: { timeouts: { connect: S, response: S, idle: S }, immutabletags: S, dockerhub: S, upstreams: M, maxsize: S, touchonhit: S, lockstale: S, hosted: S, hostedanonymouspush: S, overtake: { minrate: S, after: S }, freshness: M, budget: { reserve: S, recheck: S }, maxupstreamconns: S },
};

const duration = { goDuration: true };
const bool = { type: 'boolean' };
const str = { type: 'string' };
const count = { type: 'integer', minimum: 0 };
/** `true`, `false`, or `{exclude: [regex, ...]}`. */
const immutableTags = {
  anyOf: [bool, { type: 'object', additionalProperties: false, properties: { exclude: { type: 'array', items: { type: 'string', regex: true } } } }],
};
/** Extension `freshness`: tag patterns (regular expressions) and how long a checked tag is served unasked. */
const freshness = { type: 'object', propertyNames: { regex: true }, additionalProperties: duration };
/** Extension `dockerhub`: whether an upstream serves Docker Hub's names. */
const dockerHub = { enum: ['auto', true, false] };
/** `http.tls.clientauth`: Go's `tls.ClientAuthType` names, as distribution 3. */
export const CLIENT_AUTH_MODES = ['request-client-cert', 'require-any-client-cert', 'verify-client-cert-if-given', 'require-and-verify-client-cert'];
/** A registry host as clients name it: `ghcr.io`, `registry.example.com:5000`. */
export const REGISTRY_HOST_PATTERN = '^[a-z0-9]+(?:[.-][a-z0-9]+)*(?::[0-9]+)?$';

/** The schema of the implemented keys; everything else is checked by `KNOWN_KEYS`. */
export const CONFIG_SCHEMA = {
  type: 'object',
  properties: {
    version: { type: ['string', 'number'] },
    log: {
      type: 'object',
      default: {},
      properties: {
        level: { enum: ['error', 'warn', 'warning', 'info', 'debug', 'fatal', 'panic'], default: 'info' },
        formatter: { enum: ['text', 'json', 'logstash'], default: 'text' },
        fields: { type: 'object', default: {} },
        accesslog: { type: 'object', default: {}, properties: { disabled: { ...bool, default: false } } },
      },
    },
    storage: {
      type: 'object',
      default: {},
      properties: {
        filesystem: { type: 'object', properties: { rootdirectory: { ...str, minLength: 1, default: '/var/lib/registry' } } },
        // Checked key by key in s3.ts, with distribution's lenient booleans and integers.
        s3: { type: 'object' },
        delete: { type: 'object', default: {}, properties: { enabled: { ...bool, default: false } } },
        redirect: { type: 'object', default: {}, properties: { disable: { ...bool, default: false } } },
        maintenance: {
          type: 'object',
          default: {},
          properties: {
            uploadpurging: {
              type: 'object',
              default: {},
              properties: { enabled: { ...bool, default: true }, age: { ...duration, default: '168h' }, interval: { ...duration, default: '24h' }, dryrun: { ...bool, default: false } },
            },
            readonly: { type: 'object', default: {}, properties: { enabled: { ...bool, default: false } } },
          },
        },
      },
    },
    http: {
      type: 'object',
      default: {},
      properties: {
        addr: { type: ['string', 'number'], default: ':5000' },
        net: { enum: ['tcp', 'unix'], default: 'tcp' },
        prefix: { ...str, default: '/' },
        host: str,
        secret: str,
        draintimeout: { ...duration, default: '1s' },
        cachepage: { ...bool, default: true },
        headers: { type: 'object', default: {}, additionalProperties: { type: ['string', 'array'], items: str } },
        tls: {
          type: 'object',
          properties: {
            certificate: str,
            key: str,
            clientcas: { type: 'array', items: str, default: [] },
            clientauth: { enum: CLIENT_AUTH_MODES },
            ciphersuites: { type: 'array', items: { enum: Object.keys(GO_CIPHER_SUITES) } },
            minimumtls: { enum: ['tls1.2', 'tls1.3'] },
          },
        },
        debug: {
          type: 'object',
          properties: { addr: str, prometheus: { type: 'object', default: {}, properties: { enabled: { ...bool, default: false }, path: { ...str, default: '/metrics' } } } },
        },
      },
    },
    proxy: {
      type: 'object',
      properties: {
        remoteurl: { type: 'string', pattern: '^https?://[^/]+' },
        username: str,
        password: str,
        ttl: { ...duration, default: '168h' },
        exec: { type: 'object', required: ['command'], properties: { command: { ...str, minLength: 1 }, lifetime: duration } },
        cachewritetimeout: duration,
        timeouts: { type: 'object', default: {}, properties: { connect: { ...duration, default: '10s' }, response: { ...duration, default: '30s' }, idle: { ...duration, default: '60s' } } },
        immutabletags: { ...immutableTags, default: false },
        freshness,
        budget: { type: 'object', default: {}, properties: { reserve: { ...count, default: 5 }, recheck: { ...duration, positiveDuration: true, default: '60s' } } },
        maxupstreamconns: { type: 'integer', minimum: 1, default: 64 },
        dockerhub: { ...dockerHub, default: 'auto' },
        maxsize: { size: true },
        touchonhit: { ...bool, default: true },
        lockstale: { ...duration, default: '10s' },
        overtake: { type: 'object', default: {}, properties: { minrate: { size: true, default: '128KiB' }, after: { ...duration, positiveDuration: true, default: '5s' } } },
        hosted: { type: 'array', default: [], items: { type: 'string', hostedPrefix: true } },
        hostedanonymouspush: { ...bool, default: false },
        upstreams: {
          type: 'object',
          default: {},
          propertyNames: { pattern: REGISTRY_HOST_PATTERN },
          additionalProperties: {
            type: 'object',
            required: ['remoteurl'],
            additionalProperties: false,
            properties: {
              remoteurl: { type: 'string', pattern: '^https?://[^/]+' },
              username: str,
              password: str,
              ttl: duration,
              immutabletags: immutableTags,
              freshness,
              dockerhub: dockerHub,
            },
          },
        },
      },
    },
    health: {
      type: 'object',
      default: {},
      properties: {
        storagedriver: {
          type: 'object',
          default: {},
          properties: { enabled: { ...bool, default: false }, interval: { ...duration, default: '10s' }, threshold: { ...count, default: 0 } },
        },
        file: { type: 'array', default: [], items: { type: 'object', required: ['file'], properties: { file: { ...str, minLength: 1 }, interval: duration } } },
        http: {
          type: 'array',
          default: [],
          items: {
            type: 'object',
            required: ['uri'],
            properties: {
              uri: { type: 'string', pattern: '^https?://[^/]+' },
              headers: { type: 'object', additionalProperties: { type: ['string', 'array'], items: str } },
              statuscode: { type: 'integer', minimum: 100, maximum: 599 },
              timeout: duration,
              interval: duration,
              threshold: count,
            },
          },
        },
        tcp: {
          type: 'array',
          default: [],
          items: { type: 'object', required: ['addr'], properties: { addr: { ...str, minLength: 1 }, timeout: duration, interval: duration, threshold: count } },
        },
      },
    },
    // Checked key by key in redis.ts.
    redis: { type: 'object' },
    catalog: { type: 'object', default: {}, properties: { maxentries: { type: 'integer', minimum: 1, default: 1000 } } },
    // distribution: 0 is the default, a negative value an error.
    tags: { type: 'object', default: {}, properties: { maxtags: { type: 'integer', minimum: 0, default: 0 } } },
    validation: {
      type: 'object',
      default: {},
      properties: {
        enabled: bool,
        disabled: bool,
        manifests: {
          type: 'object',
          properties: {
            indexes: {
              type: 'object',
              properties: {
                // Lower-cased by load.ts first, as distribution does.
                platforms: { enum: ['all', 'none', 'list'] },
                platformlist: { type: 'array', items: { type: 'object', properties: { architecture: str, os: str } } },
              },
            },
          },
        },
      },
    },
    auth: {
      type: 'object',
      maxProperties: 1,
      properties: {
        htpasswd: { type: 'object', required: ['realm', 'path'], properties: { realm: str, path: { ...str, minLength: 1 } } },
        token: {
          type: 'object',
          required: ['realm', 'service', 'issuer', 'rootcertbundle'],
          properties: { realm: str, service: str, issuer: str, rootcertbundle: { ...str, minLength: 1 }, autoredirect: bool },
        },
        silly: { type: 'object', required: ['realm', 'service'], properties: { realm: str, service: str } },
      },
    },
  },
};

/**
 * The schema's own keywords, as checks of one value (a keyword fails when its check is false). The
 * validator is compiled from the schema and these by `config-validator.ts`, or ahead of time by
 * the build.
 */
export const CONFIG_KEYWORD_CHECKS = {
  goDuration: (data: unknown): boolean => isDuration(data),
  // Not a duration at all is goDuration's error.
  positiveDuration: (data: unknown): boolean => (tryParseDuration(data) ?? 1) > 0,
  size: (data: unknown): boolean => tryParseSize(data) !== undefined,
  hostedPrefix: (data: unknown): boolean => typeof data === 'string' && isValidName(data.replace(/\/+$/, '')),
  regex: (data: unknown): boolean => isRegex(data),
};

function isRegex(data: unknown): boolean {
  try {
    new RegExp(String(data));
    return true;
  } catch {
    return false;
  }
}
