/**
 * Client authentication as distribution: `auth.htpasswd` (Apache bcrypt files), `auth.token` (JWTs
 * from a token service, signed by keys the test generates with openssl) and `auth.silly`, with the
 * challenges and `UNAUTHORIZED` bodies that docker, containerd and skopeo understand.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes, createHash, createPrivateKey, createPublicKey, createSecretKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import request from 'supertest';
import { SignJWT } from 'jose';
import { startFakeUpstream, seedImage, type FakeUpstream } from './helpers/fake-upstream.js';
import { startMirror, type TestMirror } from './helpers/mirror.js';
import { jwkThumbprint, libtrustKeyId } from '../lib/auth/key-id.js';
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

  test('distribution 3: a jwks file, thumbprint kids, signingalgorithms, autoredirectpath and X-Forwarded-Proto', async () => {
    const pki = makePki();
    writeFileSync(join(dir, 'bundle.pem'), pki.rootCert);
    // A key set with an Ed25519 key, an RSA key for PS256, and what no token can name (no kid, a secret).
    const ed = generateKeyPairSync('ed25519');
    const ps = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const jwks = {
      keys: [
        { ...ed.publicKey.export({ format: 'jwk' }), kid: 'ed-key' },
        { ...ps.publicKey.export({ format: 'jwk' }), kid: 'ps-key' },
        { ...createPublicKey(pki.otherKey).export({ format: 'jwk' }) },
        { kty: 'oct', kid: 'secret', k: Buffer.from('a shared secret of thirty-two bytes').toString('base64url') },
      ],
    };
    writeFileSync(join(dir, 'keys.json'), JSON.stringify(jwks));
    const pull = (token?: string) => {
      const r = request(mirror.url).get('/v2/library/busybox/manifests/latest').set('Accept', ACCEPT);
      return token ? r.set('Authorization', `Bearer ${token}`) : r;
    };

    // The key set alone (no rootcertbundle, as distribution 3 allows).
    mirror = await startMirror(upstream.url, {
      extraYaml: `auth:\n  token:\n    realm: https://auth.test/token\n    service: test-service\n    issuer: test-issuer\n    jwks: ${join(dir, 'keys.json')}`,
    });
    expect((await pull(await sign(ed.privateKey, { alg: 'EdDSA', kid: 'ed-key' }, {}))).status).toBe(200);
    expect((await pull(await sign(ps.privateKey, { alg: 'PS256', kid: 'ps-key' }, {}))).status).toBe(200);
    // The key named by the JWK's kid is the one trusted, not what the JWK says.
    expect((await pull(await sign(ed.privateKey, { alg: 'EdDSA', jwk: { ...ed.publicKey.export({ format: 'jwk' }), kid: 'ed-key' } }, {}))).status).toBe(200);
    const refused = [
      await sign(pki.otherKey, { alg: 'RS256', kid: 'ps-key' }, {}),
      await sign(pki.otherKey, { alg: 'RS256', kid: libtrustKeyId(createPublicKey(pki.otherKey)) }, {}),
      await sign(createSecretKey(Buffer.from('a shared secret of thirty-two bytes')), { alg: 'HS256', kid: 'secret' }, {}),
      // An HMAC over the public key's bytes must not pass for a signature by it.
      await sign(createSecretKey(ps.publicKey.export({ type: 'spki', format: 'der' })), { alg: 'HS256', kid: 'ps-key' }, {}),
      await sign(pki.rootKey, { alg: 'RS256', kid: jwkThumbprint(createPublicKey(pki.rootKey)) }, {}),
    ];
    for (const token of refused) expect((await pull(token)).status).toBe(401);
    await mirror.close();

    // The bundle and the key set together; only RS256 and EdDSA allowed; the realm from the request.
    mirror = await startMirror(upstream.url, {
      extraYaml: [
        'auth:',
        '  token:',
        '    realm: https://auth.test/token',
        '    service: test-service',
        '    issuer: test-issuer',
        `    rootcertbundle: ${join(dir, 'bundle.pem')}`,
        `    jwks: ${join(dir, 'keys.json')}`,
        '    signingalgorithms: [RS256, EdDSA]',
        '    autoredirect: true',
        '    autoredirectpath: /v2/token',
      ].join('\n'),
    });
    // A root certificate's key named by its JWK thumbprint (distribution 3) or its libtrust ID (2.8).
    const thumbprint = jwkThumbprint(createPublicKey(pki.rootKey))!;
    expect(thumbprint).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect((await pull(await sign(pki.rootKey, { alg: 'RS256', kid: thumbprint }, {}))).status).toBe(200);
    expect((await pull(await sign(pki.rootKey, { alg: 'RS256', kid: libtrustKeyId(createPublicKey(pki.rootKey)) }, {}))).status).toBe(200);
    expect((await pull(await sign(ed.privateKey, { alg: 'EdDSA', kid: 'ed-key' }, {}))).status).toBe(200);
    // PS256 and ES256 are not among the algorithms allowed now.
    const notAllowed = await pull(await sign(ps.privateKey, { alg: 'PS256', kid: 'ps-key' }, {}));
    expect(notAllowed.status).toBe(401);
    expect(notAllowed.headers['www-authenticate']).toContain('error="invalid_token"');
    expect((await pull(await sign(pki.leafKey, { alg: 'ES256', x5c: [der(pki.leafCert), der(pki.rootCert)] }, {}))).status).toBe(401);
    const challenge = await pull().set('Host', 'mirror.example').set('X-Forwarded-Proto', 'http');
    expect(challenge.headers['www-authenticate']).toBe(
      'Bearer realm="http://mirror.example/v2/token",service="test-service",scope="repository:library/busybox:pull"',
    );
    expect((await pull().set('Host', 'mirror.example')).headers['www-authenticate']).toMatch(/^Bearer realm="https:\/\/mirror\.example\/v2\/token"/);
  });

  test("the thumbprints are distribution 3.1's (RFC 7638, numbers without leading zero bytes)", () => {
    // RFC 7638's own example key and thumbprint (section 3.1).
    const rfc = createPublicKey({
      format: 'jwk',
      key: {
        kty: 'RSA',
        n: '0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw',
        e: 'AQAB',
      },
    });
    expect(jwkThumbprint(rfc)).toBe('NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs');
    // An EC key whose x starts with a zero byte: distribution hashes it without that byte.
    for (;;) {
      const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      const jwk = publicKey.export({ format: 'jwk' });
      if (Buffer.from(jwk.x!, 'base64url')[0] !== 0) continue;
      const x = Buffer.from(jwk.x!, 'base64url').subarray(1).toString('base64url');
      const expected = createHash('sha256').update(`{"crv":"P-256","kty":"EC","x":"${x}","y":"${jwk.y}"}`).digest('base64url');
      if (Buffer.from(jwk.y!, 'base64url')[0] === 0) continue;
      expect(jwkThumbprint(publicKey)).toBe(expected);
      break;
    }
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
    expect(() => load('  token:\n    realm: r\n    service: s\n    issuer: i')).toThrow(
      'auth.token: token auth requires at least one token signing key: set rootcertbundle or jwks',
    );
    expect(() => load('  token:\n    realm: r\n    service: s\n    issuer: i\n    jwks: /k\n    signingalgorithms: [RS256, none]')).toThrow(
      /auth\.token\.signingalgorithms/,
    );
    expect(load('  token:\n    realm: r\n    service: s\n    issuer: i\n    jwks: /k').config.auth?.token).toEqual({
      realm: 'r',
      service: 's',
      issuer: 'i',
      jwks: '/k',
      autoredirect: false,
      autoredirectpath: '/auth/token',
      signingalgorithms: ['EdDSA', 'HS256', 'HS384', 'HS512', 'RS256', 'RS384', 'RS512', 'ES256', 'ES384', 'ES512', 'PS256', 'PS384', 'PS512'],
    });
    expect(load('  htpasswd:\n    realm: r\n    path: /p').config.auth).toEqual({ htpasswd: { realm: 'r', path: '/p' } });
  });
});
