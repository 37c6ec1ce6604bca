/**
 * Upstream authentication against real in-process servers speaking Docker Hub's token protocol.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import got from 'got';
import { UpstreamAuth, shouldSendAuthorization } from '../lib/proxy/auth/upstream-auth.js';
import { registrableDomain } from '../lib/proxy/auth/realm.js';
import { parseChallenges } from '../lib/proxy/auth/challenge.js';
import { Upstream } from '../lib/proxy/upstream.js';

/** The upstream client's timeouts and connection cap in these tests (the configuration's own defaults live in lib/config/proxy.ts). */
const limits = { timeouts: { connect: 10_000, response: 30_000, idle: 60_000 }, maxConnections: 8 };

interface Server {
  url: string;
  hits: Array<{ path: string; authorization?: string }>;
  close(): Promise<void>;
}

async function serve(handler: (req: http.IncomingMessage, res: http.ServerResponse) => void): Promise<Server> {
  const hits: Server['hits'] = [];
  const server = http.createServer((req, res) => {
    hits.push({ path: req.url!, authorization: req.headers.authorization });
    handler(req, res);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    hits,
    close: () => new Promise((r) => server.close(() => r())),
  };
}

const gotClient = got.extend({ throwHttpErrors: false, retry: { limit: 0 } });
const client = async (): Promise<typeof gotClient> => gotClient;

describe('upstream authentication', () => {
  const servers: Server[] = [];
  afterEach(async () => {
    await Promise.all(servers.splice(0).map((s) => s.close()));
  });

  async function tokenRealm(expiresIn = 300): Promise<Server> {
    const s = await serve((req, res) => {
      const scope = new URL(req.url!, 'http://x').searchParams.get('scope');
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ token: `tok-${scope}`, expires_in: expiresIn }));
    });
    servers.push(s);
    return s;
  }

  async function registry(realm: string): Promise<Server> {
    const s = await serve((_req, res) => {
      res.writeHead(401, { 'www-authenticate': bearer(realm) }).end();
    });
    servers.push(s);
    return s;
  }

  const bearer = (realm: string): string => `Bearer realm="${realm}",service="registry.test"`;

  /** An `UpstreamAuth` that has seen the registry's challenge (as the first 401 teaches it). */
  function challengedAuth(options: ConstructorParameters<typeof UpstreamAuth>[0], realm: string): UpstreamAuth {
    const auth = new UpstreamAuth(options);
    expect(auth.challenged('repository:a:pull', undefined, bearer(realm))).toBe(true);
    return auth;
  }

  test('challenges are parsed with quoted values, escapes and several schemes', () => {
    expect(parseChallenges('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:a,b:pull"')).toEqual([
      { scheme: 'bearer', params: { realm: 'https://auth.docker.io/token', service: 'registry.docker.io', scope: 'repository:a,b:pull' } },
    ]);
    expect(parseChallenges('Basic realm="x \\"y\\"", Bearer realm=https://r')).toEqual([
      { scheme: 'basic', params: { realm: 'x "y"' } },
      { scheme: 'bearer', params: { realm: 'https://r' } },
    ]);
  });

  test('an anonymous token is fetched once per scope per lifetime and shared by concurrent callers', async () => {
    const realm = await tokenRealm(300);
    const reg = await registry(`${realm.url}/token`);
    let now = 1_000_000;
    const auth = challengedAuth({ remoteUrl: reg.url, got: client, now: () => now }, `${realm.url}/token`);
    const results = await Promise.all(Array.from({ length: 5 }, () => auth.authorization('repository:library/busybox:pull')));
    expect(new Set(results)).toEqual(new Set(['Bearer tok-repository:library/busybox:pull']));
    expect(auth.tokenRequests).toBe(1);
    await auth.authorization('repository:library/alpine:pull');
    expect(auth.tokenRequests).toBe(2);
    now += 200_000;
    await auth.authorization('repository:library/busybox:pull');
    expect(auth.tokenRequests).toBe(2);
    now += 100_000;
    await auth.authorization('repository:library/busybox:pull');
    expect(auth.tokenRequests).toBe(3);
    // The challenge came with a request's 401: the registry itself was never asked.
    expect(reg.hits).toHaveLength(0);
  });

  test('a refused token is forgotten: the request is worth sending once more, with a new one', async () => {
    const realm = await tokenRealm();
    const reg = await registry(`${realm.url}/token`);
    const auth = challengedAuth({ remoteUrl: reg.url, got: client }, `${realm.url}/token`);
    const first = await auth.authorization('repository:a:pull');
    expect(auth.challenged('repository:a:pull', first, bearer(`${realm.url}/token`))).toBe(true);
    await auth.authorization('repository:a:pull');
    expect(auth.tokenRequests).toBe(2);
  });

  test('a cold request needs no ping: its own 401 teaches the challenge, and the token serves the next ones', async () => {
    const realm = await tokenRealm();
    const reg = await serve((req, res) => {
      if (req.headers.authorization !== 'Bearer tok-repository:team/app:pull') {
        res.writeHead(401, { 'www-authenticate': bearer(`${realm.url}/token`) }).end();
        return;
      }
      res.writeHead(200, { 'docker-content-digest': `sha256:${'b'.repeat(64)}` }).end();
    });
    const open = await serve((_req, res) => res.writeHead(200).end());
    servers.push(reg, open);
    const upstream = new Upstream({ remoteUrl: reg.url, ...limits });
    const anonymous = new Upstream({ remoteUrl: open.url, ...limits });
    try {
      await upstream.headManifest('team/app', 'v1');
      await upstream.headManifest('team/app', 'v2');
      expect(reg.hits.map((h) => [h.path, h.authorization ?? null])).toEqual([
        ['/v2/team/app/manifests/v1', null],
        ['/v2/team/app/manifests/v1', 'Bearer tok-repository:team/app:pull'],
        ['/v2/team/app/manifests/v2', 'Bearer tok-repository:team/app:pull'],
      ]);
      expect(upstream.auth.tokenRequests).toBe(1);
      await anonymous.headManifest('team/app', 'v1');
      await anonymous.streamBlob('team/app', `sha256:${'a'.repeat(64)}`).then((r) => r.body.resume());
      expect(open.hits.map((h) => h.path)).toEqual(['/v2/team/app/manifests/v1', `/v2/team/app/blobs/sha256:${'a'.repeat(64)}`]);
    } finally {
      upstream.close();
      anonymous.close();
    }
  });

  test('credentials go to a realm on the same host and port, never to another domain', async () => {
    const realm = await tokenRealm();
    // The realm served by the registry's own authority (its challenge names it; the 401 is taught directly).
    const same = challengedAuth({ remoteUrl: realm.url, got: client, username: 'u', password: 'p' }, `${realm.url}/token`);
    await same.authorization('repository:a:pull');
    expect(realm.hits[0]!.authorization).toBe(`Basic ${Buffer.from('u:p').toString('base64')}`);

    const elsewhere = `http://localhost:${new URL(realm.url).port}/token`;
    const reg2 = await registry(elsewhere);
    const warnings: string[] = [];
    const other = challengedAuth({ remoteUrl: reg2.url, got: client, username: 'u', password: 'p', onWarning: (w) => warnings.push(w) }, elsewhere);
    await other.authorization('repository:a:pull');
    expect(realm.hits[1]!.authorization).toBeUndefined();
    expect(warnings).toHaveLength(1);
  });

  test('a Basic upstream gets Basic credentials once it asks, an open one gets none', async () => {
    const withCredentials = new UpstreamAuth({ remoteUrl: 'http://127.0.0.1:1', got: client, username: 'u', password: 'p' });
    expect(await withCredentials.authorization('s')).toBeUndefined();
    expect(withCredentials.challenged('s', undefined, 'Basic realm="r"')).toBe(true);
    expect(await withCredentials.authorization('s')).toBe(`Basic ${Buffer.from('u:p').toString('base64')}`);
    // The same credentials refused: sending them again could only fail again.
    expect(withCredentials.challenged('s', `Basic ${Buffer.from('u:p').toString('base64')}`, 'Basic realm="r"')).toBe(false);
    const without = new UpstreamAuth({ remoteUrl: 'http://127.0.0.1:1', got: client });
    expect(without.challenged('s', undefined, 'Basic realm="r"')).toBe(false);
    expect(without.challenged('s', undefined, undefined)).toBe(false);
  });

  test('a refused Basic login is sent once, not retried with the same header', async () => {
    const basic = await serve((_req, res) => res.writeHead(401, { 'www-authenticate': 'Basic realm="r"' }).end());
    servers.push(basic);
    const upstream = new Upstream({ remoteUrl: basic.url, username: 'u', password: 'wrong', ...limits });
    try {
      await expect(upstream.headManifest('team/app', 'v1')).rejects.toMatchObject({ code: 'ERR_UPSTREAM_AUTH_FAILED', status: 401 });
      await expect(upstream.streamBlob('team/app', `sha256:${'a'.repeat(64)}`)).rejects.toMatchObject({ status: 401 });
      // The first request learns the challenge with no credentials; each call sends them once.
      const credentials = `Basic ${Buffer.from('u:wrong').toString('base64')}`;
      expect(basic.hits.map((h) => h.authorization ?? null)).toEqual([null, credentials, credentials]);
    } finally {
      upstream.close();
    }
  });

  test('an unreachable upstream fails the call and is asked again on the next one', async () => {
    const open = await serve((_req, res) => res.writeHead(200).end('{}'));
    const url = open.url;
    await open.close();
    const upstream = new Upstream({ remoteUrl: url, ...limits });
    try {
      await expect(upstream.headManifest('a', 'v1')).rejects.toMatchObject({ code: 'ERR_UPSTREAM_UNREACHABLE' });
      const port = Number(new URL(url).port);
      const again = http.createServer((_req, res) => res.writeHead(200).end());
      await new Promise<void>((r) => again.listen(port, '127.0.0.1', r));
      try {
        await expect(upstream.headManifest('a', 'v1')).resolves.toMatchObject({ status: 200 });
      } finally {
        await new Promise((r) => again.close(r));
      }
    } finally {
      upstream.close();
    }
  });

  test('a closed upstream client sends nothing more: every later call fails at once, unreachable', async () => {
    const open = await serve((_req, res) => res.writeHead(200).end('{}'));
    servers.push(open);
    const upstream = new Upstream({ remoteUrl: open.url, ...limits });
    await upstream.headManifest('a', 'v1');
    upstream.close();
    await expect(upstream.headManifest('a', 'v2')).rejects.toMatchObject({ code: 'ERR_UPSTREAM_UNREACHABLE', message: expect.stringMatching(/stopping/) });
    await expect(upstream.streamBlob('a', `sha256:${'a'.repeat(64)}`)).rejects.toMatchObject({ code: 'ERR_UPSTREAM_UNREACHABLE' });
    expect(open.hits.map((h) => h.path)).toEqual(['/v2/a/manifests/v1']);
  });

  test('a token realm refusing the credentials is ERR_UPSTREAM_AUTH_FAILED', async () => {
    const realm = await serve((_req, res) => res.writeHead(401).end());
    servers.push(realm);
    const reg = await registry(`${realm.url}/token`);
    const auth = challengedAuth({ remoteUrl: reg.url, got: client, username: 'u', password: 'bad' }, `${realm.url}/token`);
    await expect(auth.authorization('repository:a:pull')).rejects.toMatchObject({ code: 'ERR_UPSTREAM_AUTH_FAILED', status: 401 });
  });

  test('registrable domains and redirect rules', () => {
    expect(registrableDomain('registry-1.docker.io')).toBe('docker.io');
    expect(registrableDomain('auth.docker.io')).toBe('docker.io');
    expect(registrableDomain('a.b.co.uk')).toBe('b.co.uk');
    expect(registrableDomain('127.0.0.1')).toBeUndefined();
    expect(shouldSendAuthorization('https://registry-1.docker.io/v2/x', 'https://registry-1.docker.io/v2/y')).toBe(true);
    expect(shouldSendAuthorization('https://registry-1.docker.io/v2/x', 'https://production.cloudflare.docker.com/x')).toBe(false);
  });
});
