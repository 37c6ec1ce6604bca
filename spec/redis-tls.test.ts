/**
 * `redis.tls` against a real redis-server speaking TLS only (`--tls-port`, certificates made by
 * openssl in the test): the server verified with `rootcas`, a server whose CA is not among them
 * refused, and mutual TLS (`certificate` and `key`) where the server requires client
 * certificates. Every connection is closed however a test ends (no open handle left).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { redisConfig } from '../lib/config/redis.js';
import { RedisConnection } from '../lib/coordination/redis-connection.js';
import { RedisLocks } from '../lib/coordination/redis-locks.js';
import { redisAvailable, startRedis, type RedisServer } from './helpers/redis.js';
import { issueCertificate, makeCa } from './helpers/test-pki.js';

const describeRedis = redisAvailable() || process.env.CI ? describe : describe.skip;

describeRedis('Redis over TLS', () => {
  let dir: string;
  const servers: RedisServer[] = [];
  const connections: RedisConnection[] = [];
  const file = (name: string): string => join(dir, name);

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'redis-tls-'));
    for (const ca of ['ca', 'rogue-ca']) makeCa(dir, ca);
    issueCertificate(dir, 'server', '/CN=127.0.0.1', 'subjectAltName=IP:127.0.0.1');
    issueCertificate(dir, 'client', '/CN=mirror', 'extendedKeyUsage=clientAuth');
  }, 60_000);
  afterEach(async () => {
    await Promise.all(connections.splice(0).map((c) => c.close()));
    await Promise.all(servers.splice(0).map((s) => s.stop()));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  /** A TLS-only redis-server; `clients`: whether it requires client certificates. */
  async function server(clients: 'yes' | 'no'): Promise<RedisServer> {
    const s = await startRedis({
      tls: true,
      args: ['--tls-cert-file', file('server.pem'), '--tls-key-file', file('server.key'), '--tls-ca-cert-file', file('ca.pem'), '--tls-auth-clients', clients],
    });
    servers.push(s);
    return s;
  }

  function connect(s: RedisServer, tls: Record<string, unknown>): { connection: RedisConnection; downs: string[] } {
    const downs: string[] = [];
    const connection = new RedisConnection(
      redisConfig({ addrs: [s.addr], tls, dialtimeout: '1s', readtimeout: '1s', prefix: `tls${Math.random().toString(16).slice(2, 8)}` })!,
      {
        down: (reason) => downs.push(reason),
      },
    );
    connections.push(connection);
    return { connection, downs };
  }

  test('rootcas verifies the server: leases work over TLS', async () => {
    const s = await server('no');
    const { connection } = connect(s, { rootcas: [file('ca.pem')] });
    expect(await connection.ready(10_000)).toBe(true);
    const locks = new RedisLocks(connection, 5000);
    const lease = await locks.tryLease('blobs/sha256/tls');
    expect(lease).toBeDefined();
    expect(await locks.isHeld('blobs/sha256/tls')).toBe(true);
    await lease!.release();
    expect(await locks.isHeld('blobs/sha256/tls')).toBe(false);
  }, 30_000);

  test('a server whose certificate no CA of rootcas issued is refused, and said so', async () => {
    const s = await server('no');
    const { connection, downs } = connect(s, { rootcas: [file('rogue-ca.pem')] });
    expect(await connection.ready(2000)).toBe(false);
    expect(downs.join('\n')).toMatch(/certificate/i);
  }, 30_000);

  test('mutual TLS: with certificate and key the server that requires client certificates accepts the mirror; without, it does not', async () => {
    const s = await server('yes');
    const mutual = connect(s, { certificate: file('client.pem'), key: file('client.key'), rootcas: [file('ca.pem')] });
    expect(await mutual.connection.ready(10_000)).toBe(true);
    expect(await new RedisLocks(mutual.connection, 5000).tryLease('blobs/sha256/mtls')).toBeDefined();
    const anonymous = connect(s, { rootcas: [file('ca.pem')] });
    expect(await anonymous.connection.ready(2000)).toBe(false);
  }, 30_000);
});
