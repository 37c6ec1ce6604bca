/**
 * Who may push to hosted repositories: authenticated clients with push access (htpasswd, token
 * scopes), anonymous clients only with the explicit `proxy.hostedanonymouspush`; mounts only from
 * repositories the client may read; deletes only with `storage.delete.enabled`.
 */
import { execFileSync } from 'node:child_process';
import { createPrivateKey, createPublicKey, randomBytes, type KeyObject } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import request from 'supertest';
import { SignJWT } from 'jose';
import { startFakeUpstream, type FakeUpstream } from './helpers/fake-upstream.js';
import { startMirror, type TestMirror } from './helpers/mirror.js';
import { pushBlob, pushSmallImage, sha256, smallImage } from './helpers/push.js';
import { libtrustKeyId } from '../lib/auth/key-id.js';

/** `htpasswd -Bbn alice wonderland`. */
const ALICE = 'alice:$2y$05$Y3y9Hddxrj..M18YHcQzeeryGEEzs0pZKZ9ym9m.zsL8tBDml88K.';
const basic = (user: string, pass: string): string => `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`;

let upstream: FakeUpstream;
let mirror: TestMirror | undefined;
let dir: string;

beforeEach(async () => {
  upstream = await startFakeUpstream();
  dir = mkdtempSync(join(tmpdir(), 'hosted-auth-'));
});
afterEach(async () => {
  await mirror?.close();
  mirror = undefined;
  await upstream.close();
  rmSync(dir, { recursive: true, force: true });
});

test('without auth, pushes are 401 and reads open; the start-up log says why', async () => {
  mirror = await startMirror(upstream.url, { proxyYaml: 'hosted: [internal/]' });
  const push = await request(mirror.url).post('/v2/internal/app/blobs/uploads/');
  expect(push.status).toBe(401);
  expect(push.body.errors[0]).toMatchObject({ code: 'UNAUTHORIZED', message: 'authentication required' });
  const put = await request(mirror.url).put('/v2/internal/app/manifests/latest').send('{}');
  expect(put.status).toBe(401);
  expect((await request(mirror.url).get('/v2/internal/app/manifests/latest')).body.errors[0].code).toBe('MANIFEST_UNKNOWN');
  expect(mirror.logs()).toMatch(/pushes to hosted repositories are refused \(401\)/);
  expect(upstream.hits).toEqual([]);
});

test('proxy.hostedanonymouspush allows anonymous pushes with a loud warning', async () => {
  mirror = await startMirror(upstream.url, { proxyYaml: 'hosted: [internal/]\nhostedanonymouspush: true' });
  expect(mirror.logs()).toMatch(/warn.*hostedanonymouspush is true and no auth is configured: ANYONE/);
  expect((await pushSmallImage(mirror.url, 'internal/app', 'latest', smallImage('anon'))).status).toBe(201);
});

test('auth.htpasswd: anonymous pushes get the Basic challenge, alice pushes', async () => {
  writeFileSync(join(dir, 'htpasswd'), `${ALICE}\n`);
  mirror = await startMirror(upstream.url, {
    proxyYaml: 'hosted: [internal/]\nhostedanonymouspush: true',
    extraYaml: `auth:\n  htpasswd:\n    realm: test-realm\n    path: ${join(dir, 'htpasswd')}`,
  });
  const anonymous = await request(mirror.url).post('/v2/internal/app/blobs/uploads/');
  expect(anonymous.status).toBe(401);
  expect(anonymous.headers['www-authenticate']).toBe('Basic realm="test-realm"');
  expect(anonymous.body.errors[0].detail).toEqual([
    { Type: 'repository', Class: '', Name: 'internal/app', Action: 'pull' },
    { Type: 'repository', Class: '', Name: 'internal/app', Action: 'push' },
  ]);
  const auth = { Authorization: basic('alice', 'wonderland') };
  expect((await pushSmallImage(mirror.url, 'internal/app', 'latest', smallImage('alice'), auth)).status).toBe(201);
  expect((await request(mirror.url).get('/v2/internal/app/tags/list').set(auth)).body.tags).toEqual(['latest']);
});

describe('auth.token', () => {
  let key: KeyObject;
  let kid: string;
  const token = (access: Array<{ name: string; actions: string[] }>): Promise<string> => {
    const now = Math.floor(Date.now() / 1000);
    return new SignJWT({ access: access.map((a) => ({ type: 'repository', ...a })) })
      .setProtectedHeader({ typ: 'JWT', alg: 'RS256', kid })
      .setIssuer('test-issuer')
      .setAudience('test-service')
      .setSubject('carol')
      .setIssuedAt(now)
      .setNotBefore(now)
      .setExpirationTime(now + 300)
      .sign(key);
  };

  beforeEach(async () => {
    execFileSync(
      'openssl',
      ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'root.key', '-out', 'root.pem', '-days', '2', '-subj', '/CN=token root'],
      { cwd: dir, stdio: 'ignore' },
    );
    key = createPrivateKey(readFileSync(join(dir, 'root.key'), 'utf8'));
    kid = libtrustKeyId(createPublicKey(key));
    mirror = await startMirror(upstream.url, {
      proxyYaml: 'hosted: [internal/]',
      extraYaml: `auth:\n  token:\n    realm: https://auth.test/token\n    service: test-service\n    issuer: test-issuer\n    rootcertbundle: ${join(dir, 'root.pem')}`,
    });
  });

  test('push needs the push scope; a mount needs pull on the source, else it is a plain upload', async () => {
    const url = mirror!.url;
    const writer = { Authorization: `Bearer ${await token([{ name: 'internal/a', actions: ['pull', 'push'] }])}` };
    const content = randomBytes(500);
    const digest = await pushBlob(url, 'internal/a', content, writer);
    const reader = { Authorization: `Bearer ${await token([{ name: 'internal/a', actions: ['pull'] }])}` };
    const refused = await request(url).post('/v2/internal/a/blobs/uploads/').set(reader);
    expect(refused.status).toBe(401);
    expect(refused.headers['www-authenticate']).toContain('scope="repository:internal/a:pull,push"');
    expect(refused.headers['www-authenticate']).toContain('error="insufficient_scope"');

    const onlyB = { Authorization: `Bearer ${await token([{ name: 'internal/b', actions: ['pull', 'push'] }])}` };
    const noRead = await request(url).post(`/v2/internal/b/blobs/uploads/?mount=${digest}&from=internal/a`).set(onlyB);
    expect(noRead.status).toBe(202);
    expect((await request(url).head(`/v2/internal/b/blobs/${digest}`).set(onlyB)).status).toBe(404);
    const both = {
      Authorization: `Bearer ${await token([
        { name: 'internal/b', actions: ['pull', 'push'] },
        { name: 'internal/a', actions: ['pull'] },
      ])}`,
    };
    const mounted = await request(url).post(`/v2/internal/b/blobs/uploads/?mount=${digest}&from=internal/a`).set(both);
    expect(mounted.status).toBe(201);
    expect((await request(url).head(`/v2/internal/b/blobs/${digest}`).set(onlyB)).status).toBe(200);
    expect(sha256(content)).toBe(digest);
  });
});

test('deletes with storage.delete.enabled false are 405 UNSUPPORTED, as distribution', async () => {
  mirror = await startMirror(upstream.url, { proxyYaml: 'hosted: [internal/]\nhostedanonymouspush: true', env: { REGISTRY_STORAGE_DELETE_ENABLED: 'false' } });
  const image = smallImage('kept');
  await pushSmallImage(mirror.url, 'internal/app', 'latest', image);
  for (const path of ['/v2/internal/app/manifests/latest', `/v2/internal/app/manifests/${image.digest}`, `/v2/internal/app/blobs/${sha256(image.config)}`]) {
    const res = await request(mirror.url).delete(path);
    expect(res.status).toBe(405);
    expect(res.body).toEqual({ errors: [{ code: 'UNSUPPORTED', message: 'The operation is unsupported.' }] });
  }
  expect((await request(mirror.url).get('/v2/internal/app/manifests/latest')).status).toBe(200);
});

test('storage.maintenance.readonly refuses pushes (405) and still serves', async () => {
  mirror = await startMirror(upstream.url, {
    proxyYaml: 'hosted: [internal/]\nhostedanonymouspush: true',
    env: { REGISTRY_STORAGE_MAINTENANCE_READONLY: '{enabled: true}' },
  });
  expect((await request(mirror.url).post('/v2/internal/app/blobs/uploads/')).status).toBe(405);
  expect((await request(mirror.url).get('/v2/internal/app/tags/list')).status).toBe(404);
});
