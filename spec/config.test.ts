/**
 * Configuration: distribution's file format, REGISTRY_* overrides, defaults, warnings for keys we
 * do not implement, and failures that name the key.
 */
import { readFileSync } from 'node:fs';
import { loadConfig, resolveConfigPath } from '../lib/config/load.js';
import { tryParseDuration } from '../lib/config/duration.js';

const load = (text: string, env: NodeJS.ProcessEnv = {}) => loadConfig({ text, env });

describe('configuration', () => {
  test('defaults match distribution', () => {
    const { config, warnings } = load('version: 0.1\nproxy:\n  remoteurl: https://registry-1.docker.io/\n');
    expect(warnings).toEqual([]);
    expect(config.http.addr).toBe(':5000');
    expect(config.http.net).toBe('tcp');
    expect(config.http.prefix).toBe('/');
    expect(config.storage.driver).toBe('filesystem');
    expect(config.storage.filesystem?.rootdirectory).toBe('/var/lib/registry');
    expect(config.storage.delete.enabled).toBe(false);
    expect(config.storage.maintenance.uploadpurging).toEqual({ enabled: true, agems: 168 * 3600_000, intervalms: 24 * 3600_000, dryrun: false });
    expect(config.proxy).toEqual({
      remoteurl: 'https://registry-1.docker.io',
      username: undefined,
      password: undefined,
      ttlms: 168 * 3600_000,
      timeouts: { connectms: 10_000, responsems: 30_000, idlems: 60_000 },
      immutabletags: undefined,
      dockerhub: true,
      upstreams: {},
      maxsizebytes: undefined,
      touchonhit: true,
      lockstalems: 10_000,
      overtake: { minratebytes: 128 * 1024, afterms: 5000 },
      hosted: [],
      hostedanonymouspush: false,
    });
    expect(config.catalog.maxentries).toBe(1000);
    expect(config.log).toEqual({ level: 'info', formatter: 'text', fields: {}, accesslog: { disabled: false } });
  });

  test('proxy.overtake: a size per second and a duration, REGISTRY_PROXY_OVERTAKE_* overrides, 0 turns it off, nonsense names the key', () => {
    const base = 'version: 0.1\nproxy:\n  remoteurl: https://registry-1.docker.io\n';
    const set = load(`${base}  overtake:\n    minrate: 1MiB\n    after: 2s\n`);
    expect(set.warnings).toEqual([]);
    expect(set.config.proxy?.overtake).toEqual({ minratebytes: 1024 * 1024, afterms: 2000 });
    expect(load(base, { REGISTRY_PROXY_OVERTAKE_MINRATE: '0', REGISTRY_PROXY_OVERTAKE_AFTER: '500ms' }).config.proxy?.overtake).toEqual({ minratebytes: 0, afterms: 500 });
    expect(() => load(`${base}  overtake:\n    minrate: fast\n`)).toThrow(/proxy\.overtake\.minrate: "fast" is not a size/);
    expect(() => load(`${base}  overtake:\n    after: 0s\n`)).toThrow(/proxy\.overtake\.after: "0s" must be a duration above zero/);
    expect(() => load(`${base}  overtake:\n    after: soon\n`)).toThrow(/proxy\.overtake\.after: "soon" is not a duration/);
    expect(load(`${base}  overtake:\n    racers: 2\n`).warnings).toEqual(['proxy.overtake.racers is not a known configuration key: it is ignored']);
  });

  test('redis: distribution 2.8 keys (addr, password, db, timeouts, pool) and REGISTRY_REDIS_* overrides', () => {
    const base = 'version: 0.1\nproxy:\n  remoteurl: https://registry-1.docker.io\n';
    const { config, warnings } = load(`${base}redis:\n  addr: redis.internal:6380\n  password: asecret\n  db: 2\n  dialtimeout: 10ms\n  readtimeout: 20ms\n  writetimeout: 30ms\n  pool:\n    maxidle: 16\n    maxactive: 64\n    idletimeout: 300s\n`);
    expect(config.redis).toEqual({
      host: 'redis.internal',
      port: 6380,
      username: undefined,
      password: 'asecret',
      db: 2,
      clientname: undefined,
      dialtimeoutms: 10,
      readtimeoutms: 20,
      writetimeoutms: 30,
      maxretries: 3,
      minretrybackoffms: 8,
      maxretrybackoffms: 512,
      tls: undefined,
      prefix: 'registry-mirror',
    });
    expect(warnings).toEqual(['redis.pool.maxidle', 'redis.pool.maxactive', 'redis.pool.idletimeout'].map((k) => `${k} is accepted but not implemented by this registry: it is ignored`));
    const env = load(base, { REGISTRY_REDIS_ADDR: '127.0.0.1', REGISTRY_REDIS_PASSWORD: 'x', REGISTRY_REDIS_DB: '1', REGISTRY_REDIS_PREFIX: 'mirror-eu' });
    expect(env.warnings).toEqual([]);
    expect(env.config.redis).toMatchObject({ host: '127.0.0.1', port: 6379, password: 'x', db: 1, dialtimeoutms: 5000, readtimeoutms: 3000, writetimeoutms: 3000, prefix: 'mirror-eu' });
    expect(load(base).config.redis).toBeUndefined();
  });

  test('redis: distribution 3 keys (addrs, username, tls with rootcas) and what stops the start-up', () => {
    const base = 'version: 0.1\nproxy:\n  remoteurl: https://registry-1.docker.io\nredis:\n';
    const { config, warnings } = load(`${base}  addrs: ["[::1]:7000"]\n  username: mirror\n  clientname: mirror-1\n  maxretries: 5\n  poolsize: 64\n  tls:\n    rootcas: [/etc/ssl/redis-ca.pem]\n`);
    expect(config.redis).toMatchObject({ host: '::1', port: 7000, username: 'mirror', clientname: 'mirror-1', maxretries: 5, tls: { rootcas: ['/etc/ssl/redis-ca.pem'] } });
    expect(warnings).toEqual(['redis.poolsize is accepted but not implemented by this registry: it is ignored']);
    expect(load(`${base}  addrs: [a:1]\n  tls:\n    certificate: /c.pem\n    key: /k.pem\n    clientcas: [/ca.pem]\n`).config.redis?.tls).toEqual({ certificate: '/c.pem', key: '/k.pem', rootcas: ['/ca.pem'] });
    expect(() => load(`${base}  addrs: [a:1, b:2]\n`)).toThrow(/redis\.addrs: a:1, b:2: several servers \(Redis Cluster\) are not supported/);
    expect(() => load(`${base}  addrs: [a:1]\n  mastername: mymaster\n`)).toThrow(/redis\.mastername is not implemented by this registry yet/);
    expect(() => load(`${base}  addr: a:99999\n`)).toThrow(/redis\.addr: "a:99999" is not an address/);
    expect(() => load(`${base}  addr: a\n  dialtimeout: soon\n`)).toThrow(/redis\.dialtimeout: "soon" is not a duration/);
    expect(() => load(`${base}  addr: a\n  tls:\n    certificate: /c.pem\n`)).toThrow(/redis\.tls: certificate and key go together/);
  });

  test('the official proxy recipe loads, its unimplemented keys warn once each', () => {
    const recipe = `version: 0.1
log:
  fields:
    service: registry
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: /var/lib/registry
http:
  addr: :5000
  headers:
    X-Content-Type-Options: [nosniff]
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
proxy:
  remoteurl: https://registry-1.docker.io
  username: user
  password: secret
`;
    const { config, warnings } = load(recipe);
    expect(config.proxy?.username).toBe('user');
    expect(config.http.headers).toEqual({ 'X-Content-Type-Options': ['nosniff'] });
    expect(warnings).toEqual(['storage.cache is accepted but not implemented by this registry: it is ignored']);
    expect(config.health).toEqual({ storagedriver: { enabled: true, intervalms: 10_000, threshold: 3 }, file: [], http: [], tcp: [] });
  });

  test('config.yml.example loads with no warning', () => {
    const { warnings, config } = load(readFileSync('config.yml.example', 'utf8'));
    expect(warnings).toEqual([]);
    expect(config.proxy?.remoteurl).toBe('https://registry-1.docker.io');
  });

  test('REGISTRY_* variables override keys, create missing sections, and parse values as YAML', () => {
    const { config, warnings } = load('version: 0.1\nhttp:\n  addr: :5000\n', {
      REGISTRY_HTTP_ADDR: '127.0.0.1:6000',
      REGISTRY_PROXY_REMOTEURL: 'http://upstream.test',
      REGISTRY_PROXY_TTL: '4s',
      REGISTRY_STORAGE_DELETE_ENABLED: 'true',
      REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY: '/srv/cache',
      REGISTRY_CATALOG_MAXENTRIES: '50',
      REGISTRY_CONFIGURATION_PATH: '/ignored.yml',
    });
    expect(warnings).toEqual([]);
    expect(config.http.addr).toBe('127.0.0.1:6000');
    expect(config.proxy).toMatchObject({ remoteurl: 'http://upstream.test', ttlms: 4000 });
    expect(config.storage.delete.enabled).toBe(true);
    expect(config.storage.filesystem?.rootdirectory).toBe('/srv/cache');
    expect(config.catalog.maxentries).toBe(50);
  });

  test('overrides match keys case-insensitively and apply in lexical order', () => {
    const { config } = load('version: 0.1\nlog:\n  level: debug\nproxy:\n  remoteurl: http://a\n', {
      REGISTRY_Log_LEVEL: 'error',
      REGISTRY_PROXY: '{remoteurl: "http://b", ttl: 1h}',
      REGISTRY_PROXY_REMOTEURL: 'http://c',
    });
    expect(config.log.level).toBe('error');
    expect(config.proxy).toMatchObject({ remoteurl: 'http://c', ttlms: 3600_000 });
  });

  test('unknown variables and keys warn without failing', () => {
    const { warnings } = load('version: 0.1\nfoo: 1\nhttp:\n  bogus: 2\n', { REGISTRY_FOO_BAR: 'x' });
    expect(warnings).toEqual([
      'REGISTRY_FOO_BAR does not name a known configuration key: it is applied but ignored',
      'foo is not a known configuration key: it is ignored',
      'http.bogus is not a known configuration key: it is ignored',
    ]);
  });

  test.each([
    ['proxy:\n  remoteurl: http://u\n  ttl: 7 days', 'proxy.ttl: "7 days" is not a duration like 168h'],
    ["http:\n  addr: 5000", "http.addr: 5000 is not an address like :5000 or host:port"],
    ['log:\n  level: loud', 'log.level: "loud" must be one of'],
    ['log:\n  formatter: xml', 'log.formatter: "xml" must be one of'],
    ['storage:\n  azure:\n    accountname: a', 'storage.azure: only the filesystem and s3 storage drivers are supported'],
    ['auth:\n  htpasswd:\n    realm: r', 'auth.htpasswd.path is required'],
    ['proxy:\n  remoteurl: ftp://x', 'proxy.remoteurl: "ftp://x" is not an http(s) URL'],
    ['catalog:\n  maxentries: many', 'catalog.maxentries: "many" must be a integer'],
    ['storage:\n  delete:\n    enabled: maybe', 'storage.delete.enabled: "maybe" must be a boolean'],
    ['a: [unclosed', 'is not valid YAML'],
  ])('%j fails naming the key', (text, message) => {
    expect(() => load(`version: 0.1\n${text}\n`)).toThrow(expect.objectContaining({ code: 'ERR_CONFIG_INVALID', message: expect.stringContaining(message) }));
  });

  test('a document that is not a mapping fails', () => {
    expect(() => load('- a list\n')).toThrow(/must be a YAML mapping/);
  });

  test('a missing file fails naming it', () => {
    expect(() => loadConfig({ path: '/nonexistent/config.yml' })).toThrow(/\/nonexistent\/config.yml/);
  });

  test('the result is frozen, prefix normalised, scalar headers become lists', () => {
    const { config } = load('version: 0.1\nhttp:\n  prefix: mirror\n  headers:\n    X-A: b\n');
    expect(config.http.prefix).toBe('/mirror/');
    expect(config.http.headers).toEqual({ 'X-A': ['b'] });
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.http.headers)).toBe(true);
  });

  test('a zero or negative ttl turns expiry off; warning maps to warn', () => {
    expect(load('proxy:\n  remoteurl: http://u\n  ttl: 0').config.proxy?.ttlms).toBe(0);
    expect(load('proxy:\n  remoteurl: http://u\n  ttl: -1h').config.proxy?.ttlms).toBe(0);
    expect(load('log:\n  level: warning').config.log.level).toBe('warn');
  });

  test('the proxy.timeouts extension key is known, validated and overridable', () => {
    const { config, warnings } = load('proxy:\n  remoteurl: http://u\n  timeouts:\n    idle: 2s\n', { REGISTRY_PROXY_TIMEOUTS_CONNECT: '1s' });
    expect(warnings).toEqual([]);
    expect(config.proxy?.timeouts).toEqual({ connectms: 1000, responsems: 30_000, idlems: 2000 });
    expect(() => load('proxy:\n  remoteurl: http://u\n  timeouts:\n    idle: soon\n')).toThrow('proxy.timeouts.idle: "soon" is not a duration like 168h');
  });

  test('the proxy.dockerhub extension: auto by hostname (and for an upstream listed as docker.io), or true/false; env overrides; nonsense fails', () => {
    const hub = (yaml: string, env: NodeJS.ProcessEnv = {}) => load(`proxy:\n${yaml}\n`, env).config.proxy!;
    expect(hub('  remoteurl: https://registry-1.docker.io').dockerhub).toBe(true);
    expect(hub('  remoteurl: https://index.docker.io\n  dockerhub: auto').dockerhub).toBe(true);
    expect(hub('  remoteurl: https://central.example.com').dockerhub).toBe(false);
    expect(hub('  remoteurl: https://central.example.com\n  dockerhub: true').dockerhub).toBe(true);
    expect(hub('  remoteurl: https://registry-1.docker.io\n  dockerhub: false').dockerhub).toBe(false);
    expect(hub('  remoteurl: https://central.example.com', { REGISTRY_PROXY_DOCKERHUB: 'true' }).dockerhub).toBe(true);
    expect(load('proxy:\n  remoteurl: https://central.example.com\n  dockerhub: true\n').warnings).toEqual([]);
    const upstreams = hub(
      [
        '  remoteurl: https://ghcr.io',
        '  upstreams:',
        '    docker.io:',
        '      remoteurl: https://mirror.gcr.io',
        '    quay.io:',
        '      remoteurl: https://quay.io',
        '    hub.local:',
        '      remoteurl: http://10.0.0.7:5000',
        '      dockerhub: true',
        '    plain.local:',
        '      remoteurl: https://registry-1.docker.io',
        '      dockerhub: false',
      ].join('\n'),
    ).upstreams;
    expect(Object.fromEntries(Object.entries(upstreams).map(([h, u]) => [h, u.dockerhub]))).toEqual({ 'docker.io': true, 'quay.io': false, 'hub.local': true, 'plain.local': false });
    expect(() => hub('  remoteurl: https://central.example.com\n  dockerhub: yes please')).toThrow('proxy.dockerhub: "yes please" must be one of auto, true, false');
    expect(() => hub('  remoteurl: https://ghcr.io\n  upstreams:\n    docker.io:\n      remoteurl: https://mirror.gcr.io\n      dockerhub: 1')).toThrow(
      'proxy.upstreams.docker.io.dockerhub: 1 must be one of auto, true, false',
    );
  });

  test('the proxy.immutabletags extension: off by default, true for every tag, or a list of mutable exclusions', () => {
    expect(load('proxy:\n  remoteurl: http://u\n').config.proxy?.immutabletags).toBeUndefined();
    expect(load('proxy:\n  remoteurl: http://u\n  immutabletags: false\n').config.proxy?.immutabletags).toBeUndefined();
    expect(load('proxy:\n  remoteurl: http://u\n  immutabletags: true\n').config.proxy?.immutabletags).toEqual({ exclude: [] });
    const { config, warnings } = load('proxy:\n  remoteurl: http://u\n  immutabletags:\n    exclude: ["^latest$", "-rc"]\n');
    expect(warnings).toEqual([]);
    expect(config.proxy?.immutabletags).toEqual({ exclude: ['^latest$', '-rc'] });
    expect(() => load('proxy:\n  remoteurl: http://u\n  immutabletags:\n    exclude: ["(unclosed"]\n')).toThrow(
      'proxy.immutabletags.exclude.0: "(unclosed" is not a regular expression',
    );
    expect(() => load('proxy:\n  remoteurl: http://u\n  immutabletags: sometimes\n')).toThrow('proxy.immutabletags: "sometimes" must be true, false or a mapping');
  });

  test('the proxy.upstreams extension: registries by host, each with its own URL, credentials, TTL and tag policy', () => {
    const { config, warnings } = load(
      [
        'proxy:',
        '  remoteurl: https://registry-1.docker.io',
        '  ttl: 72h',
        '  upstreams:',
        '    ghcr.io:',
        '      remoteurl: https://ghcr.io/',
        '      username: bot',
        '      password: secret',
        '      ttl: 1h',
        '      immutabletags: true',
        '    registry.local:5000:',
        '      remoteurl: http://10.0.0.5:5000',
      ].join('\n'),
    );
    expect(warnings).toEqual([]);
    expect(config.proxy?.upstreams).toEqual({
      'ghcr.io': { remoteurl: 'https://ghcr.io', username: 'bot', password: 'secret', ttlms: 3600_000, immutabletags: { exclude: [] }, dockerhub: false },
      'registry.local:5000': { remoteurl: 'http://10.0.0.5:5000', username: undefined, password: undefined, ttlms: 72 * 3600_000, immutabletags: undefined, dockerhub: false },
    });
    const bad: Array<[string, string]> = [
      ['    GHCR IO:\n      remoteurl: https://ghcr.io', 'proxy.upstreams: "GHCR IO" is not a registry host'],
      ['    ghcr.io:\n      username: x', 'proxy.upstreams.ghcr.io.remoteurl is required'],
      ['    ghcr.io:\n      remoteurl: https://ghcr.io\n      remoteURL: x', 'proxy.upstreams.ghcr.io.remoteURL is not a known key'],
      ['    ghcr.io:\n      remoteurl: https://ghcr.io\n      ttl: soon', 'proxy.upstreams.ghcr.io.ttl: "soon" is not a duration like 168h'],
      ['    docker.io:\n      remoteurl: https://mirror.gcr.io', 'proxy.upstreams.docker.io: docker.io is already the registry of proxy.remoteurl'],
    ];
    for (const [yaml, message] of bad) {
      expect(() => load(`proxy:\n  remoteurl: https://registry-1.docker.io\n  upstreams:\n${yaml}\n`)).toThrow(message);
    }
  });

  test('Go durations', () => {
    expect(tryParseDuration('168h')).toBe(168 * 3600_000);
    expect(tryParseDuration('1h30m')).toBe(5400_000);
    expect(tryParseDuration('300ms')).toBe(300);
    expect(tryParseDuration('1.5h')).toBe(5400_000);
    expect(tryParseDuration(1_000_000_000)).toBe(1000);
    expect(tryParseDuration('7 days')).toBeUndefined();
    expect(tryParseDuration('10')).toBeUndefined();
  });

  test('the configuration path: argument, then REGISTRY_CONFIGURATION_PATH, then the image default', () => {
    expect(resolveConfigPath('a.yml', { REGISTRY_CONFIGURATION_PATH: 'b.yml' })).toBe('a.yml');
    expect(resolveConfigPath(undefined, { REGISTRY_CONFIGURATION_PATH: 'b.yml' })).toBe('b.yml');
    expect(resolveConfigPath(undefined, {})).toBe('/etc/docker/registry/config.yml');
  });
});
