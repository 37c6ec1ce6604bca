/**
 * Configuration: distribution's file format, REGISTRY_* overrides, defaults, warnings for keys we
 * do not implement, and failures that name the key.
 */
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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
      exec: undefined,
      cachewritetimeoutms: 5 * 60_000,
      // Ours: no freshness window (every tag checked), the budget and connection cap's defaults.
      freshness: [],
      budget: { reserve: 5, recheckms: 60_000 },
      maxupstreamconns: 64,
    });
    expect(config.catalog.maxentries).toBe(1000);
    expect(config.tags.maxtags).toBe(1000);
    expect(config.validation).toEqual({ indexes: { platforms: 'all', platformlist: [] }, urls: { allow: '^$' } });
    expect(config.policy).toEqual({ repository: { classes: [] } });
    expect(config.log).toEqual({ level: 'info', formatter: 'text', fields: {}, accesslog: { disabled: false } });
  });

  test('middleware: the storage middlewares checked as distribution builds them; registry and repository ones, which no build has, refuse the start', () => {
    const dir = mkdtempSync(join(tmpdir(), 'middleware-config-'));
    try {
      const pem = join(dir, 'cf.pem');
      writeFileSync(pem, generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({ type: 'pkcs1', format: 'pem' }));
      const ec = join(dir, 'ec.pem');
      writeFileSync(ec, generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'sec1', format: 'pem' }));
      const storage = (entries: string): string => `version: 0.1\nmiddleware:\n  storage:\n${entries}`;
      const cf = (options: string): string => storage(`    - name: cloudfront\n      options:\n        privatekey: ${pem}\n        keypairid: K1\n${options}`);
      expect(load(storage('')).config.middleware).toEqual({ storage: [] });
      expect(load('version: 0.1\n').config.middleware).toEqual({ storage: [] });
      const loaded = load(
        storage(
          [
            '    - name: cloudfront',
            '      options: {baseurl: cdn.example.com, privatekey: ' + pem + ', keypairid: K1, duration: 90s, ipfilteredby: none}',
            '    - name: rewrite',
            '      options: {host: blobs.example.com}',
            '    - name: redirect',
            '      disabled: true',
            '      options: {baseurl: https://off.example.com}',
          ].join('\n') + '\n',
        ),
      ).config.middleware.storage;
      expect(loaded.map((m) => m.name)).toEqual(['cloudfront', 'rewrite']);
      expect(loaded[0]).toMatchObject({ baseurl: 'https://cdn.example.com/', keypairid: 'K1', durationms: 90_000 });
      expect(loaded[1]).toEqual({ name: 'rewrite', scheme: '', host: 'blobs.example.com', trimpathprefix: '' });
      expect(load(cf('        baseurl: https://cdn.example.com/\n')).config.middleware.storage[0]).toMatchObject({ durationms: 20 * 60_000 });
      // distribution's refusals.
      expect(() => load(storage('    - name: redirect\n'))).toThrow(/middleware\.storage\[0\]: no baseurl provided/);
      expect(() => load(storage('    - name: redirect\n      options: {baseurl: /path}\n'))).toThrow(/unable to parse redirect baseurl/);
      expect(() => load(storage('    - name: gzip\n'))).toThrow(/no storage middleware registered with name: gzip/);
      expect(() => load(cf(''))).toThrow(/no baseurl provided/);
      expect(() => load(cf('        baseurl: cdn.example.com\n        duration: soon\n'))).toThrow(/invalid duration/);
      expect(() => load(cf('        baseurl: cdn.example.com\n        ipfilteredby: everyone\n'))).toThrow(/ipfilteredby only allows/);
      expect(() => load(storage(`    - name: cloudfront\n      options: {baseurl: cdn.example.com, privatekey: ${ec}, keypairid: K1}\n`))).toThrow(
        /failed to decode private key as an rsa private key/,
      );
      expect(() => load(storage(`    - name: cloudfront\n      options: {baseurl: cdn.example.com, privatekey: ${dir}/none.pem, keypairid: K1}\n`))).toThrow(
        /failed to read privatekey file/,
      );
      // Sending AWS's addresses to S3 directly is not built: refused rather than ignored.
      expect(() => load(cf('        baseurl: cdn.example.com\n        ipfilteredby: awsregion\n        awsregion: us-east-1\n'))).toThrow(
        /ipfilteredby: awsregion is not implemented by this registry yet; refusing to start/,
      );
      expect(() => load('version: 0.1\nmiddleware:\n  registry:\n    - name: ARegistryMiddleware\n')).toThrow(/no registry middleware is built into/);
      expect(() => load('version: 0.1\nmiddleware:\n  repository:\n    - name: ARepositoryMiddleware\n')).toThrow(/no repository middleware is built into/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('proxy.overtake: a size per second and a duration, REGISTRY_PROXY_OVERTAKE_* overrides, 0 turns it off, nonsense names the key', () => {
    const base = 'version: 0.1\nproxy:\n  remoteurl: https://registry-1.docker.io\n';
    const set = load(`${base}  overtake:\n    minrate: 1MiB\n    after: 2s\n`);
    expect(set.warnings).toEqual([]);
    expect(set.config.proxy?.overtake).toEqual({ minratebytes: 1024 * 1024, afterms: 2000 });
    expect(load(base, { REGISTRY_PROXY_OVERTAKE_MINRATE: '0', REGISTRY_PROXY_OVERTAKE_AFTER: '500ms' }).config.proxy?.overtake).toEqual({
      minratebytes: 0,
      afterms: 500,
    });
    expect(() => load(`${base}  overtake:\n    minrate: fast\n`)).toThrow(/proxy\.overtake\.minrate: "fast" is not a size/);
    expect(() => load(`${base}  overtake:\n    after: 0s\n`)).toThrow(/proxy\.overtake\.after: "0s" must be a duration above zero/);
    expect(() => load(`${base}  overtake:\n    after: soon\n`)).toThrow(/proxy\.overtake\.after: "soon" is not a duration/);
    expect(load(`${base}  overtake:\n    racers: 2\n`).warnings).toEqual(['proxy.overtake.racers is not a known configuration key: it is ignored']);
  });

  test('redis: distribution 2.8 keys (addr, password, db, timeouts, pool) and REGISTRY_REDIS_* overrides', () => {
    const base = 'version: 0.1\nproxy:\n  remoteurl: https://registry-1.docker.io\n';
    const { config, warnings } = load(
      `${base}redis:\n  addr: redis.internal:6380\n  password: asecret\n  db: 2\n  dialtimeout: 10ms\n  readtimeout: 20ms\n  writetimeout: 30ms\n  pool:\n    maxidle: 16\n    maxactive: 64\n    idletimeout: 300s\n`,
    );
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
    expect(warnings).toEqual(
      ['redis.pool.maxidle', 'redis.pool.maxactive', 'redis.pool.idletimeout'].map(
        (k) => `${k} is accepted but not implemented by this registry: it is ignored`,
      ),
    );
    const env = load(base, { REGISTRY_REDIS_ADDR: '127.0.0.1', REGISTRY_REDIS_PASSWORD: 'x', REGISTRY_REDIS_DB: '1', REGISTRY_REDIS_PREFIX: 'mirror-eu' });
    expect(env.warnings).toEqual([]);
    expect(env.config.redis).toMatchObject({
      host: '127.0.0.1',
      port: 6379,
      password: 'x',
      db: 1,
      dialtimeoutms: 5000,
      readtimeoutms: 3000,
      writetimeoutms: 3000,
      prefix: 'mirror-eu',
    });
    expect(load(base).config.redis).toBeUndefined();
  });

  test('redis: distribution 3 keys (addrs, username, tls with rootcas) and what stops the start-up', () => {
    const base = 'version: 0.1\nproxy:\n  remoteurl: https://registry-1.docker.io\nredis:\n';
    const { config, warnings } = load(
      `${base}  addrs: ["[::1]:7000"]\n  username: mirror\n  clientname: mirror-1\n  maxretries: 5\n  poolsize: 64\n  tls:\n    rootcas: [/etc/ssl/redis-ca.pem]\n`,
    );
    expect(config.redis).toMatchObject({
      host: '::1',
      port: 7000,
      username: 'mirror',
      clientname: 'mirror-1',
      maxretries: 5,
      tls: { rootcas: ['/etc/ssl/redis-ca.pem'] },
    });
    expect(warnings).toEqual(['redis.poolsize is accepted but not implemented by this registry: it is ignored']);
    expect(load(`${base}  addrs: [a:1]\n  tls:\n    certificate: /c.pem\n    key: /k.pem\n    clientcas: [/ca.pem]\n`).config.redis?.tls).toEqual({
      certificate: '/c.pem',
      key: '/k.pem',
      rootcas: ['/ca.pem'],
    });
    expect(() => load(`${base}  addr: a:1\n  mastername: mymaster\n`)).toThrow(/redis\.mastername: Sentinels are named by redis\.addrs/);
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
    expect(warnings).toEqual(['storage.cache.blobdescriptor is accepted but not implemented by this registry: it is ignored']);
    expect(config.health).toEqual({ storagedriver: { enabled: true, intervalms: 10_000, threshold: 3 }, file: [], http: [], tcp: [] });
  });

  test('redis: several addrs without mastername are a Redis Cluster (go-redis universal client); its db is 0 only', () => {
    const base = 'version: 0.1\nproxy:\n  remoteurl: https://registry-1.docker.io\nredis:\n';
    const { config, warnings } = load(`${base}  addrs: [a:1, "[::1]:7001", c]\n  password: p\n`);
    expect(config.redis).toMatchObject({
      host: 'a',
      port: 1,
      password: 'p',
      db: 0,
      cluster: {
        nodes: [
          { host: 'a', port: 1 },
          { host: '::1', port: 7001 },
          { host: 'c', port: 6379 },
        ],
      },
    });
    expect(config.redis?.sentinel).toBeUndefined();
    expect(warnings).toEqual([]);
    const withDb = load(`${base}  addrs: [a:1, b:2]\n  db: 3\n`);
    expect(withDb.config.redis?.db).toBe(0);
    expect(withDb.warnings).toEqual(['redis.db (3) is ignored: a Redis Cluster (several redis.addrs) has database 0 only; redis.prefix keeps caches apart']);
    // One address, or a mastername: no cluster.
    expect(load(`${base}  addrs: [a:1]\n`).config.redis?.cluster).toBeUndefined();
    expect(load(`${base}  addrs: [a:1, b:2]\n  mastername: m\n`).config.redis?.cluster).toBeUndefined();
  });

  test('redis: a Sentinel mastername with addrs, its own credentials; addr beside addrs and Sentinel keys without mastername warn', () => {
    const base = 'version: 0.1\nproxy:\n  remoteurl: https://registry-1.docker.io\nredis:\n';
    const { config, warnings } = load(
      `${base}  addrs: [10.0.0.1:26379, 10.0.0.2:26379, "[::1]:26380"]\n  mastername: mymaster\n  sentinelusername: watcher\n  sentinelpassword: s3\n  password: p\n  db: 2\n`,
    );
    expect(warnings).toEqual([]);
    expect(config.redis).toMatchObject({
      host: '10.0.0.1',
      port: 26379,
      password: 'p',
      db: 2,
      sentinel: {
        mastername: 'mymaster',
        username: 'watcher',
        password: 's3',
        sentinels: [
          { host: '10.0.0.1', port: 26379 },
          { host: '10.0.0.2', port: 26379 },
          { host: '::1', port: 26380 },
        ],
      },
    });
    const both = load(`${base}  addr: old:6379\n  addrs: [new:6379]\n`);
    expect(both.config.redis).toMatchObject({ host: 'new', port: 6379, sentinel: undefined });
    expect(both.warnings).toEqual(['redis.addr (old:6379) is ignored: redis.addrs is set (registry:3 reads addrs only; registry:2 read addr only)']);
    expect(load(`${base}  addr: same:6379\n  addrs: [same:6379]\n`).warnings).toEqual([]);
    expect(load(`${base}  addr: a:6379\n  sentinelpassword: x\n`).warnings).toEqual([
      'redis.sentinelpassword is ignored: there is no redis.mastername (Sentinel)',
    ]);
    const env = load(base, { REGISTRY_REDIS_ADDRS: '[s1:26379, s2:26379]', REGISTRY_REDIS_MASTERNAME: 'm', REGISTRY_REDIS_SENTINELPASSWORD: 'x' });
    expect(env.warnings).toEqual([]);
    expect(env.config.redis?.sentinel).toMatchObject({
      mastername: 'm',
      password: 'x',
      sentinels: [
        { host: 's1', port: 26379 },
        { host: 's2', port: 26379 },
      ],
    });
  });

  // distribution v3.1's own examples, as its repository has them (cmd/registry/config-example.yml, and
  // docs/content/about/configuration.md): each loads, and what it asks for is read or warned about.
  test("distribution 3's cmd/registry/config-example.yml loads", () => {
    const { config, warnings } = load(`version: 0.1
log:
  fields:
    service: registry
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: /var/lib/registry
  tag:
    concurrencylimit: 8
http:
  addr: :5000
  headers:
    X-Content-Type-Options: [nosniff]
auth:
  htpasswd:
    realm: basic-realm
    path: /etc/registry
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
`);
    expect(config.auth?.htpasswd).toEqual({ realm: 'basic-realm', path: '/etc/registry' });
    expect(config.health.storagedriver).toEqual({ enabled: true, intervalms: 10_000, threshold: 3 });
    expect(warnings).toEqual(
      ['storage.cache.blobdescriptor', 'storage.tag.concurrencylimit'].map((k) => `${k} is accepted but not implemented by this registry: it is ignored`),
    );
  });

  test("distribution 3.1's documented list of every option loads, one driver and one access controller kept of its alternatives", () => {
    // The document lists mutually exclusive sections side by side (four storage drivers, three
    // access controllers) and placeholders (`username: [username]`, `headers: <http.Header>`, a
    // registry and a repository middleware no build has) that distribution itself would not parse
    // or start with; those alone are resolved here. Everything else is as
    // published, including its repeated `redis.tls` key (the last one counts, as in distribution).
    const text = `version: 0.1
log:
  accesslog:
    disabled: true
  level: debug
  formatter: text
  fields:
    service: registry
    environment: staging
  hooks:
    - type: mail
      disabled: true
      levels:
        - panic
      options:
        smtp:
          addr: mail.example.com:25
          username: mailuser
          password: password
          insecure: true
        from: sender@example.com
        to:
          - errors@example.com
loglevel: debug # deprecated: use "log"
storage:
  s3:
    accesskey: awsaccesskey
    secretkey: awssecretkey
    region: us-west-1
    regionendpoint: http://myobjects.local
    forcepathstyle: true
    accelerate: false
    bucket: bucketname
    encrypt: true
    keyid: mykeyid
    secure: true
    v4auth: true
    chunksize: 5242880
    multipartcopychunksize: 33554432
    multipartcopymaxconcurrency: 100
    multipartcopythresholdsize: 33554432
    rootdirectory: /s3/object/name/prefix
    usedualstack: false
    usefipsendpoint: false
    loglevel: debug
  tag:
    concurrencylimit: 8
  delete:
    enabled: false
  redirect:
    disable: false
  cache:
    blobdescriptor: redis
    blobdescriptorsize: 10000
  maintenance:
    uploadpurging:
      enabled: true
      age: 168h
      interval: 24h
      dryrun: false
    readonly:
      enabled: false
auth:
  token:
    autoredirect: true
    realm: token-realm
    service: token-service
    issuer: registry-token-issuer
    rootcertbundle: /root/certs/bundle
    signingalgorithms:
        - EdDSA
        - HS256
middleware:
  storage:
    - name: cloudfront
      options:
        baseurl: https://my.cloudfronted.domain.com/
        privatekey: /path/to/pem
        keypairid: cloudfrontkeypairid
        duration: 3000s
        ipfilteredby: awsregion
        awsregion: us-east-1, use-east-2
        updatefrequency: 12h
        iprangesurl: https://ip-ranges.amazonaws.com/ip-ranges.json
  storage:
    - name: redirect
      options:
        baseurl: https://example.com/
tags:
  maxtags: 1000
http:
  addr: localhost:5000
  prefix: /my/nested/registry/
  host: https://myregistryaddress.org:5000
  secret: asecretforlocaldevelopment
  relativeurls: false
  draintimeout: 60s
  tls:
    certificate: /path/to/x509/public
    key: /path/to/x509/private
    clientcas:
      - /path/to/ca.pem
      - /path/to/another/ca.pem
    clientauth: require-and-verify-client-cert
    letsencrypt:
      cachefile: /path/to/cache-file
      email: emailused@letsencrypt.com
      hosts: [myregistryaddress.org]
      directoryurl: https://acme-v02.api.letsencrypt.org/directory
  debug:
    addr: localhost:5001
    prometheus:
      enabled: true
      path: /metrics
  headers:
    X-Content-Type-Options: [nosniff]
  http2:
    disabled: false
  h2c:
    enabled: false
redis:
  tls:
    certificate: /path/to/cert.crt
    key: /path/to/key.pem
    rootcas:
      - /path/to/ca.pem
  addrs: [localhost:6379]
  password: asecret
  db: 0
  dialtimeout: 10ms
  readtimeout: 10ms
  writetimeout: 10ms
  maxidleconns: 16
  poolsize: 64
  connmaxidletime: 300s
  tls:
    enabled: false
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
  file:
    - file: /path/to/checked/file
      interval: 10s
  http:
    - uri: http://server.to.check/must/return/200
      headers:
        Authorization: [Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==]
      statuscode: 200
      timeout: 3s
      interval: 10s
      threshold: 3
  tcp:
    - addr: redis-server.domain.com:6379
      timeout: 3s
      interval: 10s
      threshold: 3
proxy:
  remoteurl: https://registry-1.docker.io
  username: username
  password: password
  exec:
    command: docker-credential-helper
    lifetime: 1h
  ttl: 168h
validation:
  manifests:
    urls:
      allow:
        - ^https?://([^/]+\\.)*example\\.com/
      deny:
        - ^https?://www\\.example\\.com/
    indexes:
      platforms: List
      platformlist:
      - architecture: amd64
        os: linux
`;
    const { config, warnings } = load(text);
    expect(config.log.level).toBe('debug');
    expect(config.tags.maxtags).toBe(1000);
    expect(config.http.tls).toEqual({
      certificate: '/path/to/x509/public',
      key: '/path/to/x509/private',
      clientcas: ['/path/to/ca.pem', '/path/to/another/ca.pem'],
      clientauth: 'require-and-verify-client-cert',
      minimumtls: undefined,
    });
    expect(config.storage.s3).toMatchObject({ forcepathstyle: true, usedualstack: false, usefipsendpoint: false, chunksize: 5242880 });
    // The second `tls` replaces the first, as in distribution: no TLS.
    expect(config.redis).toMatchObject({ host: 'localhost', port: 6379, password: 'asecret', dialtimeoutms: 10, tls: undefined });
    expect(config.proxy).toMatchObject({
      exec: { command: 'docker-credential-helper', lifetimems: 3600_000 },
      ttlms: 168 * 3600_000,
      cachewritetimeoutms: 300_000,
    });
    expect(config.validation).toEqual({
      indexes: { platforms: 'list', platformlist: [{ architecture: 'amd64', os: 'linux' }] },
      urls: { allow: '(?:^https?://([^/]+\\.)*example\\.com/)', deny: '(?:^https?://www\\.example\\.com/)' },
    });
    expect(config.auth?.token).toMatchObject({ autoredirect: true, autoredirectpath: '/auth/token', signingalgorithms: ['EdDSA', 'HS256'] });
    // The second `storage` list replaces the first (the cloudfront one), as in distribution.
    expect(config.middleware.storage).toEqual([{ name: 'redirect', baseurl: new URL('https://example.com/') }]);
    const ignored = (k: string) => `${k} is accepted but not implemented by this registry: it is ignored`;
    expect(warnings).toEqual([
      ...['log.hooks', 'storage.s3.loglevel', 'storage.tag.concurrencylimit', 'storage.cache.blobdescriptor', 'storage.cache.blobdescriptorsize'].map(ignored),
      ...[
        'http.relativeurls',
        'http.tls.letsencrypt.cachefile',
        'http.tls.letsencrypt.email',
        'http.tls.letsencrypt.hosts',
        'http.tls.letsencrypt.directoryurl',
        'http.http2.disabled',
        'http.h2c.enabled',
      ].map(ignored),
      ...['redis.maxidleconns', 'redis.poolsize', 'redis.connmaxidletime'].map(ignored),
      'http.tls.letsencrypt is not used: http.tls.certificate is set (as distribution)',
    ]);
  });

  test("distribution 3.1's documented sections load one by one: the development example, Sentinel-less Redis over TLS, exec credentials, sparse indexes", () => {
    const dev = load(`version: 0.1
log:
  level: debug
storage:
    filesystem:
        rootdirectory: /var/lib/registry
http:
    addr: localhost:5000
    secret: asecretforlocaldevelopment
    debug:
        addr: localhost:5001
`);
    expect(dev.warnings).toEqual([]);
    expect(dev.config.http.debug?.addr).toBe('localhost:5001');
    const tls = load(`version: 0.1
redis:
  tls:
    rootcas:
      - /path/to/ca-bundle.crt
  addrs: [localhost:6379]
`);
    expect(tls.config.redis?.tls).toEqual({ certificate: undefined, key: undefined, rootcas: ['/path/to/ca-bundle.crt'] });
    const exec = load('version: 0.1\nproxy:\n  remoteurl: https://registry-1.docker.io\n  exec:\n    command: docker-credential-ecr-login\n');
    expect(exec.config.proxy?.exec).toEqual({ command: 'docker-credential-ecr-login', lifetimems: undefined });
    expect(load('version: 0.1\nproxy:\n  remoteurl: https://r\n  exec:\n    command: h\n    lifetime: 0\n').config.proxy?.exec).toEqual({
      command: 'h',
      lifetimems: 0,
    });
    expect(() => load('version: 0.1\nproxy:\n  remoteurl: https://r\n  exec:\n    lifetime: 1h\n')).toThrow(/proxy\.exec\.command is required/);
    const sparse = load('version: 0.1\nvalidation:\n  manifests:\n    indexes:\n      platforms: none\n');
    expect(sparse.config.validation.indexes.platforms).toBe('none');
    expect(load('version: 0.1\nvalidation:\n  disabled: true\n').config.validation).toEqual({ indexes: { platforms: 'none', platformlist: [] }, urls: {} });
    // A layer's URLs: nothing allowed unless listed; a deny list alone leaves every other URL allowed.
    expect(load('version: 0.1\nvalidation:\n  manifests:\n    urls:\n      deny: [internal]\n').config.validation.urls).toEqual({
      allow: undefined,
      deny: '(?:internal)',
    });
    expect(() => load('version: 0.1\nvalidation:\n  manifests:\n    urls:\n      allow: ["(unclosed"]\n')).toThrow(
      /validation\.manifests\.urls\.allow: "\(unclosed" is not a regular expression/,
    );
    expect(() => load('version: 0.1\nvalidation:\n  manifests:\n    indexes:\n      platforms: some\n')).toThrow(
      /validation\.manifests\.indexes\.platforms: "some" must be one of all, none, list/,
    );
    expect(load('version: 0.1\ntags:\n  maxtags: 0\n').config.tags.maxtags).toBe(1000);
    expect(() => load('version: 0.1\ntags:\n  maxtags: -1\n')).toThrow(/tags\.maxtags/);
    expect(load('version: 0.1\npolicy:\n  repository:\n    classes: [image, plugin]\n').config.policy.repository.classes).toEqual(['image', 'plugin']);
    expect(() => load('version: 0.1\npolicy:\n  repository:\n    classes: image\n')).toThrow(/policy\.repository\.classes/);
    expect(() => load('version: 0.1\nhttp:\n  tls:\n    certificate: /c\n    key: /k\n    clientauth: maybe\n')).toThrow(
      /http\.tls\.clientauth: "maybe" must be one of request-client-cert/,
    );
  });

  test('http.tls.letsencrypt without a certificate refuses to start (no ACME here); http.h2c.enabled warns that HTTP/2 cleartext is not served', () => {
    expect(() => load('version: 0.1\nhttp:\n  tls:\n    letsencrypt:\n      cachefile: /c\n      email: a@b.c\n')).toThrow(
      /http\.tls\.letsencrypt: this registry cannot obtain certificates from Let's Encrypt/,
    );
    expect(() => load('version: 0.1\n', { REGISTRY_HTTP_TLS_LETSENCRYPT_CACHEFILE: '/c' })).toThrow(/http\.tls\.letsencrypt/);
    expect(load('version: 0.1\nhttp:\n  h2c:\n    enabled: true\n').warnings).toContain(
      'http.h2c.enabled: HTTP/2 cleartext is not served: this registry speaks HTTP/1.1 without TLS, so a load balancer in front must too (Cloud Run: turn end-to-end HTTP/2 off)',
    );
  });

  test('REGISTRY_* overrides reach the distribution 3 keys, and index list elements as distribution 3 does', () => {
    const { config, warnings } = load(
      'version: 0.1\nproxy:\n  remoteurl: https://r\nhttp:\n  tls:\n    certificate: /c\n    key: /k\n    clientcas: [/a.pem]\n',
      {
        REGISTRY_PROXY_EXEC_COMMAND: 'docker-credential-gcr',
        REGISTRY_PROXY_EXEC_LIFETIME: '30m',
        REGISTRY_PROXY_CACHEWRITETIMEOUT: '10m',
        REGISTRY_TAGS_MAXTAGS: '500',
        REGISTRY_HTTP_TLS_CLIENTAUTH: 'verify-client-cert-if-given',
        REGISTRY_HTTP_TLS_CLIENTCAS_1: '/b.pem',
        REGISTRY_VALIDATION_MANIFESTS_INDEXES_PLATFORMS: 'list',
        REGISTRY_VALIDATION_MANIFESTS_INDEXES_PLATFORMLIST_0_OS: 'linux',
        REGISTRY_VALIDATION_MANIFESTS_INDEXES_PLATFORMLIST_0_ARCHITECTURE: 'arm64',
        REGISTRY_LOGLEVEL: 'warn',
      },
    );
    expect(warnings).toEqual([]);
    expect(config.proxy).toMatchObject({ exec: { command: 'docker-credential-gcr', lifetimems: 30 * 60_000 }, cachewritetimeoutms: 10 * 60_000 });
    expect(config.tags.maxtags).toBe(500);
    expect(config.http.tls).toMatchObject({ clientauth: 'verify-client-cert-if-given', clientcas: ['/a.pem', '/b.pem'] });
    expect(config.validation.indexes).toEqual({ platforms: 'list', platformlist: [{ os: 'linux', architecture: 'arm64' }] });
    expect(config.log.level).toBe('warn');
    expect(() => load('version: 0.1\n', { REGISTRY_HTTP_TLS_CLIENTCAS_3: '/x.pem' })).toThrow(
      /REGISTRY_HTTP_TLS_CLIENTCAS_3: index 3 is past the end of http\.tls\.clientcas/,
    );
  });

  test('a distribution 2.8 configuration with its own keys loads (redis.addr and pool, compatibility, reporting, notifications left as they are)', () => {
    const { config, warnings } = load(`version: 0.1
log:
  level: info
  formatter: json
loglevel: debug
storage:
  filesystem:
    rootdirectory: /var/lib/registry
  cache:
    blobdescriptor: redis
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: :5000
  secret: s
  http2:
    disabled: true
  debug:
    addr: :5001
    prometheus:
      enabled: true
redis:
  addr: redis:6379
  password: p
  db: 0
  dialtimeout: 10ms
  readtimeout: 10ms
  writetimeout: 10ms
  pool:
    maxidle: 16
    maxactive: 64
    idletimeout: 300s
reporting:
  bugsnag:
    apikey: k
compatibility:
  schema1:
    enabled: true
proxy:
  remoteurl: https://registry-1.docker.io
  username: u
  password: p
  ttl: 72h
`);
    // `log.level` wins over the deprecated `loglevel`.
    expect(config.log).toMatchObject({ level: 'info', formatter: 'json' });
    expect(config.redis).toMatchObject({ host: 'redis', port: 6379, password: 'p', dialtimeoutms: 10 });
    expect(config.proxy).toMatchObject({ username: 'u', password: 'p', ttlms: 72 * 3600_000, exec: undefined });
    const ignored = (k: string) => `${k} is accepted but not implemented by this registry: it is ignored`;
    expect(warnings).toEqual(
      [
        'storage.cache.blobdescriptor',
        'http.http2.disabled',
        'redis.pool.maxidle',
        'redis.pool.maxactive',
        'redis.pool.idletimeout',
        'reporting',
        'compatibility.schema1.enabled',
      ].map(ignored),
    );
    expect(load('version: 0.1\nloglevel: Debug\n').config.log.level).toBe('debug');
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
    ['http:\n  addr: 5000', 'http.addr: 5000 is not an address like :5000 or host:port'],
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
    expect(Object.fromEntries(Object.entries(upstreams).map(([h, u]) => [h, u.dockerhub]))).toEqual({
      'docker.io': true,
      'quay.io': false,
      'hub.local': true,
      'plain.local': false,
    });
    expect(() => hub('  remoteurl: https://central.example.com\n  dockerhub: yes please')).toThrow(
      'proxy.dockerhub: "yes please" must be one of auto, true, false',
    );
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
    expect(() => load('proxy:\n  remoteurl: http://u\n  immutabletags: sometimes\n')).toThrow(
      'proxy.immutabletags: "sometimes" must be true, false or a mapping',
    );
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
        '      freshness:',
        "        '^latest$': 60s",
        '    registry.local:5000:',
        '      remoteurl: http://10.0.0.5:5000',
      ].join('\n'),
    );
    expect(warnings).toEqual([]);
    expect(config.proxy?.upstreams).toEqual({
      'ghcr.io': {
        remoteurl: 'https://ghcr.io',
        username: 'bot',
        password: 'secret',
        ttlms: 3600_000,
        immutabletags: { exclude: [] },
        freshness: [{ pattern: '^latest$', ms: 60_000 }],
        dockerhub: false,
      },
      'registry.local:5000': {
        remoteurl: 'http://10.0.0.5:5000',
        username: undefined,
        password: undefined,
        ttlms: 72 * 3600_000,
        immutabletags: undefined,
        freshness: [],
        dockerhub: false,
      },
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

  test('proxy.freshness, proxy.budget and proxy.maxupstreamconns: patterns with durations in order, nonsense names the key', () => {
    const base = 'proxy:\n  remoteurl: https://registry-1.docker.io\n';
    const { config } = load(`${base}  freshness:\n    '^latest$': 60s\n    '.*': 10s\n  budget:\n    reserve: 20\n    recheck: 5m\n  maxupstreamconns: 8\n`);
    expect(config.proxy?.freshness).toEqual([
      { pattern: '^latest$', ms: 60_000 },
      { pattern: '.*', ms: 10_000 },
    ]);
    expect(config.proxy?.budget).toEqual({ reserve: 20, recheckms: 300_000 });
    expect(config.proxy?.maxupstreamconns).toBe(8);
    expect(() => load(`${base}  freshness:\n    '^latest$': soon\n`)).toThrow(/proxy\.freshness/);
    expect(() => load(`${base}  freshness:\n    '(': 1m\n`)).toThrow(/proxy\.freshness/);
    expect(() => load(`${base}  maxupstreamconns: 0\n`)).toThrow(/proxy\.maxupstreamconns/);
    expect(() => load(`${base}  budget:\n    reserve: -1\n`)).toThrow(/proxy\.budget\.reserve/);
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

  test("the configuration path: argument, then REGISTRY_CONFIGURATION_PATH, then registry:3's /etc/distribution/config.yml, else registry:2's", () => {
    expect(resolveConfigPath('a.yml', { REGISTRY_CONFIGURATION_PATH: 'b.yml' })).toBe('a.yml');
    expect(resolveConfigPath(undefined, { REGISTRY_CONFIGURATION_PATH: 'b.yml' })).toBe('b.yml');
    const only =
      (...files: string[]) =>
      (p: string) =>
        files.includes(p);
    expect(resolveConfigPath(undefined, {}, only())).toBe('/etc/distribution/config.yml');
    expect(resolveConfigPath(undefined, {}, only('/etc/distribution/config.yml', '/etc/docker/registry/config.yml'))).toBe('/etc/distribution/config.yml');
    expect(resolveConfigPath(undefined, {}, only('/etc/docker/registry/config.yml'))).toBe('/etc/docker/registry/config.yml');
  });
});
