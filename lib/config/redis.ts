/**
 * `redis:` as distribution reads it, in both generations of its keys: 2.8's `addr`, `password`,
 * `db`, `dialtimeout`, `readtimeout`, `writetimeout` and `pool: {maxidle, maxactive, idletimeout}`,
 * and 3.x's go-redis `UniversalOptions` (`addrs`, `username`, `clientname`, `maxretries`,
 * `minretrybackoff`, `maxretrybackoff`, the pool sizes, ...) with `tls: {certificate, key, rootcas}`
 * (`clientcas` in 3.0). Here Redis coordinates the replicas of one cache (docs/replicas.md);
 * distribution uses it as a blob descriptor cache. One server, or with `mastername` the primary a
 * group of Sentinels (`addrs`) names, as go-redis's failover client; several `addrs` without
 * `mastername`, a Redis Cluster, as go-redis's universal client (those nodes are where the cluster's
 * layout is first asked for).
 * `addr` is 2.8's and `addrs` 3.x's: given both, `addrs` is used, as `registry:3` does, and
 * `addr` is warned about.
 */
import { ConfigError } from '../errors.js';
import { parseDuration, tryParseDuration } from './duration.js';
import { checked, converted, defaultAt, extension, ignored as I, section, type KeyDef } from './key-def.js';

const invalid = (message: string): ConfigError => new ConfigError(`redis.${message}`);

type Raw = Record<string, unknown>;

/**
 * `redis:` (one server), for the coordination of replicas. Durations in milliseconds; go-redis's
 * defaults where the file says nothing (or `0`).
 */
export interface RedisConfig {
  /** The server; with `sentinel`, the first Sentinel (for messages). */
  readonly host: string;
  readonly port: number;
  /** Set with several `addrs` and no `mastername`: a Redis Cluster, whose layout these nodes give. */
  readonly cluster?: { readonly nodes: readonly { readonly host: string; readonly port: number }[] };
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

/**
 * `redis:`'s keys, 2.8's and 3.x's (go-redis `UniversalOptions`), each checked by `redisConfig`
 * (no schema). The defaults are go-redis's (distribution 3): a dead server must not hold a
 * request for ever.
 */
const KEYS: KeyDef = section(
  {
    addr: checked(),
    addrs: checked(),
    username: checked(),
    password: checked(),
    db: checked(0),
    clientname: checked(),
    dialtimeout: checked('5s'),
    readtimeout: checked('3s'),
    // Not stated: as `readtimeout`.
    writetimeout: checked(),
    maxretries: checked(3),
    minretrybackoff: checked('8ms'),
    maxretrybackoff: checked('512ms'),
    // One connection multiplexes every command (no pool).
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
    tls: section({ enabled: checked(), certificate: checked(), key: checked(), clientcas: checked(), rootcas: checked() }),
    mastername: checked(),
    sentinelusername: checked(),
    sentinelpassword: checked(),
    prefix: extension(checked('registry-mirror')),
  },
  {},
);

/** `redis:` and its conversion: undefined when it names no server. */
export const REDIS_KEYS = converted(KEYS, (raw: Raw | undefined, warnings): RedisConfig | undefined =>
  raw === undefined || raw === null ? undefined : redisConfig(raw, warnings),
);

/** The default of `redis.<key>`. */
const defaultOf = <T>(key: string): T => defaultAt(KEYS, key) as T;

/** `host:port`, `[v6]:port` or `host` (port 6379). */
function parseAddr(addr: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+))(?::(\d+))?$/.exec(addr.trim());
  const port = m?.[3] === undefined ? 6379 : Number(m[3]);
  if (!m || !(port > 0 && port < 65536)) throw invalid(`addr: ${JSON.stringify(addr)} is not an address like redis:6379`);
  return { host: (m[1] ?? m[2])!, port };
}

/** Checks and converts `redis`, or undefined when it names no server (as distribution: Redis off); `warnings` receives what is ignored. */
export function redisConfig(raw: Raw, warnings: string[] = []): RedisConfig | undefined {
  const str = (key: string, from: Raw = raw, path = key): string | undefined => {
    const v = from[key];
    if (v === undefined || v === null || v === '') return undefined;
    if (typeof v === 'object') throw invalid(`${path}: ${JSON.stringify(v)} must be a string`);
    return String(v);
  };
  const duration = (key: string, fallback = parseDuration(defaultOf<string>(key))): number => {
    const v = raw[key];
    if (v === undefined || v === null) return fallback;
    const ms = tryParseDuration(v);
    if (ms === undefined || ms < 0) throw invalid(`${key}: ${JSON.stringify(v)} is not a duration like 5s`);
    // 0 is "none" in 2.8 and "the default" in 3.x; none would let a dead server hang requests.
    return ms === 0 ? fallback : ms;
  };
  const int = (key: string, min: number): number => {
    const v = raw[key];
    if (v === undefined || v === null) return defaultOf<number>(key);
    const n = typeof v === 'number' || (typeof v === 'string' && /^\s*-?\d+\s*$/.test(v)) ? Number(v) : NaN;
    if (!Number.isSafeInteger(n) || n < min) throw invalid(`${key}: ${JSON.stringify(v)} must be an integer of at least ${min}`);
    return n;
  };
  let addrs: string[] = [];
  if (raw.addrs !== undefined && raw.addrs !== null) {
    const list = typeof raw.addrs === 'string' ? raw.addrs.split(',') : raw.addrs;
    if (!Array.isArray(list) || !list.every((a) => typeof a === 'string')) throw invalid(`addrs: ${JSON.stringify(raw.addrs)} must be a list of addresses`);
    addrs = list.map((a) => a.trim()).filter((a) => a !== '');
  }
  const addr = str('addr');
  const mastername = str('mastername');
  if (addr && addrs.length > 0) {
    if (addrs.length !== 1 || addrs[0] !== addr)
      warnings.push(`redis.addr (${addr}) is ignored: redis.addrs is set (registry:3 reads addrs only; registry:2 read addr only)`);
  } else if (addr) {
    if (mastername) throw invalid(`mastername: Sentinels are named by redis.addrs, not redis.addr (registry:2's key)`);
    addrs = [addr];
  }
  if (addrs.length === 0) return undefined;
  for (const k of ['sentinelusername', 'sentinelpassword'])
    if (raw[k] && !mastername) warnings.push(`redis.${k} is ignored: there is no redis.mastername (Sentinel)`);
  const nodes = addrs.map(parseAddr);
  const { host, port } = nodes[0]!;
  const cluster = addrs.length > 1 && !mastername;
  const db = int('db', 0);
  // go-redis's cluster client ignores DB: a cluster has database 0 only.
  if (cluster && db !== 0)
    warnings.push(`redis.db (${db}) is ignored: a Redis Cluster (several redis.addrs) has database 0 only; redis.prefix keeps caches apart`);
  const readMs = duration('readtimeout');
  const tls = raw.tls;
  let tlsConfig: RedisConfig['tls'];
  if (tls !== undefined && tls !== null) {
    if (typeof tls !== 'object' || Array.isArray(tls)) throw invalid('tls must be a mapping');
    const t = tls as Raw;
    const cas = t.rootcas ?? t.clientcas;
    if (cas !== undefined && (!Array.isArray(cas) || !cas.every((c) => typeof c === 'string')))
      throw invalid(`tls.rootcas: ${JSON.stringify(cas)} must be a list of file paths`);
    const certificate = str('certificate', t, 'tls.certificate');
    const key = str('key', t, 'tls.key');
    if (Boolean(certificate) !== Boolean(key)) throw invalid('tls: certificate and key go together (mutual TLS)');
    const enabled = t.enabled === undefined ? undefined : t.enabled === true || t.enabled === 'true';
    if (enabled !== false && (enabled || certificate || (cas as string[] | undefined)?.length)) {
      tlsConfig = { certificate, key, rootcas: (cas as string[] | undefined) ?? [] };
    }
  }
  const prefix = str('prefix') ?? defaultOf<string>('prefix');
  if (!/^[A-Za-z0-9._:/-]+$/.test(prefix)) throw invalid(`prefix: ${JSON.stringify(prefix)} may hold letters, digits and . _ : / - only`);
  return {
    host,
    port,
    cluster: cluster ? { nodes } : undefined,
    sentinel: mastername ? { mastername, sentinels: nodes, username: str('sentinelusername'), password: str('sentinelpassword') } : undefined,
    username: str('username'),
    password: str('password'),
    db: cluster ? 0 : db,
    clientname: str('clientname'),
    dialtimeoutms: duration('dialtimeout'),
    readtimeoutms: readMs,
    writetimeoutms: duration('writetimeout', readMs),
    maxretries: int('maxretries', -1),
    minretrybackoffms: duration('minretrybackoff'),
    maxretrybackoffms: duration('maxretrybackoff'),
    tls: tlsConfig,
    prefix,
  };
}
