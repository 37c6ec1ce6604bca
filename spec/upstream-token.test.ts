/**
 * Pulls through the mirror from an in-process upstream speaking Docker Hub's token protocol: a
 * registry that answers 401 with a Bearer challenge, a token realm (on the same host and port, or on another
 * host that must not get the credentials), tokens that expire or are revoked mid-pull, and blob
 * downloads redirected to a CDN on another host that must not get any Authorization header.
 */
import http from 'node:http';
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import request from 'supertest';
import { startFakeUpstream, seedImage, type FakeUpstream } from './helpers/fake-upstream.js';
import { startMirror, type TestMirror } from './helpers/mirror.js';

const ACCEPT = 'application/vnd.oci.image.manifest.v1+json';
const CREDS = { user: 'puller', pass: 's3cret' };
const BASIC = `Basic ${Buffer.from(`${CREDS.user}:${CREDS.pass}`).toString('base64')}`;

interface Seen {
  readonly path: string;
  readonly authorization?: string;
}

interface Listening {
  readonly port: number;
  readonly seen: Seen[];
  close(): Promise<void>;
}

async function listen(host: string, handler: http.RequestListener): Promise<Listening> {
  const seen: Seen[] = [];
  const server = http.createServer((req, res) => {
    seen.push({ path: `${req.method} ${req.url}`, authorization: req.headers.authorization });
    handler(req, res);
  });
  await new Promise<void>((r) => server.listen(0, host, r));
  return {
    port: (server.address() as AddressInfo).port,
    seen,
    close: () =>
      new Promise((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

/** A Docker-Hub-like upstream: registry, token realm and blob CDN, the content from a fake upstream. */
async function startTokenHub(opts: { realmHost: string; expiresIn: number; requireCredentials?: boolean; realmOnRegistry?: boolean }) {
  const content: FakeUpstream = await startFakeUpstream();
  const tokens = new Map<string, { scope: string; until: number }>();
  let issued = 0;
  const realmHandler: http.RequestListener = (req, res) => {
    const scope = new URL(req.url!, 'http://x').searchParams.get('scope') ?? '';
    if (opts.requireCredentials && req.headers.authorization !== BASIC) {
      res.writeHead(401, { 'content-type': 'application/json' }).end('{"details":"incorrect username or password"}');
      return;
    }
    const token = `token-${++issued}`;
    tokens.set(token, { scope, until: Date.now() + opts.expiresIn * 1000 });
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ token, expires_in: opts.expiresIn }));
  };
  const realm = await listen(opts.realmHost, realmHandler);
  const cdn = await listen('localhost', (req, res) => {
    // The signed URL is the only credential the CDN needs.
    const target = new URL(req.url!, 'http://x').searchParams.get('blob')!;
    http.get(`${content.url}${target}`, (r) => {
      res.writeHead(r.statusCode!, r.headers);
      r.pipe(res);
    });
  });
  let challenge = `Bearer realm="http://${opts.realmHost}:${realm.port}/token",service="registry.test"`;
  const registry = await listen('127.0.0.1', (req, res) => {
    if (opts.realmOnRegistry && req.url!.startsWith('/token')) {
      // Seen by the realm too, as when it has its own listener.
      realm.seen.push({ path: `${req.method} ${req.url}`, authorization: req.headers.authorization });
      realmHandler(req, res);
      return;
    }
    const m = /^\/v2\/(.+)\/(manifests|blobs)\//.exec(req.url!);
    const granted = tokens.get((req.headers.authorization ?? '').replace(/^Bearer /, ''));
    if (!m || !granted || granted.until < Date.now() || granted.scope !== `repository:${m[1]}:pull`) {
      res.writeHead(401, { 'www-authenticate': challenge, 'content-type': 'application/json' });
      res.end('{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}');
      return;
    }
    if (m[2] === 'blobs' && req.method === 'GET') {
      res.writeHead(307, { location: `http://localhost:${cdn.port}/cdn?blob=${encodeURIComponent(req.url!)}` }).end();
      return;
    }
    const upstream = http.request(`${content.url}${req.url}`, { method: req.method, headers: { accept: req.headers.accept ?? '' } }, (r) => {
      res.writeHead(r.statusCode!, r.headers);
      r.pipe(res);
    });
    upstream.end();
  });
  if (opts.realmOnRegistry) challenge = `Bearer realm="http://127.0.0.1:${registry.port}/token",service="registry.test"`;
  return {
    url: `http://127.0.0.1:${registry.port}`,
    content,
    registry,
    realm,
    cdn,
    /** Revokes every token, as an upstream does when they expire earlier than announced. */
    revokeAll: () => tokens.clear(),
    close: async () => {
      await Promise.all([registry.close(), realm.close(), cdn.close()]);
      await content.close();
    },
  };
}

describe('Docker Hub token protocol through the mirror', () => {
  let hub: Awaited<ReturnType<typeof startTokenHub>>;
  let mirror: TestMirror;
  afterEach(async () => {
    await mirror?.close();
    await hub?.close();
  });

  async function pull(name: string, tag: string, img: ReturnType<typeof seedImage>, headers: Record<string, string> = {}): Promise<void> {
    const m = await request(mirror.url).get(`/v2/${name}/manifests/${tag}`).set('Accept', ACCEPT).set(headers);
    expect(m.status).toBe(200);
    for (const blob of [img.config, ...img.layers]) await request(mirror.url).get(`/v2/${name}/blobs/${blob}`).set(headers).expect(200);
  }

  test('anonymous: one token per scope, Bearer to the registry, nothing to the CDN, client credentials never forwarded', async () => {
    hub = await startTokenHub({ realmHost: '127.0.0.1', expiresIn: 300 });
    mirror = await startMirror(hub.url);
    const img = seedImage(hub.content, 'library/busybox', 'latest', [randomBytes(2000), randomBytes(3000)]);
    const other = seedImage(hub.content, 'library/alpine', 'latest', [randomBytes(100)]);
    await pull('library/busybox', 'latest', img, { authorization: 'Basic Y2xpZW50OnNlY3JldA==' });
    await pull('library/alpine', 'latest', other);
    const scopes = hub.realm.seen.map((s) => new URL(s.path.split(' ')[1]!, 'http://x').searchParams.get('scope'));
    expect(scopes).toEqual(['repository:library/busybox:pull', 'repository:library/alpine:pull']);
    expect(hub.realm.seen.every((s) => s.authorization === undefined)).toBe(true);
    // Five blobs, but the two images share their config blob: the second repository gets it by an
    // upstream HEAD (access check) and a link, not a second download.
    expect(hub.cdn.seen).toHaveLength(4);
    expect(hub.registry.seen.filter((s) => s.path === `HEAD /v2/library/alpine/blobs/${other.config}`)).toHaveLength(1);
    expect(hub.cdn.seen.every((s) => s.authorization === undefined)).toBe(true);
    // No `/v2/` ping: the mirror's first request goes without a token and its 401 teaches the
    // challenge; every later one carries a token.
    const [first, ...authorized] = hub.registry.seen;
    expect(first!.authorization).toBeUndefined();
    expect(hub.registry.seen.filter((s) => s.path === 'GET /v2/')).toHaveLength(0);
    expect(authorized.length).toBeGreaterThan(0);
    for (const s of authorized) expect(s.authorization).toMatch(/^Bearer token-\d+$/);
  });

  test('with credentials: Basic goes to a realm on the upstream host and port only, never to the CDN', async () => {
    hub = await startTokenHub({ realmHost: '127.0.0.1', expiresIn: 300, requireCredentials: true, realmOnRegistry: true });
    mirror = await startMirror(hub.url, { proxyYaml: `username: ${CREDS.user}\npassword: ${CREDS.pass}` });
    const img = seedImage(hub.content, 'org/private', 'v1', [randomBytes(1000)]);
    await pull('org/private', 'v1', img);
    expect(hub.realm.seen.map((s) => s.authorization)).toEqual([BASIC]);
    expect(hub.cdn.seen.length).toBe(2);
    expect(hub.cdn.seen.every((s) => s.authorization === undefined)).toBe(true);
    expect(hub.registry.seen.some((s) => s.authorization === BASIC && !s.path.startsWith('GET /token'))).toBe(false);
  });

  test('a token realm on another host gets no credentials (an anonymous token still works)', async () => {
    hub = await startTokenHub({ realmHost: 'localhost', expiresIn: 300 });
    mirror = await startMirror(hub.url, { proxyYaml: `username: ${CREDS.user}\npassword: ${CREDS.pass}` });
    const img = seedImage(hub.content, 'library/busybox', 'latest', [randomBytes(1000)]);
    await pull('library/busybox', 'latest', img);
    expect(hub.realm.seen).toHaveLength(1);
    expect(hub.realm.seen[0]!.authorization).toBeUndefined();
    expect(mirror.logs()).toContain('not sending upstream credentials to token realm localhost');
  });

  test('wrong credentials give the client a registry error, never a 5xx', async () => {
    hub = await startTokenHub({ realmHost: '127.0.0.1', expiresIn: 300, requireCredentials: true, realmOnRegistry: true });
    mirror = await startMirror(hub.url, { proxyYaml: `username: ${CREDS.user}\npassword: wrong` });
    seedImage(hub.content, 'org/private', 'v1', [randomBytes(100)]);
    const res = await request(mirror.url).get('/v2/org/private/manifests/v1').set('Accept', ACCEPT);
    expect(res.status).toBeGreaterThanOrEqual(400);
    expect(res.status).toBeLessThan(500);
    expect(['UNAUTHORIZED', 'DENIED']).toContain(res.body.errors[0].code);
    // An operator's configuration error is logged where operators look.
    expect(mirror.logs()).toMatch(/level=warning msg=".*the upstream refused the mirror's credentials/);
  });

  test('an expired token is replaced before use; a token revoked mid-pull re-authenticates once', async () => {
    hub = await startTokenHub({ realmHost: '127.0.0.1', expiresIn: 1 });
    mirror = await startMirror(hub.url);
    const img = seedImage(hub.content, 'library/busybox', 'latest', [randomBytes(1000), randomBytes(1000)]);
    await request(mirror.url).get('/v2/library/busybox/manifests/latest').set('Accept', ACCEPT).expect(200);
    expect(hub.realm.seen).toHaveLength(1);
    await new Promise((r) => setTimeout(r, 1100));
    await request(mirror.url).get(`/v2/library/busybox/blobs/${img.layers[0]}`).expect(200);
    expect(hub.realm.seen).toHaveLength(2);
    // The upstream now refuses the token the mirror believes valid: one 401, one new token, success.
    hub.revokeAll();
    const before = hub.registry.seen.length;
    await request(mirror.url).get(`/v2/library/busybox/blobs/${img.layers[1]}`).expect(200);
    expect(hub.realm.seen).toHaveLength(3);
    expect(hub.registry.seen.slice(before).map((s) => s.path)).toEqual([
      `GET /v2/library/busybox/blobs/${img.layers[1]}`,
      `GET /v2/library/busybox/blobs/${img.layers[1]}`,
    ]);
  });
});
