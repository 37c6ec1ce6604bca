/**
 * The server as users run it: log formats, http.prefix and http.headers, TLS with a certificate
 * the test makes, a unix socket, and graceful shutdown of the real CLI on SIGTERM and SIGINT.
 */
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { existsSync, readFileSync } from 'node:fs';
import https from 'node:https';
import http from 'node:http';
import net from 'node:net';
import tls from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import request from 'supertest';
import { createLogger } from '../lib/log/logger.js';
import { loadConfig } from '../lib/config/load.js';
import { startFakeUpstream, type FakeUpstream } from './helpers/fake-upstream.js';
import { startMirror } from './helpers/mirror.js';
import { startRegistry } from './helpers/replica.js';
import { freePort } from './helpers/ports.js';

function captureLog(formatter: 'text' | 'json' | 'logstash', level: 'info' | 'warn' = 'info') {
  const out = new PassThrough();
  let text = '';
  out.on('data', (c: Buffer) => (text += c.toString()));
  const logger = createLogger({ level, formatter, fields: { service: 'registry' }, accesslog: { disabled: false } }, out);
  return { logger, lines: () => text.trim().split('\n').filter(Boolean) };
}

describe('logging', () => {
  test('text is logrus style, with quoted values and the configured fields', async () => {
    const { logger, lines } = captureLog('text');
    logger.info('listening on [::]:5000', { 'http.request.uri': '/v2/', note: 'two words' });
    logger.warn('careful');
    await new Promise((r) => setImmediate(r));
    expect(lines()[0]).toMatch(
      /^time="\d{4}-\d{2}-\d{2}T[\d:.]+Z" level=info msg="listening on \[::\]:5000" http.request.uri=\/v2\/ note="two words" service=registry$/,
    );
    expect(lines()[1]).toMatch(/level=warning msg="careful"/);
  });

  test('json and logstash formats, and level filtering', async () => {
    const json = captureLog('json', 'warn');
    json.logger.info('hidden');
    json.logger.error('shown', { key: 1 });
    const stash = captureLog('logstash');
    stash.logger.info('hello');
    await new Promise((r) => setImmediate(r));
    expect(json.lines()).toHaveLength(1);
    expect(JSON.parse(json.lines()[0]!)).toMatchObject({ level: 'error', msg: 'shown', key: 1, service: 'registry', time: expect.any(String) });
    expect(JSON.parse(stash.lines()[0]!)).toMatchObject({ '@version': 1, level: 'info', message: 'hello', '@timestamp': expect.any(String) });
  });
});

describe('http options', () => {
  let upstream: FakeUpstream;
  let dir: string;
  beforeAll(async () => {
    upstream = await startFakeUpstream();
    dir = await mkdtemp(join(tmpdir(), 'server-'));
  });
  afterAll(async () => {
    await upstream.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('http.prefix moves the API and http.headers are on every answer', async () => {
    const mirror = await startMirror(upstream.url, { httpYaml: 'addr: 127.0.0.1:0\nprefix: /mirror\nheaders:\n  X-Content-Type-Options: [nosniff]' });
    try {
      const res = await request(mirror.url).get('/mirror/v2/');
      expect(res.status).toBe(200);
      expect(res.headers['x-content-type-options']).toBe('nosniff');
      expect((await request(mirror.url).get('/v2/')).status).toBe(404);
    } finally {
      await mirror.close();
    }
  });

  test('http.tls serves HTTPS with the configured certificate', async () => {
    const key = join(dir, 'key.pem');
    const cert = join(dir, 'cert.pem');
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-keyout',
        key,
        '-out',
        cert,
        '-days',
        '1',
        '-subj',
        '/CN=127.0.0.1',
        '-addext',
        'subjectAltName=IP:127.0.0.1',
      ],
      { stdio: 'ignore' },
    );
    const mirror = await startMirror(upstream.url, { httpYaml: `addr: 127.0.0.1:0\ntls:\n  certificate: ${cert}\n  key: ${key}` });
    try {
      const body = await new Promise<string>((resolveBody, reject) => {
        https
          .get(`https://127.0.0.1:${mirror.registry.port}/v2/`, { ca: execFileSync('cat', [cert]) }, (res) => {
            let t = '';
            res.on('data', (c: Buffer) => (t += c.toString()));
            res.on('end', () => resolveBody(`${res.statusCode} ${t}`));
          })
          .on('error', reject);
      });
      expect(body).toBe('200 {}');
    } finally {
      await mirror.close();
    }
  });

  test('http.tls.clientcas requires a client certificate issued by one of those CAs (mutual TLS)', async () => {
    const run = (args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
    run([
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      'server.key',
      '-out',
      'server.pem',
      '-days',
      '1',
      '-subj',
      '/CN=127.0.0.1',
      '-addext',
      'subjectAltName=IP:127.0.0.1',
    ]);
    run([
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      'ca.key',
      '-out',
      'ca.pem',
      '-days',
      '1',
      '-subj',
      '/CN=client ca',
      '-addext',
      'basicConstraints=critical,CA:TRUE',
    ]);
    run(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'client.key', '-out', 'client.csr', '-subj', '/CN=daemon']);
    run(['x509', '-req', '-in', 'client.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'client.pem', '-days', '1']);
    run(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'rogue.key', '-out', 'rogue.pem', '-days', '1', '-subj', '/CN=rogue']);
    const read = (f: string) => readFileSync(join(dir, f));
    const mirror = await startMirror(upstream.url, {
      httpYaml: `addr: 127.0.0.1:0\ntls:\n  certificate: ${join(dir, 'server.pem')}\n  key: ${join(dir, 'server.key')}\n  clientcas:\n    - ${join(dir, 'ca.pem')}`,
    });
    const get = (client?: { cert: Buffer; key: Buffer }) =>
      new Promise<string>((resolveStatus) => {
        https
          .get(`https://127.0.0.1:${mirror.registry.port}/v2/`, { ca: read('server.pem'), agent: false, ...client }, (res) => {
            res.resume();
            res.on('end', () => resolveStatus(String(res.statusCode)));
          })
          .on('error', (err: NodeJS.ErrnoException) => resolveStatus(`refused: ${err.code ?? err.message}`));
      });
    try {
      expect(await get({ cert: read('client.pem'), key: read('client.key') })).toBe('200');
      expect(await get()).toMatch(/^refused/);
      expect(await get({ cert: read('rogue.pem'), key: read('rogue.key') })).toMatch(/^refused/);
    } finally {
      await mirror.close();
    }
  });

  /** A server certificate, a client CA, a client certificate it issued, and a self-signed rogue one (EC keys: quick to make). */
  const clientCerts = (sub: string) => {
    const where = join(dir, sub);
    execFileSync('mkdir', ['-p', where]);
    const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
    const run = (args: string[]) => execFileSync('openssl', args, { cwd: where, stdio: 'ignore' });
    run([
      'req',
      '-x509',
      ...ec,
      '-keyout',
      'server.key',
      '-out',
      'server.pem',
      '-days',
      '1',
      '-subj',
      '/CN=127.0.0.1',
      '-addext',
      'subjectAltName=IP:127.0.0.1',
    ]);
    run(['req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '1', '-subj', '/CN=client ca', '-addext', 'basicConstraints=critical,CA:TRUE']);
    run(['req', ...ec, '-keyout', 'client.key', '-out', 'client.csr', '-subj', '/CN=daemon']);
    run(['x509', '-req', '-in', 'client.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'client.pem', '-days', '1']);
    run(['req', '-x509', ...ec, '-keyout', 'rogue.key', '-out', 'rogue.pem', '-days', '1', '-subj', '/CN=rogue']);
    return (f: string) => join(where, f);
  };

  // Go's four modes (distribution 3): [a certificate the CA issued, none, a self-signed one].
  test.each([
    ['request-client-cert', ['200', '200', '200']],
    ['require-any-client-cert', ['200', 'refused', '200']],
    ['verify-client-cert-if-given', ['200', '200', 'refused']],
    ['require-and-verify-client-cert', ['200', 'refused', 'refused']],
  ] as const)('http.tls.clientauth %s: a valid, no, and an unknown client certificate give %j', async (mode, expected) => {
    const file = clientCerts(mode);
    const mirror = await startMirror(upstream.url, {
      httpYaml: `addr: 127.0.0.1:0\ntls:\n  certificate: ${file('server.pem')}\n  key: ${file('server.key')}\n  clientauth: ${mode}\n  clientcas:\n    - ${file('ca.pem')}`,
    });
    const get = (client?: { cert: Buffer; key: Buffer }) =>
      new Promise<string>((resolveStatus) => {
        https
          .get(`https://127.0.0.1:${mirror.registry.port}/v2/`, { ca: readFileSync(file('server.pem')), agent: false, ...client }, (res) => {
            res.resume();
            res.on('end', () => resolveStatus(String(res.statusCode)));
            res.on('error', () => resolveStatus('refused'));
          })
          .on('error', () => resolveStatus('refused'));
      });
    const pair = (name: string) => ({ cert: readFileSync(file(`${name}.pem`)), key: readFileSync(file(`${name}.key`)) });
    try {
      expect([await get(pair('client')), await get(), await get(pair('rogue'))]).toEqual(expected);
    } finally {
      await mirror.close();
    }
  });

  test('http.tls.ciphersuites (Go names) restricts TLS 1.2 to those suites; TLS 1.3 keeps its own, as in Go', async () => {
    const file = clientCerts('ciphers');
    const mirror = await startMirror(upstream.url, {
      httpYaml: `addr: 127.0.0.1:0\ntls:\n  certificate: ${file('server.pem')}\n  key: ${file('server.key')}\n  ciphersuites:\n    - TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256\n    - TLS_AES_128_GCM_SHA256`,
    });
    const handshake = (maxVersion: 'TLSv1.2' | 'TLSv1.3', ciphers?: string) =>
      new Promise<string>((resolveCipher) => {
        const socket = tls.connect({ port: mirror.registry.port!, host: '127.0.0.1', ca: readFileSync(file('server.pem')), maxVersion, ciphers }, () => {
          resolveCipher(socket.getCipher().standardName);
          socket.destroy();
        });
        socket.on('error', () => resolveCipher('refused'));
      });
    try {
      expect(await handshake('TLSv1.2')).toBe('TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256');
      expect(await handshake('TLSv1.2', 'ECDHE-ECDSA-AES256-GCM-SHA384')).toBe('refused');
      expect(await handshake('TLSv1.3')).toMatch(/^TLS_(AES|CHACHA20)_/);
    } finally {
      await mirror.close();
    }
    expect(() => loadConfig({ text: 'version: 0.1\nhttp:\n  tls:\n    ciphersuites: [TLS_NULL]\n' })).toThrow(
      /http\.tls\.ciphersuites\.0: "TLS_NULL" must be one of TLS_RSA_WITH_RC4_128_SHA/,
    );
  });

  test('http.net unix listens on a socket path', async () => {
    const socketPath = join(dir, 'registry.sock');
    const mirror = await startMirror(upstream.url, { httpYaml: `net: unix\naddr: ${socketPath}` });
    try {
      const status = await new Promise<number>((r, reject) => http.get({ socketPath, path: '/v2/' }, (res) => r(res.statusCode!)).on('error', reject));
      expect(status).toBe(200);
    } finally {
      await mirror.close();
    }
  });

  test.each(['SIGTERM', 'SIGINT'] as const)('%s lets an in-flight response finish within http.draintimeout, then the CLI exits 0', async (signal) => {
    const digest = upstream.addBlob('library/slow', Buffer.alloc(400_000, 7));
    upstream.fault(/^GET \/v2\/library\/slow\/blobs\//, { kind: 'slow', bytesPerTick: 50_000, tickMs: 50 }, 1);
    const port = await freePort();
    const config = join(dir, `config-${signal}.yml`);
    await writeFile(
      config,
      `version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: ${join(dir, `root-${signal}`)}\nhttp:\n  addr: 127.0.0.1:${port}\n  draintimeout: 30s\nproxy:\n  remoteurl: ${upstream.url}\n`,
    );
    const child = await startRegistry(config, `http://127.0.0.1:${port}`);
    try {
      // 30 s: the transfer (0.4 s unloaded) finishes however slow the machine; the default 1 s would cut it
      // on a loaded one (spec/shutdown.test.ts tests the cut).
      const transfer = new Promise<{ status: number; bytes: number; complete: boolean }>((r) => {
        http.get(`http://127.0.0.1:${port}/v2/library/slow/blobs/${digest}`, { agent: false }, (res) => {
          let bytes = 0;
          res.on('data', (c: Buffer) => {
            if (bytes === 0) child.process.kill(signal);
            bytes += c.length;
          });
          res.on('end', () => r({ status: res.statusCode!, bytes, complete: res.complete }));
          res.on('error', () => r({ status: res.statusCode!, bytes, complete: false }));
        });
      });
      expect(await transfer).toEqual({ status: 200, bytes: 400_000, complete: true });
      expect(await child.exited).toBe(0);
    } finally {
      await child.kill();
    }
  });

  test('the CLI answers --version and --help, and refuses a broken config naming the key', () => {
    expect(execFileSync(process.execPath, ['bin/registry', '--version']).toString()).toMatch(/\d+\.\d+\.\d+/);
    expect(execFileSync(process.execPath, ['bin/registry', '--help']).toString()).toMatch(/garbage-collect/);
    let stderr = '';
    try {
      execFileSync(process.execPath, ['bin/registry', 'serve'], { env: { ...process.env, REGISTRY_CONFIGURATION_PATH: '/nonexistent.yml' }, stdio: 'pipe' });
    } catch (err) {
      stderr = String((err as { stderr: Buffer }).stderr);
    }
    expect(stderr).toMatch(/\/nonexistent.yml/);
  });
});

describe('a start that fails half-way', () => {
  let upstream: FakeUpstream;
  let root: string;
  beforeEach(async () => {
    upstream = await startFakeUpstream();
    root = await mkdtemp(join(tmpdir(), 'failed-start-'));
  });
  afterEach(async () => {
    await upstream.close();
    await rm(root, { recursive: true, force: true });
  });

  /** A TCP server that counts connections (the target of a health.tcp check), and one that holds a port. */
  async function listener(): Promise<{ port: number; connections: () => number; close: () => Promise<void> }> {
    let connections = 0;
    const server = net.createServer((s) => {
      connections++;
      s.destroy();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    return { port: (server.address() as net.AddressInfo).port, connections: () => connections, close: () => new Promise((r) => server.close(() => r())) };
  }

  test.each([
    ['http.addr is in use', 'main'],
    ['http.debug.addr is in use', 'debug'],
  ])('%s: the start fails, and the schedule, its lease, the health checks and the listener are stopped', async (_what, busy) => {
    const checked = await listener();
    const taken = await listener();
    const port = busy === 'main' ? taken.port : await freePort();
    try {
      const start = startMirror(upstream.url, {
        root,
        proxyYaml: 'ttl: 1h',
        httpYaml: [`addr: 127.0.0.1:${port}`, ...(busy === 'debug' ? ['debug:', `  addr: 127.0.0.1:${taken.port}`] : [])].join('\n'),
        extraYaml: ['health:', '  tcp:', `    - addr: 127.0.0.1:${checked.port}`, '      interval: 50ms', '      timeout: 1s'].join('\n'),
      });
      await expect(start).rejects.toThrow(/EADDRINUSE/);
      // The scheduler's lease (held by a running schedule) is released, so another process may run expiries.
      expect(existsSync(join(root, '.locks', 'scheduler-lease.lock'))).toBe(false);
      await new Promise((r) => setTimeout(r, 200));
      const after = checked.connections();
      await new Promise((r) => setTimeout(r, 300));
      expect(checked.connections()).toBe(after);
      // Nothing listens on the main port any more: a mirror starts there at once.
      const mirror = await startMirror(upstream.url, { root, proxyYaml: 'ttl: 1h', httpYaml: `addr: 127.0.0.1:${busy === 'main' ? await freePort() : port}` });
      try {
        await request(mirror.url).get('/v2/').expect(200);
        // The schedule starts in the background, after the listener: its lease comes soon after.
        for (let i = 0; i < 100 && !mirror.logs().includes('scheduler lease taken'); i++) await new Promise((r) => setTimeout(r, 50));
        expect(mirror.logs()).toContain('scheduler lease taken');
      } finally {
        await mirror.close({ keepRoot: true });
      }
    } finally {
      await checked.close();
      await taken.close();
    }
  });
});
