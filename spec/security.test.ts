/**
 * The findings of a security review (issue 26), each tried as an attacker would against a real
 * mirror on 127.0.0.1 with programmable upstreams: one stored name reached by two spellings, one
 * upstream's content stored as another's, an upstream's `mediaType` served as our `Content-Type`,
 * unbounded realm bodies and token caches, credentials leaving their destination, userinfo in
 * `remoteurl`, whole-request timeouts on uploads, and the two decisions (upload sessions, bcrypt's
 * 72-byte truncation).
 */
import { execFileSync } from 'node:child_process';
import http from 'node:http';
import https from 'node:https';
import net, { type Socket } from 'node:net';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import express from 'express';
import got from 'got';
import request from 'supertest';
import bcrypt from 'bcryptjs';
import { startFakeUpstream, seedImage, type FakeUpstream } from './helpers/fake-upstream.js';
import { startMirror, type TestMirror } from './helpers/mirror.js';
import { startReplica, type Replica } from './helpers/replica.js';
import { makeTokenIssuer, type TokenIssuer } from './helpers/token-server.js';
import { pushSmallImage, sha256, smallImage } from './helpers/push.js';
import { loadConfig } from '../lib/config/load.js';
import { registryYaml } from './helpers/registry-yaml.js';
import { UpstreamAuth } from '../lib/proxy/auth/upstream-auth.js';
import { realmAllowed } from '../lib/proxy/auth/realm.js';
import { HtpasswdAccessController } from '../lib/auth/htpasswd.js';
import { createServer } from '../lib/http-listener.js';

const ACCEPT = 'application/vnd.oci.image.manifest.v1+json';

const fakes: FakeUpstream[] = [];
let mirror: TestMirror | undefined;
let dir: string;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'security-'));
});
afterEach(async () => {
  await mirror?.close();
  mirror = undefined;
  await Promise.all(fakes.splice(0).map((f) => f.close()));
  rmSync(dir, { recursive: true, force: true });
});

async function fake(): Promise<FakeUpstream> {
  const f = await startFakeUpstream();
  fakes.push(f);
  return f;
}

const manifestHits = (f: FakeUpstream): number => f.count(/\/manifests\//);

describe('1. one stored name, one spelling', () => {
  test('without auth, an alias of a hosted name (docker.io/corp/app) is NAME_UNKNOWN and never re-points the hosted tag', async () => {
    const hub = await fake();
    const ghcr = await fake();
    const img = seedImage(hub, 'corp/app', 'latest', [randomBytes(300)]);
    mirror = await startMirror(hub.url, { proxyYaml: ['hosted: [corp/]', 'upstreams:', '  ghcr.io:', `    remoteurl: ${ghcr.url}`].join('\n') });
    const alias = await request(mirror.url).get('/v2/docker.io/corp/app/manifests/latest').set('Accept', ACCEPT);
    expect(alias.status).toBe(404);
    expect(alias.body.errors[0].code).toBe('NAME_UNKNOWN');
    expect((await request(mirror.url).get(`/v2/docker.io/corp/app/blobs/${img.layers[0]}`)).status).toBe(404);
    const hosted = await request(mirror.url).get('/v2/corp/app/manifests/latest').set('Accept', ACCEPT);
    expect(hosted.status).toBe(404);
    expect(hosted.body.errors[0].code).toBe('MANIFEST_UNKNOWN');
    expect(hub.hits).toEqual([]);
  });

  describe('auth.token', () => {
    let issuer: TokenIssuer;
    const bearer = async (access: Array<{ name: string; actions: string[] }>): Promise<Record<string, string>> => ({
      Authorization: `Bearer ${await issuer.sign(access)}`,
    });

    beforeEach(async () => {
      issuer = makeTokenIssuer(dir);
    });

    test('a token for the alias docker.io/corp/app reads nothing of the hosted corp/app, and cannot mount from it', async () => {
      const hub = await fake();
      const ghcr = await fake();
      mirror = await startMirror(hub.url, {
        proxyYaml: ['hosted: [corp/]', 'upstreams:', '  ghcr.io:', `    remoteurl: ${ghcr.url}`].join('\n'),
        extraYaml: issuer.authYaml('https://auth.test/token'),
      });
      const image = smallImage('private');
      const owner = await bearer([{ name: 'corp/app', actions: ['pull', 'push'] }]);
      expect((await pushSmallImage(mirror.url, 'corp/app', 'latest', image, owner)).status).toBe(201);
      const aliasOnly = await bearer([{ name: 'docker.io/corp/app', actions: ['pull'] }]);
      expect((await request(mirror.url).get('/v2/corp/app/manifests/latest').set(aliasOnly).set('Accept', ACCEPT)).status).toBe(401);
      const manifest = await request(mirror.url).get('/v2/docker.io/corp/app/manifests/latest').set(aliasOnly).set('Accept', ACCEPT);
      expect(manifest.status).not.toBe(200);
      const layer = await request(mirror.url)
        .get(`/v2/docker.io/corp/app/blobs/${sha256(image.layers[0]!)}`)
        .set(aliasOnly);
      expect(layer.status).not.toBe(200);
      const mounter = await bearer([
        { name: 'corp/other', actions: ['pull', 'push'] },
        { name: 'docker.io/corp/app', actions: ['pull'] },
      ]);
      const mount = await request(mirror.url)
        .post(`/v2/corp/other/blobs/uploads/?mount=${sha256(image.layers[0]!)}&from=docker.io/corp/app`)
        .set(mounter);
      expect(mount.status).toBe(202);
      expect(hub.hits).toEqual([]);
    });

    test('a proxied alias needs access to both spellings (docker.io/pub/app and pub/app)', async () => {
      const hub = await fake();
      const ghcr = await fake();
      seedImage(hub, 'pub/app', 'v1', [randomBytes(100)]);
      mirror = await startMirror(hub.url, {
        proxyYaml: ['upstreams:', '  ghcr.io:', `    remoteurl: ${ghcr.url}`].join('\n'),
        extraYaml: issuer.authYaml('https://auth.test/token'),
      });
      const ask = async (names: string[]): Promise<request.Response> =>
        request(mirror!.url)
          .get('/v2/docker.io/pub/app/manifests/v1')
          .set(await bearer(names.map((name) => ({ name, actions: ['pull'] }))))
          .set('Accept', ACCEPT);
      const aliasOnly = await ask(['docker.io/pub/app']);
      expect(aliasOnly.status).toBe(401);
      expect(aliasOnly.headers['www-authenticate']).toContain('repository:pub/app:pull');
      expect((await ask(['pub/app'])).status).toBe(401);
      expect((await ask(['docker.io/pub/app', 'pub/app'])).status).toBe(200);
    });
  });

  test('the start-up check refuses hosted prefixes that collide with an alias: library/ on Docker Hub, docker.io/, an upstream stored as host_port/', () => {
    const load = (remoteurl: string, proxy: string[]): unknown =>
      loadConfig({
        text: registryYaml({ root: dir, level: 'info', http: ['addr: 127.0.0.1:0'], proxy: [`remoteurl: ${remoteurl}`, ...proxy], extra: [] }),
        env: {},
      });
    expect(() => load('https://registry-1.docker.io', ['hosted: [library/]'])).toThrow(/proxy\.hosted: library\/ .*busybox/);
    expect(() => load('https://registry-1.docker.io', ['hosted: [library/internal/]'])).toThrow(/proxy\.hosted: library\/internal\//);
    expect(() => load('http://127.0.0.1:5000', ['dockerhub: true', 'hosted: [library/]'])).toThrow(/proxy\.hosted: library\//);
    const upstreams = ['upstreams:', '  127.0.0.1:5333:', '    remoteurl: http://127.0.0.1:5333'];
    expect(() => load('http://127.0.0.1:5000', ['hosted: [docker.io/]', ...upstreams])).toThrow(/proxy\.hosted: docker\.io\//);
    expect(() => load('http://127.0.0.1:5000', ['hosted: [127.0.0.1_5333/]', ...upstreams])).toThrow(/proxy\.hosted: 127\.0\.0\.1_5333\//);
    // Without Docker Hub semantics, library/ is a name like any other.
    expect(() => load('http://127.0.0.1:5000', ['hosted: [library/, corp/]', ...upstreams])).not.toThrow();
  });
});

describe('2. one upstream per stored name', () => {
  test('?ns=docker.io with another upstream as first component, and host_port/ names, are refused; the other upstream keeps its own content', async () => {
    const hub = await fake();
    const ghcr = await fake();
    const local = await fake();
    const localHost = new URL(local.url).host;
    const real = seedImage(ghcr, 'org/app', 'v1', [randomBytes(200)]);
    seedImage(hub, 'ghcr.io/org/app', 'v1', [randomBytes(200)]);
    seedImage(hub, `${localHost.replace(':', '_')}/org/app`, 'v1', [randomBytes(200)]);
    const realLocal = seedImage(local, 'org/app', 'v1', [randomBytes(200)]);
    mirror = await startMirror(hub.url, {
      proxyYaml: [
        'immutabletags: true',
        'upstreams:',
        '  ghcr.io:',
        `    remoteurl: ${ghcr.url}`,
        '    immutabletags: true',
        `  ${localHost}:`,
        `    remoteurl: ${local.url}`,
      ].join('\n'),
    });
    const digestOf = async (path: string): Promise<string> => {
      const res = await request(mirror!.url).get(path).set('Accept', ACCEPT);
      expect(res.status).toBe(200);
      return res.headers['docker-content-digest'] as string;
    };
    expect(await digestOf('/v2/ghcr.io/org/app/manifests/v1')).toBe(real.manifest);
    for (const path of ['/v2/ghcr.io/org/app/manifests/v1?ns=docker.io', `/v2/${localHost.replace(':', '_')}/org/app/manifests/v1`]) {
      const res = await request(mirror.url).get(path).set('Accept', ACCEPT);
      expect(res.status).toBe(404);
      expect(res.body.errors[0].code).toBe('NAME_UNKNOWN');
    }
    expect(manifestHits(hub)).toBe(0);
    expect(await digestOf('/v2/ghcr.io/org/app/manifests/v1')).toBe(real.manifest);
    expect(await digestOf('/v2/org/app/manifests/v1?ns=ghcr.io')).toBe(real.manifest);
    expect(await digestOf(`/v2/org/app/manifests/v1?ns=${localHost}`)).toBe(realLocal.manifest);
  });
});

describe('3. only registered manifest types, never run by a browser', () => {
  const shaped = (mediaType: string | undefined, extra: Record<string, unknown> = {}): Buffer =>
    Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        ...(mediaType === undefined ? {} : { mediaType }),
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(Buffer.from('{}')), size: 2 },
        layers: [],
        ...extra,
      }),
    );

  test('a manifest whose mediaType is not a registered manifest type, or disagrees with its shape, is refused and not stored', async () => {
    const hub = await fake();
    hub.addManifest('evil/app', shaped('text/html', { annotations: { x: '<script>alert(document.domain)</script>' } }), 'html', 'text/html');
    hub.addManifest('evil/app', shaped('application/vnd.oci.image.index.v1+json'), 'index', 'application/vnd.oci.image.index.v1+json');
    hub.addManifest(
      'evil/app',
      Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.docker.distribution.manifest.list.v2+json', config: {} })),
      'list',
    );
    mirror = await startMirror(hub.url);
    for (const tag of ['html', 'index', 'list']) {
      for (let i = 0; i < 2; i++) {
        const res = await request(mirror.url).get(`/v2/evil/app/manifests/${tag}`).set('Accept', `${ACCEPT}, text/html`);
        expect(res.status).toBe(503);
        expect(res.headers['content-type']).toMatch(/^application\/json/);
      }
    }
    // Nothing stored: each request went to the upstream again.
    expect(hub.count(/^GET \/v2\/evil\/app\/manifests\/html$/)).toBe(2);
  });

  test('/v2/ answers carry nosniff and a restrictive CSP; an OCI manifest without mediaType is served as its schema type', async () => {
    const hub = await fake();
    const config = Buffer.from('{}');
    hub.addBlob('ok/app', config);
    const digest = hub.addManifest('ok/app', shaped(undefined), 'v1', 'text/html');
    mirror = await startMirror(hub.url);
    const res = await request(mirror.url).get('/v2/ok/app/manifests/v1').set('Accept', ACCEPT);
    expect(res.status).toBe(200);
    expect(res.headers['docker-content-digest']).toBe(digest);
    expect(res.headers['content-type']).toBe(ACCEPT);
    for (const path of ['/v2/ok/app/manifests/v1', '/v2/', '/v2/nothing/here/manifests/x', `/v2/ok/app/blobs/${sha256(config)}`]) {
      const r = await request(mirror.url).get(path).set('Accept', ACCEPT);
      expect(r.headers['x-content-type-options']).toBe('nosniff');
      expect(r.headers['content-security-policy']).toBe("default-src 'none'; sandbox");
    }
  });
});

/** An HTTP server on 127.0.0.1 for the duration of a test. */
async function serve(handler: http.RequestListener): Promise<{ url: string; port: number; server: http.Server; close(): Promise<void> }> {
  const server = http.createServer(handler);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    server,
    close: () =>
      new Promise((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

const gotClient = got.extend({ throwHttpErrors: false, retry: { limit: 0 } });
const client = async (): Promise<typeof gotClient> => gotClient;

describe('4, 5, 6. the upstream token protocol', () => {
  const closers: Array<() => Promise<void>> = [];
  afterEach(async () => {
    await Promise.all(closers.splice(0).map((c) => c()));
  });

  test('4. a realm streaming an endless body is cut off: bounded memory, a clean upstream error', async () => {
    let sent = 0;
    const realm = await serve((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      const chunk = Buffer.alloc(1024 * 1024, 0x20);
      const more = (): void => {
        while (!res.destroyed && sent < 512 * 1024 * 1024) {
          sent += chunk.length;
          if (!res.write(chunk)) return void res.once('drain', more);
        }
        res.end();
      };
      more();
    });
    closers.push(realm.close);
    const auth = new UpstreamAuth({ remoteUrl: 'https://registry.example.com', got: client });
    auth.challenged('repository:a:pull', undefined, `Bearer realm="${realm.url}/token",service="x"`);
    await expect(auth.authorization('repository:a:pull')).rejects.toMatchObject({ code: 'ERR_UPSTREAM_AUTH_FAILED' });
    // What the realm got into its socket before the mirror hung up: a few MiB of buffers, not 512.
    expect(sent).toBeLessThan(64 * 1024 * 1024);
  });

  test('5. the token cache is bounded: least recently used scopes are forgotten, and fetched again when asked', async () => {
    const realm = await serve((req, res) => {
      const scope = new URL(req.url!, 'http://x').searchParams.get('scope');
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ token: `tok-${scope}`, expires_in: 300 }));
    });
    closers.push(realm.close);
    const auth = new UpstreamAuth({ remoteUrl: realm.url, got: client, maxTokens: 3 });
    auth.challenged('repository:a:pull', undefined, `Bearer realm="${realm.url}/token",service="x"`);
    const token = (name: string): Promise<string | undefined> => auth.authorization(`repository:${name}:pull`);
    for (const name of ['a', 'b', 'c']) await token(name);
    expect(auth.tokenRequests).toBe(3);
    expect(await token('a')).toBe('Bearer tok-repository:a:pull');
    expect(auth.tokenRequests).toBe(3);
    await token('d'); // b is now the least recently used
    expect(auth.tokenRequests).toBe(4);
    await token('a');
    await token('c');
    expect(auth.tokenRequests).toBe(4);
    await token('b');
    expect(auth.tokenRequests).toBe(5);
  });

  test("6. realms: same host:port, or the same public-suffix-list domain; never an IP or localhost elsewhere (distribution v3.1's cases)", () => {
    const allowed = (remote: string, realm: string): boolean => realmAllowed(new URL(remote), new URL(realm));
    expect(allowed('https://registry-1.docker.io', 'https://auth.docker.io/token')).toBe(true);
    expect(allowed('https://registry.example.com', 'https://auth.example.com/token')).toBe(true);
    expect(allowed('http://127.0.0.1:5000', 'http://127.0.0.1:5000/token')).toBe(true);
    expect(allowed('http://localhost:5000', 'http://LOCALHOST:5000/token')).toBe(true);
    expect(allowed('https://registry.example.com', 'https://evil.example.net/token')).toBe(false);
    expect(allowed('http://127.0.0.1:5000', 'http://127.0.0.1:5001/token')).toBe(false);
    expect(allowed('http://localhost:5000', 'http://localhost:5001/token')).toBe(false);
    expect(allowed('https://registry.example.com', 'https://127.0.0.1/token')).toBe(false);
    expect(allowed('https://registry.example.com', 'https://localhost/token')).toBe(false);
    expect(allowed('http://[::1]:5000', 'http://[::1]:5001/token')).toBe(false);
    // Tenants of one multi-tenant domain are not one party.
    expect(allowed('https://myreg.azurecr.io', 'https://attacker.azurecr.io/token')).toBe(false);
    expect(allowed('https://me.github.io', 'https://attacker.github.io/token')).toBe(false);
    expect(allowed('https://me.herokuapp.com', 'https://attacker.herokuapp.com/token')).toBe(false);
    expect(allowed('https://1.dkr.ecr.us-east-1.amazonaws.com', 'https://2.dkr.ecr.us-east-1.amazonaws.com/token')).toBe(false);
    expect(allowed('https://a.co.uk', 'https://b.co.uk/token')).toBe(false);
    expect(allowed('https://myreg.azurecr.io', 'https://myreg.azurecr.io/oauth2/token')).toBe(true);
  });

  test('6. a realm on another port of the upstream host gets no credentials; one on the same host:port does', async () => {
    const seen: Array<string | undefined> = [];
    const realm = await serve((req, res) => {
      seen.push(req.headers.authorization);
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ token: 't' }));
    });
    closers.push(realm.close);
    const other = new UpstreamAuth({ remoteUrl: 'http://127.0.0.1:1', got: client, username: 'u', password: 'p' });
    other.challenged('repository:a:pull', undefined, `Bearer realm="${realm.url}/token"`);
    await other.authorization('repository:a:pull');
    const same = new UpstreamAuth({ remoteUrl: realm.url, got: client, username: 'u', password: 'p' });
    same.challenged('repository:a:pull', undefined, `Bearer realm="${realm.url}/token"`);
    await same.authorization('repository:a:pull');
    expect(seen).toEqual([undefined, `Basic ${Buffer.from('u:p').toString('base64')}`]);
  });
});

describe('6. redirects', () => {
  let replica: Replica | undefined;
  const closers: Array<() => Promise<void>> = [];
  afterEach(async () => {
    await replica?.kill();
    replica = undefined;
    await Promise.all(closers.splice(0).map((c) => c()));
  });

  test('an https upstream redirecting a blob to http on the same host and port gets no Authorization in clear text', async () => {
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-keyout',
        'key.pem',
        '-out',
        'cert.pem',
        '-days',
        '2',
        '-subj',
        '/CN=127.0.0.1',
        '-addext',
        'subjectAltName=IP:127.0.0.1',
      ],
      {
        cwd: dir,
        stdio: 'ignore',
      },
    );
    const blob = randomBytes(4000);
    const digest = sha256(blob);
    const basic = `Basic ${Buffer.from('puller:s3cret').toString('base64')}`;
    const plainSeen: Array<string | undefined> = [];
    // One port speaking TLS and plain HTTP (told apart by the first byte): the redirect changes only the scheme.
    const secure = https.createServer({ key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'cert.pem')) }, (req, res) => {
      if (req.headers.authorization !== basic) return void res.writeHead(401, { 'www-authenticate': 'Basic realm="r"' }).end();
      if (req.url === `/v2/org/app/blobs/${digest}`) return void res.writeHead(307, { location: `http://127.0.0.1:${port}/cdn/${digest}` }).end();
      res.writeHead(404).end();
    });
    const plain = http.createServer((req, res) => {
      plainSeen.push(req.headers.authorization);
      res.writeHead(200, { 'content-length': blob.length }).end(blob);
    });
    const sockets = new Set<Socket>();
    const front = net.createServer({ pauseOnConnect: true }, (socket) => {
      sockets.add(socket);
      socket.once('close', () => sockets.delete(socket));
      socket.once('readable', () => {
        const first = socket.read(1) as Buffer | null;
        if (!first) return;
        socket.unshift(first);
        (first[0] === 0x16 ? secure : plain).emit('connection', socket);
      });
    });
    await new Promise<void>((r) => front.listen(0, '127.0.0.1', r));
    const port = (front.address() as AddressInfo).port;
    closers.push(
      () =>
        new Promise((r) => {
          for (const s of sockets) s.destroy();
          front.close(() => r());
        }),
    );
    replica = await startReplica(dir, join(dir, 'root'), `https://127.0.0.1:${port}`, ['username: puller', 'password: s3cret'], {
      env: { NODE_EXTRA_CA_CERTS: join(dir, 'cert.pem') },
    });
    const res = await got(`${replica.url}/v2/org/app/blobs/${digest}`, { responseType: 'buffer', throwHttpErrors: false, retry: { limit: 0 } });
    expect(res.statusCode).toBe(200);
    expect(sha256(res.body)).toBe(digest);
    expect(plainSeen).toEqual([undefined]);
  });
});

describe('7. remoteurl userinfo', () => {
  test('credentials in remoteurl are refused at load, pointing to username/password, without echoing the password', () => {
    const load = (proxy: string[]): unknown =>
      loadConfig({ text: registryYaml({ root: dir, level: 'info', http: ['addr: 127.0.0.1:0'], proxy, extra: [] }), env: {} });
    for (const proxy of [
      ['remoteurl: http://user:hunter2@127.0.0.1:5000'],
      ['remoteurl: http://127.0.0.1:5000', 'upstreams:', '  ghcr.io:', '    remoteurl: https://user:hunter2@ghcr.io'],
    ]) {
      let message = '';
      try {
        load(proxy);
      } catch (err) {
        message = (err as Error).message;
      }
      expect(message).toMatch(/remoteurl.*credentials.*username.*password/);
      expect(message).not.toContain('hunter2');
    }
    expect(() => load(['remoteurl: http://user:hunter2@127.0.0.1:5000'])).toThrow();
  });
});

describe('8. no whole-request timeout', () => {
  test('the listener keeps the header timeout against slow headers, and has no request timeout that would cut long uploads', () => {
    const server = createServer({ addr: '127.0.0.1:0', net: 'tcp' } as Parameters<typeof createServer>[0], express());
    expect(server.headersTimeout).toBe(30_000);
    expect(server.requestTimeout).toBe(0);
  });
});

describe('decisions', () => {
  test('upload sessions: an id is 122 random bits and bound to its repository and the pusher; another repository or an anonymous client cannot use it', async () => {
    const hub = await fake();
    writeFileSync(join(dir, 'htpasswd'), `alice:${bcrypt.hashSync('wonderland', 4)}\n`);
    mirror = await startMirror(hub.url, {
      proxyYaml: 'hosted: [corp/]',
      extraYaml: `auth:\n  htpasswd:\n    realm: r\n    path: ${join(dir, 'htpasswd')}`,
    });
    const alice = { Authorization: `Basic ${Buffer.from('alice:wonderland').toString('base64')}` };
    const started = await request(mirror.url).post('/v2/corp/a/blobs/uploads/').set(alice);
    expect(started.status).toBe(202);
    const uuid = started.headers['docker-upload-uuid'] as string;
    expect(uuid).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    const second = await request(mirror.url).post('/v2/corp/a/blobs/uploads/').set(alice);
    expect(second.headers['docker-upload-uuid']).not.toBe(uuid);
    const elsewhere = await request(mirror.url)
      .patch(`/v2/corp/b/blobs/uploads/${uuid}`)
      .set(alice)
      .set('Content-Type', 'application/octet-stream')
      .send(Buffer.from('x'));
    expect(elsewhere.status).toBe(404);
    expect(elsewhere.body.errors[0].code).toBe('BLOB_UPLOAD_UNKNOWN');
    const anonymous = await request(mirror.url)
      .patch(`/v2/corp/a/blobs/uploads/${uuid}`)
      .set('Content-Type', 'application/octet-stream')
      .send(Buffer.from('x'));
    expect(anonymous.status).toBe(401);
    expect((await request(mirror.url).get(`/v2/corp/a/blobs/uploads/${uuid}`).set(alice)).headers.range).toBe('0-0');
  });

  test("bcrypt's 72-byte truncation: variants past byte 72 verify (as distribution) but share one cache entry", async () => {
    const long = 'x'.repeat(72);
    writeFileSync(join(dir, 'htpasswd'), `bob:${bcrypt.hashSync(long, 4)}\n`);
    const controller = new HtpasswdAccessController({ realm: 'r', path: join(dir, 'htpasswd') });
    for (let i = 0; i < 50; i++) {
      const header = `Basic ${Buffer.from(`bob:${long}${i}`).toString('base64')}`;
      await expect(controller.authorized({ authorization: header }, [])).resolves.toEqual({ user: 'bob' });
    }
    await expect(controller.authorized({ authorization: `Basic ${Buffer.from(`bob:${'x'.repeat(71)}`).toString('base64')}` }, [])).rejects.toThrow();
    expect((controller as unknown as { verified: { size: number } }).verified.size).toBe(1);
  });
});
