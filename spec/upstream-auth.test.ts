/**
 * Upstream authentication against real in-process servers speaking Docker Hub's token protocol.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import got from 'got';
import { UpstreamAuth, registrableDomain, shouldSendAuthorization } from '../lib/proxy/auth/upstream-auth.js';
import { parseChallenges } from '../lib/proxy/auth/challenge.js';
import { Upstream } from '../lib/proxy/upstream.js';

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
      res.writeHead(401, { 'www-authenticate': `Bearer realm="${realm}",service="registry.test"` }).end();
    });
    servers.push(s);
    return s;
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
    const auth = new UpstreamAuth({ remoteUrl: reg.url, got: client, now: () => now });
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
    expect(reg.hits.filter((h) => h.path === '/v2/')).toHaveLength(1);
  });

  test('invalidate makes the next call fetch a new token', async () => {
    const realm = await tokenRealm();
    const reg = await registry(`${realm.url}/token`);
    const auth = new UpstreamAuth({ remoteUrl: reg.url, got: client });
    await auth.authorization('repository:a:pull');
    auth.invalidate('repository:a:pull');
    await auth.authorization('repository:a:pull');
    expect(auth.tokenRequests).toBe(2);
  });

  test('credentials go to a realm on the same host, never to another domain', async () => {
    const realm = await tokenRealm();
    const reg = await registry(`${realm.url}/token`);
    const same = new UpstreamAuth({ remoteUrl: reg.url, got: client, username: 'u', password: 'p' });
    await same.authorization('repository:a:pull');
    expect(realm.hits[0]!.authorization).toBe(`Basic ${Buffer.from('u:p').toString('base64')}`);

    const elsewhere = `http://localhost:${new URL(realm.url).port}/token`;
    const reg2 = await registry(elsewhere);
    const warnings: string[] = [];
    const other = new UpstreamAuth({ remoteUrl: reg2.url, got: client, username: 'u', password: 'p', onWarning: (w) => warnings.push(w) });
    await other.authorization('repository:a:pull');
    expect(realm.hits[1]!.authorization).toBeUndefined();
    expect(warnings).toHaveLength(1);
  });

  test('a Basic upstream gets Basic credentials, an open one gets none', async () => {
    const basic = await serve((_req, res) => res.writeHead(401, { 'www-authenticate': 'Basic realm="r"' }).end());
    const open = await serve((_req, res) => res.writeHead(200).end('{}'));
    servers.push(basic, open);
    expect(await new UpstreamAuth({ remoteUrl: basic.url, got: client, username: 'u', password: 'p' }).authorization('s')).toBe(
      `Basic ${Buffer.from('u:p').toString('base64')}`,
    );
    expect(await new UpstreamAuth({ remoteUrl: open.url, got: client }).authorization('s')).toBeUndefined();
  });

  test('a refused Basic login is sent once, not retried with the same header', async () => {
    const basic = await serve((_req, res) => res.writeHead(401, { 'www-authenticate': 'Basic realm="r"' }).end());
    servers.push(basic);
    const upstream = new Upstream({ remoteUrl: basic.url, username: 'u', password: 'wrong' });
    try {
      await expect(upstream.headManifest('team/app', 'v1')).rejects.toMatchObject({ code: 'ERR_UPSTREAM_AUTH_FAILED', status: 401 });
      await expect(upstream.streamBlob('team/app', `sha256:${'a'.repeat(64)}`)).rejects.toMatchObject({ status: 401 });
      expect(basic.hits.filter((h) => h.path.startsWith('/v2/team/app/')).length).toBe(2);
    } finally {
      upstream.close();
    }
  });

  test('an unreachable upstream fails the call and is asked again on the next one', async () => {
    const open = await serve((_req, res) => res.writeHead(200).end('{}'));
    const url = open.url;
    await open.close();
    const auth = new UpstreamAuth({ remoteUrl: url, got: client });
    await expect(auth.authorization('s')).rejects.toMatchObject({ code: 'ERR_UPSTREAM_UNREACHABLE' });
    const port = Number(new URL(url).port);
    const again = http.createServer((_req, res) => res.writeHead(200).end('{}'));
    await new Promise<void>((r) => again.listen(port, '127.0.0.1', r));
    try {
      await expect(auth.authorization('s')).resolves.toBeUndefined();
    } finally {
      await new Promise((r) => again.close(r));
    }
  });

  test('a token realm refusing the credentials is ERR_UPSTREAM_AUTH_FAILED', async () => {
    const realm = await serve((_req, res) => res.writeHead(401).end());
    servers.push(realm);
    const reg = await registry(`${realm.url}/token`);
    const auth = new UpstreamAuth({ remoteUrl: reg.url, got: client, username: 'u', password: 'bad' });
    await expect(auth.authorization('repository:a:pull')).rejects.toMatchObject({ code: 'ERR_UPSTREAM_AUTH_FAILED', status: 401 });
  });

  test('registrable domains and redirect rules', () => {
    expect(registrableDomain('registry-1.docker.io')).toBe('docker.io');
    expect(registrableDomain('auth.docker.io')).toBe('docker.io');
    expect(registrableDomain('a.b.co.uk')).toBe('b.co.uk');
    expect(registrableDomain('127.0.0.1')).toBe('127.0.0.1');
    expect(shouldSendAuthorization('https://registry-1.docker.io/v2/x', 'https://registry-1.docker.io/v2/y')).toBe(true);
    expect(shouldSendAuthorization('https://registry-1.docker.io/v2/x', 'https://production.cloudflare.docker.com/x')).toBe(false);
  });
});
