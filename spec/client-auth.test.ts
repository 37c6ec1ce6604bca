/**
 * Client authentication as distribution: `auth.htpasswd` (Apache bcrypt files), `auth.token` (JWTs
 * from a token service, signed by keys the test generates with openssl) and `auth.silly`, with the
 * challenges and `UNAUTHORIZED` bodies that docker, containerd and skopeo understand.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes, createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import request from 'supertest';
import { SignJWT } from 'jose';
import { startFakeUpstream, seedImage, type FakeUpstream } from './helpers/fake-upstream.js';
import { startMirror, type TestMirror } from './helpers/mirror.js';
import { libtrustKeyId } from '../lib/auth/key-id.js';
import { loadConfig } from '../lib/config/load.js';

const ACCEPT = 'application/vnd.oci.image.manifest.v1+json';
/** `htpasswd -Bbn alice wonderland` (Apache's `$2y$` bcrypt). */
const ALICE = 'alice:$2y$05$Y3y9Hddxrj..M18YHcQzeeryGEEzs0pZKZ9ym9m.zsL8tBDml88K.';
const basic = (user: string, pass: string): string => `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`;

let upstream: FakeUpstream;
let mirror: TestMirror;
let dir: string;
let image: ReturnType<typeof seedImage>;

beforeEach(async () => {
  upstream = await startFakeUpstream();
  image = seedImage(upstream, 'library/busybox', 'latest', [randomBytes(100)]);
  dir = mkdtempSync(join(tmpdir(), 'auth-'));
});
afterEach(async () => {
  await mirror?.close();
  await upstream.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('auth.htpasswd', () => {
  const start = async (path: string) => {
    mirror = await startMirror(upstream.url, { extraYaml: `auth:\n  htpasswd:\n    realm: test-realm\n    path: ${path}` });
  };

  test("no credentials: 401 with a Basic challenge and distribution's body; right ones pull; wrong ones are refused", async () => {
    const file = join(dir, 'htpasswd');
    writeFileSync(file, `# users\n${ALICE}\n`);
    await start(file);
    const anonymous = await request(mirror.url).get('/v2/');
    expect(anonymous.status).toBe(401);
    expect(anonymous.headers['www-authenticate']).toBe('Basic realm="test-realm"');
    expect(anonymous.headers['docker-distribution-api-version']).toBe('registry/2.0');
    expect(anonymous.body).toEqual({ errors: [{ code: 'UNAUTHORIZED', message: 'authentication required', detail: null }] });
    await request(mirror.url).get('/v2/').set('Authorization', basic('alice', 'wonderland')).expect(200);
    const pull = await request(mirror.url).get('/v2/library/busybox/manifests/latest').set('Accept', ACCEPT);
    expect(pull.status).toBe(401);
    expect(pull.body.errors[0].detail).toEqual([{ Type: 'repository', Class: '', Name: 'library/busybox', Action: 'pull' }]);
    expect(upstream.hits).toEqual([]);
    const ok = await request(mirror.url).get('/v2/library/busybox/manifests/latest').set('Accept', ACCEPT).set('Authorization', basic('alice', 'wonderland'));
    expect(ok.status).toBe(200);
    expect(ok.headers['docker-content-digest']).toBe(image.manifest);
    for (const [user, pass] of [
      ['alice', 'Wonderland'],
      ['bob', 'wonderland'],
      ['alice', ''],
    ]) {
      const res = await request(mirror.url).get('/v2/').set('Authorization', basic(user!, pass!));
      expect(res.status).toBe(401);
    }
    await request(mirror.url).get('/v2/_catalog').set('Authorization', 'Bearer abc').expect(401);
    // The client's credentials are never forwarded upstream.
    expect(upstream.hits.every((h) => h.authorization === undefined)).toBe(true);
  });

  test('the file is re-read when it changes', async () => {
    const file = join(dir, 'htpasswd');
    writeFileSync(file, `${ALICE}\n`);
    await start(file);
    await request(mirror.url).get('/v2/').set('Authorization', basic('alice', 'wonderland')).expect(200);
    writeFileSync(file, 'bob:$2y$05$Y3y9Hddxrj..M18YHcQzeeryGEEzs0pZKZ9ym9m.zsL8tBDml88K.\n');
    const later = new Date(Date.now() + 5000);
    utimesSync(file, later, later);
    await request(mirror.url).get('/v2/').set('Authorization', basic('alice', 'wonderland')).expect(401);
    await request(mirror.url).get('/v2/').set('Authorization', basic('bob', 'wonderland')).expect(200);
  });

  test('a missing file is created with a user docker and a random password, logged once', async () => {
    const file = join(dir, 'auth', 'htpasswd');
    await start(file);
    expect(existsSync(file)).toBe(true);
    const m = /htpasswd is missing, provisioning with default user.*password[=:"\s]+([A-Za-z0-9_-]{43})/.exec(mirror.logs());
    expect(m).not.toBeNull();
    await request(mirror.url).get('/v2/').set('Authorization', basic('docker', m![1]!)).expect(200);
    expect(readFileSync(file, 'utf8')).toMatch(/^docker:\$2[aby]\$/);
  });
});

describe('auth.token', () => {
  interface Pki {
    rootKey: KeyObject;
    rootCert: string;
    leafKey: KeyObject;
    leafCert: string;
    otherKey: KeyObject;
  }
  const der = (pem: string): string => pem.replace(/-----[^-]+-----|\s/g, '');

  /** A root CA, a signing certificate it issued, and an unrelated key, made with openssl. */
  function makePki(): Pki {
    const run = (args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
    run([
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      'root.key',
      '-out',
      'root.pem',
      '-days',
      '2',
      '-subj',
      '/CN=token root',
      '-addext',
      'basicConstraints=critical,CA:TRUE',
    ]);
    run(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'leaf.key', '-out', 'leaf.csr', '-subj', '/CN=token signer']);
    run(['x509', '-req', '-in', 'leaf.csr', '-CA', 'root.pem', '-CAkey', 'root.key', '-CAcreateserial', '-out', 'leaf.pem', '-days', '1']);
    run(['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', 'other.key']);
    const read = (f: string) => readFileSync(join(dir, f), 'utf8');
    return {
      rootKey: createPrivateKey(read('root.key')),
      rootCert: read('root.pem'),
      leafKey: createPrivateKey(read('leaf.key')),
      leafCert: read('leaf.pem'),
      otherKey: createPrivateKey(read('other.key')),
    };
  }

  const sign = (
    key: KeyObject,
    header: Record<string, unknown>,
    claims: { iss?: string; aud?: string | string[]; exp?: number; access?: unknown[] },
  ): Promise<string> => {
    const now = Math.floor(Date.now() / 1000);
    return new SignJWT({ access: claims.access ?? [{ type: 'repository', name: 'library/busybox', actions: ['pull'] }] })
      .setProtectedHeader({ typ: 'JWT', ...header, alg: header.alg as string })
      .setIssuer(claims.iss ?? 'test-issuer')
      .setAudience(claims.aud ?? 'test-service')
      .setSubject('carol')
      .setIssuedAt(now)
      .setNotBefore(now)
      .setExpirationTime(claims.exp ?? now + 300)
      .sign(key);
  };

  test('challenges, valid tokens (x5c chain, kid), and every invalid kind', async () => {
    const pki = makePki();
    writeFileSync(join(dir, 'bundle.pem'), pki.rootCert);
    mirror = await startMirror(upstream.url, {
      extraYaml: `auth:\n  token:\n    realm: https://auth.test/token\n    service: test-service\n    issuer: test-issuer\n    rootcertbundle: ${join(dir, 'bundle.pem')}`,
    });
    const pull = (token?: string) => {
      const r = request(mirror.url).get('/v2/library/busybox/manifests/latest').set('Accept', ACCEPT);
      return token ? r.set('Authorization', `Bearer ${token}`) : r;
    };
    const none = await pull();
    expect(none.status).toBe(401);
    expect(none.headers['www-authenticate']).toBe('Bearer realm="https://auth.test/token",service="test-service",scope="repository:library/busybox:pull"');
    const base = await request(mirror.url).get('/v2/');
    expect(base.headers['www-authenticate']).toBe('Bearer realm="https://auth.test/token",service="test-service"');

    const x5c = [der(pki.leafCert), der(pki.rootCert)];
    expect((await pull(await sign(pki.leafKey, { alg: 'ES256', x5c }, {}))).status).toBe(200);
    const kid = libtrustKeyId(createPublicKey(pki.rootKey));
    expect((await pull(await sign(pki.rootKey, { alg: 'RS256', kid }, {}))).status).toBe(200);
    expect((await pull(await sign(pki.rootKey, { alg: 'RS256', kid }, { aud: ['other', 'test-service'] }))).status).toBe(200);

    const invalid = [
      await sign(pki.rootKey, { alg: 'RS256', kid }, { iss: 'someone-else' }),
      await sign(pki.rootKey, { alg: 'RS256', kid }, { aud: 'other-service' }),
      await sign(pki.rootKey, { alg: 'RS256', kid }, { exp: Math.floor(Date.now() / 1000) - 120 }),
      await sign(pki.otherKey, { alg: 'RS256', kid }, {}),
      await sign(pki.otherKey, { alg: 'RS256', kid: libtrustKeyId(createPublicKey(pki.otherKey)) }, {}),
      await sign(pki.leafKey, { alg: 'ES256', x5c: [der(pki.leafCert)] }, {}).then((t) => t.slice(0, -4) + 'AAAA'),
      'not.a.token',
      'garbage',
    ];
    for (const token of invalid) {
      const res = await pull(token);
      expect(res.status).toBe(401);
      expect(res.headers['www-authenticate']).toContain('error="invalid_token"');
      expect(res.body.errors[0].code).toBe('UNAUTHORIZED');
    }
    const otherRepo = await sign(pki.rootKey, { alg: 'RS256', kid }, { access: [{ type: 'repository', name: 'library/alpine', actions: ['pull'] }] });
    const scoped = await pull(otherRepo);
    expect(scoped.status).toBe(401);
    expect(scoped.headers['www-authenticate']).toContain('error="insufficient_scope"');
    const catalogToken = await sign(pki.rootKey, { alg: 'RS256', kid }, { access: [{ type: 'registry', name: 'catalog', actions: ['*'] }] });
    await request(mirror.url).get('/v2/_catalog').set('Authorization', `Bearer ${catalogToken}`).expect(200);
    await request(mirror.url).get('/v2/_catalog').set('Authorization', `Bearer ${otherRepo}`).expect(401);
    expect(upstream.hits.every((h) => !h.authorization)).toBe(true);
  });
});

describe('auth.silly and configuration', () => {
  test('silly: any Authorization header passes; none gets a Bearer challenge with the scope', async () => {
    mirror = await startMirror(upstream.url, { extraYaml: 'auth:\n  silly:\n    realm: https://silly.test/auth\n    service: silly' });
    const res = await request(mirror.url).get('/v2/library/busybox/tags/list');
    expect(res.status).toBe(401);
    expect(res.headers['www-authenticate']).toBe('Bearer realm="https://silly.test/auth",service="silly",scope="repository:library/busybox:pull"');
    await request(mirror.url).get('/v2/library/busybox/manifests/latest').set('Accept', ACCEPT).set('Authorization', 'Bearer whatever').expect(200);
  });

  test('upstream credentials without client auth: start-up warns that the mirror exposes what they can read; with auth it does not', async () => {
    mirror = await startMirror(upstream.url, { proxyYaml: 'username: robot\npassword: secret' });
    expect(mirror.logs()).toMatch(
      /level=warning.*proxy.username is set and no auth is configured: anything those upstream credentials can read is readable by anyone/,
    );
    await mirror.close();
    mirror = await startMirror(upstream.url, {
      proxyYaml: 'username: robot\npassword: secret',
      extraYaml: 'auth:\n  silly:\n    realm: https://silly.test/auth\n    service: silly',
    });
    expect(mirror.logs()).not.toMatch(/no auth is configured/);
  });

  test('exactly one controller, with its required keys', () => {
    const load = (yaml: string) => loadConfig({ text: `proxy:\n  remoteurl: http://u\nauth:\n${yaml}\n`, env: {} });
    expect(() => load('  htpasswd:\n    realm: r')).toThrow('auth.htpasswd.path is required');
    expect(() => load('  silly:\n    realm: r\n    service: s\n  htpasswd:\n    realm: r\n    path: /p')).toThrow(
      'auth: exactly one access controller may be configured',
    );
    expect(() => load('  token:\n    realm: r\n    service: s\n    issuer: i')).toThrow('auth.token.rootcertbundle is required');
    expect(load('  htpasswd:\n    realm: r\n    path: /p').config.auth).toEqual({ htpasswd: { realm: 'r', path: '/p' } });
  });
});
