/**
 * The validated, defaulted and frozen configuration, in distribution's key names
 * (`configuration/configuration.go`). `load.ts` is the only producer. Durations are parsed from Go
 * syntax (`168h`, `5m30s`) into milliseconds. Keys accepted but not implemented are kept verbatim in
 * their section so that warnings and docs can name them.
 */

import type { NotificationsConfig } from './notifications.js';

/** `log:` */
export interface LogConfig {
  readonly level: 'error' | 'warn' | 'info' | 'debug';
  readonly formatter: 'text' | 'json' | 'logstash';
  readonly fields: Readonly<Record<string, unknown>>;
  readonly accesslog: { readonly disabled: boolean };
}

/** `http.tls:` */
export interface TlsConfig {
  readonly certificate?: string;
  readonly key?: string;
  readonly clientcas: readonly string[];
  /**
   * How client certificates are asked for (Go's names, as distribution 3); only with `clientcas`,
   * default `require-and-verify-client-cert`.
   */
  readonly clientauth: 'request-client-cert' | 'require-any-client-cert' | 'verify-client-cert-if-given' | 'require-and-verify-client-cert';
  readonly minimumtls?: string;
  /** Go's names of the TLS 1.2 cipher suites allowed (`config/tls-ciphers.ts`); undefined: node's defaults. */
  readonly ciphersuites?: readonly string[];
}

/** `http:` */
export interface HttpConfig {
  /** `host:port`, `:port`, or a socket path when `net` is `unix`. Default `:5000`. */
  readonly addr: string;
  readonly net: 'tcp' | 'unix';
  /** Route prefix, normalised to start and end with `/` (default `/`). */
  readonly prefix: string;
  readonly host?: string;
  readonly secret?: string;
  /** Extra headers added to every response. */
  readonly headers: Readonly<Record<string, readonly string[]>>;
  readonly tls?: TlsConfig;
  readonly debug?: { readonly addr: string; readonly prometheus: { readonly enabled: boolean; readonly path: string } };
  /** On a stop, how long busy connections may finish before they are cut (`http.draintimeout`, 1 s by default; `0` cuts them at once). */
  readonly draintimeoutms: number;
  /** Extension `http.cachepage` (default true): the cache page for browsers at the root. */
  readonly cachepage: boolean;
}

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

/** `storage.s3:` as distribution's `s3-aws` driver (sizes in bytes). */
export interface S3StorageConfig {
  readonly accesskey?: string;
  readonly secretkey?: string;
  readonly sessiontoken?: string;
  readonly bucket: string;
  /** Default `us-east-1` when `regionendpoint` is set. */
  readonly region: string;
  /** An S3-compatible endpoint (`http://127.0.0.1:7480`); undefined: AWS. */
  readonly regionendpoint?: string;
  /** Path-style addressing; default: true with `regionendpoint` (as distribution 2.8), else false. */
  readonly forcepathstyle: boolean;
  readonly secure: boolean;
  readonly skipverify: boolean;
  readonly v4auth: boolean;
  readonly encrypt: boolean;
  readonly keyid?: string;
  /** Part size of multipart writes (default 10 MiB). */
  readonly chunksize: number;
  readonly multipartcopychunksize: number;
  readonly multipartcopymaxconcurrency: number;
  readonly multipartcopythresholdsize: number;
  /** Key prefix of everything stored ('' for none). */
  readonly rootdirectory: string;
  /** Upper case; `NONE` sends no storage class. */
  readonly storageclass: string;
  readonly objectacl: string;
  readonly useragent?: string;
  readonly usedualstack: boolean;
  readonly accelerate: boolean;
  readonly usefipsendpoint: boolean;
}

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

/**
 * `redis:` (one server), for the coordination of replicas. Durations in milliseconds; go-redis's
 * defaults where the file says nothing (or `0`): dial 5s, read 3s, write as read, 3 retries.
 */
export interface RedisConfig {
  /** The server; with `sentinel`, the first Sentinel (for messages). */
  readonly host: string;
  readonly port: number;
  /** Set with `mastername`: the primary is asked of these Sentinels (`addrs`), and followed across failovers. */
  readonly sentinel?: {
    readonly mastername: string;
    readonly sentinels: readonly { readonly host: string; readonly port: number }[];
    readonly username?: string;
    readonly password?: string;
  };
  readonly username?: string;
  readonly password?: string;
  readonly db: number;
  readonly clientname?: string;
  readonly dialtimeoutms: number;
  readonly readtimeoutms: number;
  readonly writetimeoutms: number;
  /** Retries of a command (`-1`: none). */
  readonly maxretries: number;
  readonly minretrybackoffms: number;
  readonly maxretrybackoffms: number;
  /** Set when the connection uses TLS; `certificate` and `key` for mutual TLS. */
  readonly tls?: { readonly certificate?: string; readonly key?: string; readonly rootcas: readonly string[] };
  /** Extension `redis.prefix` (default `registry-mirror`): the start of every key; one per cache on a shared server. */
  readonly prefix: string;
}

/** `auth:` (one of its members). */
export interface AuthConfig {
  readonly htpasswd?: { readonly realm: string; readonly path: string };
  readonly token?: {
    readonly realm: string;
    readonly service: string;
    readonly issuer: string;
    readonly rootcertbundle: string;
    readonly autoredirect?: boolean;
  };
  readonly silly?: { readonly realm: string; readonly service: string };
}

/** `tags:` (distribution 3): a larger `n` on a tag list is lowered to `maxtags` (default 1000), as v3.1.1. */
export interface TagsConfig {
  readonly maxtags: number;
}

/** `validation:` of pushed manifests (hosted names only): whether an index's children must be present. */
export interface ValidationConfig {
  /** `all` (default): every child; `none`: none (sparse indexes); `list`: those of `platformlist`. */
  readonly indexes: { readonly platforms: 'all' | 'none' | 'list'; readonly platformlist: readonly { readonly architecture?: string; readonly os?: string }[] };
}

/** `catalog:` */
export interface CatalogConfig {
  readonly maxentries: number;
}

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

/** The whole configuration. */
export interface Config {
  readonly version: string;
  readonly log: LogConfig;
  readonly http: HttpConfig;
  readonly storage: StorageConfig;
  readonly proxy?: ProxyConfig;
  readonly auth?: AuthConfig;
  readonly catalog: CatalogConfig;
  readonly tags: TagsConfig;
  readonly health: HealthConfig;
  /** `redis:` with a server named; undefined otherwise (replicas then coordinate through the filesystem, if at all). */
  readonly redis?: RedisConfig;
  readonly validation: ValidationConfig;
  /** `notifications:` (no endpoints: none sent). */
  readonly notifications: NotificationsConfig;
}
