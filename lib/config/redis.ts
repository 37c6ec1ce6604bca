/**
 * `redis:` as distribution reads it, in both generations of its keys: 2.8's `addr`, `password`,
 * `db`, `dialtimeout`, `readtimeout`, `writetimeout` and `pool: {maxidle, maxactive, idletimeout}`,
 * and 3.x's go-redis `UniversalOptions` (`addrs`, `username`, `clientname`, `maxretries`,
 * `minretrybackoff`, `maxretrybackoff`, the pool sizes, ...) with `tls: {certificate, key, rootcas}`
 * (`clientcas` in 3.0). Here Redis coordinates the replicas of one cache (docs/replicas.md);
 * distribution uses it as a blob descriptor cache. One server, or with `mastername` the primary a
 * group of Sentinels (`addrs`) names, as go-redis's failover client; several `addrs` without
 * `mastername` (a Redis Cluster) stop the start-up rather than talk to one node of them.
 * `addr` is 2.8's and `addrs` 3.x's: given both, `addrs` is used, as `registry:3` does, and
 * `addr` is warned about.
 */
import { ConfigError } from '../errors.js';
import { tryParseDuration } from './duration.js';
import type { RedisConfig } from './types.js';

const invalid = (message: string): ConfigError => new ConfigError(`redis.${message}`);

type Raw = Record<string, unknown>;

/** go-redis's defaults (distribution 3): a dead server must not hold a request for ever. */
const DEFAULTS = { dialMs: 5000, readMs: 3000, maxRetries: 3, minBackoffMs: 8, maxBackoffMs: 512 };

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
  const duration = (key: string, fallback: number): number => {
    const v = raw[key];
    if (v === undefined || v === null) return fallback;
    const ms = tryParseDuration(v);
    if (ms === undefined || ms < 0) throw invalid(`${key}: ${JSON.stringify(v)} is not a duration like 5s`);
    // 0 is "none" in 2.8 and "the default" in 3.x; none would let a dead server hang requests.
    return ms === 0 ? fallback : ms;
  };
  const int = (key: string, fallback: number, min: number): number => {
    const v = raw[key];
    if (v === undefined || v === null) return fallback;
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
  if (addrs.length > 1 && !mastername)
    throw invalid(`addrs: ${addrs.join(', ')}: several servers (Redis Cluster) are not supported; name one server, or Sentinels with redis.mastername`);
  for (const k of ['sentinelusername', 'sentinelpassword'])
    if (raw[k] && !mastername) warnings.push(`redis.${k} is ignored: there is no redis.mastername (Sentinel)`);
  const nodes = addrs.map(parseAddr);
  const { host, port } = nodes[0]!;
  const readMs = duration('readtimeout', DEFAULTS.readMs);
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
  const prefix = str('prefix') ?? 'registry-mirror';
  if (!/^[A-Za-z0-9._:/-]+$/.test(prefix)) throw invalid(`prefix: ${JSON.stringify(prefix)} may hold letters, digits and . _ : / - only`);
  return {
    host,
    port,
    sentinel: mastername ? { mastername, sentinels: nodes, username: str('sentinelusername'), password: str('sentinelpassword') } : undefined,
    username: str('username'),
    password: str('password'),
    db: int('db', 0, 0),
    clientname: str('clientname'),
    dialtimeoutms: duration('dialtimeout', DEFAULTS.dialMs),
    readtimeoutms: readMs,
    writetimeoutms: duration('writetimeout', readMs),
    maxretries: int('maxretries', DEFAULTS.maxRetries, -1),
    minretrybackoffms: duration('minretrybackoff', DEFAULTS.minBackoffMs),
    maxretrybackoffms: duration('maxretrybackoff', DEFAULTS.maxBackoffMs),
    tls: tlsConfig,
    prefix,
  };
}
