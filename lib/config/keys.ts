/**
 * Every configuration key, defined once: distribution's keys (`configuration/configuration.go`, 2.8
 * and 3.x) with what this registry does with them, and ours (`extension`), each with its schema and
 * default. `schema.ts` derives the key-status tables and the ajv schema from this tree; `load.ts`
 * converts the validated tree into `Config` (`types.ts`), reading a default from here where a `0`
 * also means the default (`defaultOf`).
 */
import { GO_CIPHER_SUITES } from './tls-ciphers.js';
import { defAt, extension, ignored as I, key, map, rejected as R, section, shaped, type KeyDef } from './key-def.js';

const S = key();
const duration = { goDuration: true };
const bool = { type: 'boolean' };
const str = { type: 'string' };
const count = { type: 'integer', minimum: 0 };
const url = { type: 'string', pattern: '^https?://[^/]+' };
/** `true`, `false`, or `{exclude: [regex, ...]}`. */
const immutableTags = {
  anyOf: [bool, { type: 'object', additionalProperties: false, properties: { exclude: { type: 'array', items: { type: 'string', regex: true } } } }],
};
/** Extension `freshness`: tag patterns (regular expressions) and how long a checked tag is served unasked. */
const freshness = { type: 'object', propertyNames: { regex: true }, additionalProperties: duration };
/** Extension `dockerhub`: whether an upstream serves Docker Hub's names. */
const dockerHub = { enum: ['auto', true, false] };
const headers = { type: 'object', additionalProperties: { type: ['string', 'array'], items: str } };
/** `http.tls.clientauth`: Go's `tls.ClientAuthType` names, as distribution 3. */
const CLIENT_AUTH_MODES = ['request-client-cert', 'require-any-client-cert', 'verify-client-cert-if-given', 'require-and-verify-client-cert'];
/** A registry host as clients name it: `ghcr.io`, `registry.example.com:5000`. */
const REGISTRY_HOST_PATTERN = '^[a-z0-9]+(?:[.-][a-z0-9]+)*(?::[0-9]+)?$';
/** A health check's `interval` and `timeout` (distribution's; `0` means it too: a zero timeout would wait for the OS). */
const CHECK_PERIOD = { ...duration, default: '10s' };

/** The root of the configuration. */
export const CONFIG_KEYS: KeyDef = section({
  version: key({ type: ['string', 'number'], default: '0.1' }),
  // Deprecated in distribution: used when `log.level` is not set (load.ts).
  loglevel: S,
  log: section(
    {
      level: key({ enum: ['error', 'warn', 'warning', 'info', 'debug', 'fatal', 'panic'], default: 'info' }),
      formatter: key({ enum: ['text', 'json', 'logstash'], default: 'text' }),
      fields: map({ type: 'object', default: {} }),
      accesslog: section({ disabled: key({ ...bool, default: false }) }, { default: {} }),
      hooks: I,
      reportcaller: I,
    },
    { default: {} },
  ),
  storage: section(
    {
      filesystem: section({ rootdirectory: key({ ...str, minLength: 1, default: '/var/lib/registry' }), maxthreads: I }),
      // Checked key by key in s3.ts, with distribution's lenient booleans and integers.
      s3: section(
        {
          accesskey: S,
          secretkey: S,
          sessiontoken: S,
          region: S,
          regionendpoint: S,
          forcepathstyle: S,
          bucket: S,
          encrypt: S,
          keyid: S,
          secure: S,
          skipverify: S,
          v4auth: S,
          chunksize: S,
          multipartcopychunksize: S,
          multipartcopymaxconcurrency: S,
          multipartcopythresholdsize: S,
          rootdirectory: S,
          storageclass: S,
          useragent: S,
          objectacl: S,
          usedualstack: S,
          accelerate: S,
          usefipsendpoint: S,
          loglevel: I,
          redirectendpoint: I,
        },
        {},
      ),
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
  http: section(
    {
      addr: key({ type: ['string', 'number'], default: ':5000' }),
      net: key({ enum: ['tcp', 'unix'], default: 'tcp' }),
      prefix: key({ ...str, default: '/' }),
      host: key(str),
      secret: key(str),
      relativeurls: I,
      draintimeout: key({ ...duration, default: '1s' }),
      cachepage: extension(key({ ...bool, default: true })),
      headers: map({ ...headers, default: {} }),
      // `letsencrypt` without a certificate refuses to start (load.ts): this registry does no ACME.
      tls: section({
        certificate: key(str),
        key: key(str),
        clientcas: key({ type: 'array', items: str, default: [] }),
        clientauth: key({ enum: CLIENT_AUTH_MODES, default: 'require-and-verify-client-cert' }),
        ciphersuites: key({ type: 'array', items: { enum: Object.keys(GO_CIPHER_SUITES) } }),
        minimumtls: key({ enum: ['tls1.2', 'tls1.3'] }),
        letsencrypt: section({ cachefile: I, email: I, hosts: I, directoryurl: I }),
      }),
      debug: section({
        addr: key(str),
        prometheus: section({ enabled: key({ ...bool, default: false }), path: key({ ...str, default: '/metrics' }) }, { default: {} }),
      }),
      http2: section({ disabled: I }),
      h2c: section({ enabled: I }),
    },
    { default: {} },
  ),
  proxy: section({
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
    immutabletags: extension(key({ ...immutableTags, default: false })),
    freshness: extension(map(freshness)),
    budget: extension(
      section({ reserve: key({ ...count, default: 5 }), recheck: key({ ...duration, positiveDuration: true, default: '60s' }) }, { default: {} }),
    ),
    maxupstreamconns: extension(key({ type: 'integer', minimum: 1, default: 64 })),
    dockerhub: extension(key({ ...dockerHub, default: 'auto' })),
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
          properties: { remoteurl: url, username: str, password: str, ttl: duration, immutabletags: immutableTags, freshness, dockerhub: dockerHub },
        },
      }),
    ),
  }),
  health: section(
    {
      storagedriver: section(
        { enabled: key({ ...bool, default: false }), interval: key(CHECK_PERIOD), threshold: key({ ...count, default: 0 }) },
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
            headers,
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
  ),
  // 2.8 and 3.x (go-redis UniversalOptions); one server or a Sentinel group, whose connection ioredis
  // multiplexes (no pool). Checked key by key in redis.ts.
  redis: section(
    {
      addr: S,
      addrs: S,
      username: S,
      password: S,
      db: S,
      clientname: S,
      dialtimeout: S,
      readtimeout: S,
      writetimeout: S,
      maxretries: S,
      minretrybackoff: S,
      maxretrybackoff: S,
      pool: section({ maxidle: I, maxactive: I, idletimeout: I }),
      poolsize: I,
      pooltimeout: I,
      poolfifo: I,
      minidleconns: I,
      maxidleconns: I,
      maxactiveconns: I,
      connmaxidletime: I,
      connmaxlifetime: I,
      protocol: I,
      contexttimeoutenabled: I,
      readonly: I,
      routebylatency: I,
      routerandomly: I,
      maxredirects: I,
      disableidentity: I,
      identitysuffix: I,
      unstableresp3: I,
      tls: section({ enabled: S, certificate: S, key: S, clientcas: S, rootcas: S }),
      mastername: S,
      sentinelusername: S,
      sentinelpassword: S,
      prefix: extension(S),
    },
    {},
  ),
  catalog: section({ maxentries: key({ type: 'integer', minimum: 1, default: 1000 }) }, { default: {} }),
  // distribution 3.1.1: `0` (or unset) is 1000, a negative value an error.
  tags: section({ maxtags: key({ ...count, default: 1000 }) }, { default: {} }),
  validation: section(
    {
      enabled: key(bool),
      disabled: key(bool),
      manifests: section({
        urls: section({ allow: I, deny: I }),
        indexes: section({
          // Lower-cased by load.ts first, as distribution does.
          platforms: key({ enum: ['all', 'none', 'list'] }),
          platformlist: shaped({ architecture: S, os: S }, { type: 'array', items: { type: 'object', properties: { architecture: str, os: str } } }),
        }),
      }),
    },
    { default: {} },
  ),
  auth: section(
    {
      htpasswd: section({ realm: key(str), path: key({ ...str, minLength: 1 }) }, { required: ['realm', 'path'] }),
      token: section(
        {
          realm: key(str),
          service: key(str),
          issuer: key(str),
          rootcertbundle: key({ ...str, minLength: 1 }),
          autoredirect: key({ ...bool, default: false }),
          jwks: R,
          signingalgorithms: I,
        },
        { required: ['realm', 'service', 'issuer', 'rootcertbundle'] },
      ),
      silly: section({ realm: key(str), service: key(str) }, { required: ['realm', 'service'] }),
      none: I,
    },
    { maxProperties: 1 },
  ),
  // Checked key by key in notifications.ts (an endpoint's keys too: a list is not walked here).
  notifications: section({ events: section({ includereferences: S }), endpoints: S }),
  middleware: I,
  reporting: I,
  compatibility: section({ schema1: section({ signingkeyfile: I, enabled: I }) }),
  policy: section({ repository: section({ classes: I }) }),
});

/** The default of the key at `path` (dotted), as its definition states it. */
export function defaultOf(path: string): unknown {
  return defAt(CONFIG_KEYS, path).schema?.default;
}
