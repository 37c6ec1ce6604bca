/**
 * `proxy.exec`: the upstream credentials from a docker-credential-helpers program the test writes
 * (a shell script answering `get` with the host read on stdin). Distribution's lifetimes (unset:
 * once; 0: every request; above 0: reused that long), against an upstream that wants Basic
 * credentials and one whose token realm does; a failing helper fails the pull with a clear error
 * (no anonymous pull, no secret in a log) and is run again on the next request.
 */
import http from 'node:http';
import { randomBytes } from 'node:crypto';
import { chmod, mkdtemp, readFile, rm, unlink, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import request from 'supertest';
import { CredentialHelper, CredentialHelperError } from '../lib/proxy/auth/credential-helper.js';
import { startFakeUpstream, seedImage, type FakeUpstream } from './helpers/fake-upstream.js';
import { startMirror, type TestMirror } from './helpers/mirror.js';

const ACCEPT = 'application/vnd.oci.image.manifest.v1+json';
/** Every secret the helper hands out starts so; none may reach a log. */
const SECRET = 'hunter2-';

/**
 * The helper: records its argument and stdin in `runs.log`, fails as the protocol does while a
 * file `fail` exists, else answers a secret numbered by its run.
 */
const HELPER = `#!/bin/sh
cd "$(dirname "$0")"
IFS= read -r host || true
echo "$1 $host" >> runs.log
if [ -f fail ]; then echo "credentials not found in native keychain"; exit 1; fi
n=$(wc -l < runs.log | tr -d ' ')
printf '{"ServerURL":"%s","Username":"AWS","Secret":"${SECRET}%s"}' "$host" "$n"
`;

interface Upstream {
  readonly url: string;
  /** Every request: method, path and Authorization. */
  readonly seen: { path: string; authorization?: string; status: number }[];
  readonly content: FakeUpstream;
  close(): Promise<void>;
}

const basicOk = (h: string | undefined): boolean => {
  const m = /^Basic (.+)$/.exec(h ?? '');
  return !!m && new RegExp(`^AWS:${SECRET}\\d+$`).test(Buffer.from(m[1]!, 'base64').toString());
};

/**
 * A registry in front of a fake upstream's content wanting credentials: `basic` asks for them on
 * every request; `bearer` sends clients to a token realm on its own host, which wants them (and
 * grants an anonymous token without, as Docker Hub does for public images).
 */
async function startUpstream(scheme: 'basic' | 'bearer'): Promise<Upstream> {
  const content = await startFakeUpstream();
  const seen: Upstream['seen'] = [];
  const tokens = new Set<string>();
  let port = 0;
  const server = http.createServer((req, res) => {
    const record = (status: number): void => void seen.push({ path: `${req.method} ${req.url}`, authorization: req.headers.authorization, status });
    if (req.url!.startsWith('/token')) {
      const token = `tok-${basicOk(req.headers.authorization) ? 'user' : 'anonymous'}-${tokens.size}`;
      tokens.add(token);
      record(200);
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ token, expires_in: 300 }));
      return;
    }
    const auth = req.headers.authorization;
    const ok = scheme === 'basic' ? basicOk(auth) : tokens.has((auth ?? '').replace(/^Bearer /, '')) && auth!.includes('-user-');
    if (!ok) {
      record(401);
      const challenge = scheme === 'basic' ? 'Basic realm="registry"' : `Bearer realm="http://127.0.0.1:${port}/token",service="registry.test"`;
      res
        .writeHead(401, { 'www-authenticate': challenge, 'content-type': 'application/json' })
        .end('{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}');
      return;
    }
    record(200);
    const upstream = http.request(`${content.url}${req.url}`, { method: req.method, headers: { accept: req.headers.accept ?? '' } }, (r) => {
      res.writeHead(r.statusCode!, r.headers);
      r.pipe(res);
    });
    upstream.end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    seen,
    content,
    close: async () => {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
      await content.close();
    },
  };
}

describe('proxy.exec: upstream credentials from a credential helper', () => {
  let dir: string;
  let helper: string;
  let upstream: Upstream | undefined;
  let mirror: TestMirror | undefined;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'credential-helper-'));
    helper = join(dir, 'docker-credential-test');
    await writeFile(helper, HELPER);
    await chmod(helper, 0o755);
  });
  afterEach(async () => {
    await mirror?.close();
    await upstream?.close();
    mirror = upstream = undefined;
    await rm(dir, { recursive: true, force: true });
  });

  const runs = async (): Promise<string[]> => (await readFile(join(dir, 'runs.log'), 'utf8').catch(() => '')).split('\n').filter(Boolean);
  const exec = (lifetime?: string): string => `exec:\n  command: ${helper}${lifetime === undefined ? '' : `\n  lifetime: ${lifetime}`}`;

  async function pull(name: string, img: ReturnType<typeof seedImage>): Promise<void> {
    expect((await request(mirror!.url).get(`/v2/${name}/manifests/latest`).set('Accept', ACCEPT)).status).toBe(200);
    for (const blob of [img.config, ...img.layers]) await request(mirror!.url).get(`/v2/${name}/blobs/${blob}`).expect(200);
  }

  /** No log line holds a secret, plain or in a Basic header. */
  function expectNoSecretInLogs(): void {
    const logs = mirror!.logs();
    expect(logs).not.toContain(SECRET);
    for (let n = 1; n <= 20; n++) expect(logs).not.toContain(Buffer.from(`AWS:${SECRET}${n}`).toString('base64'));
  }

  test.each(['basic', 'bearer'] as const)(
    'lifetime unset (%s upstream): the helper runs once, as `<command> get` with the upstream host on stdin',
    async (scheme) => {
      upstream = await startUpstream(scheme);
      mirror = await startMirror(upstream.url, { proxyYaml: exec() });
      await pull('org/one', seedImage(upstream.content, 'org/one', 'latest', [randomBytes(1000), randomBytes(2000)]));
      await pull('org/two', seedImage(upstream.content, 'org/two', 'latest', [randomBytes(500)]));
      expect(await runs()).toEqual([`get ${new URL(upstream.url).host}`]);
      const answered = upstream.seen.filter((s) => s.status === 200 && !s.path.includes('/token'));
      expect(answered.length).toBeGreaterThanOrEqual(6);
      if (scheme === 'basic') for (const s of answered) expect(Buffer.from(s.authorization!.slice(6), 'base64').toString()).toBe(`AWS:${SECRET}1`);
      else expect(upstream.seen.filter((s) => s.path.startsWith('GET /token')).every((s) => basicOk(s.authorization))).toBe(true);
      expectNoSecretInLogs();
    },
  );

  test('lifetime 0: the helper runs for every request that needs credentials', async () => {
    upstream = await startUpstream('basic');
    mirror = await startMirror(upstream.url, { proxyYaml: exec('0') });
    await pull('org/one', seedImage(upstream.content, 'org/one', 'latest', [randomBytes(1000), randomBytes(2000)]));
    const authorized = upstream.seen.filter((s) => s.authorization !== undefined);
    expect(authorized.length).toBeGreaterThanOrEqual(4);
    expect((await runs()).length).toBe(authorized.length);
    // Each request carried the answer of its own run.
    expect(new Set(authorized.map((s) => s.authorization)).size).toBe(authorized.length);
    expectNoSecretInLogs();
  });

  test('lifetime above 0: one run serves every request within it', async () => {
    upstream = await startUpstream('basic');
    mirror = await startMirror(upstream.url, { proxyYaml: exec('1h') });
    await pull('org/one', seedImage(upstream.content, 'org/one', 'latest', [randomBytes(1000)]));
    await pull('org/two', seedImage(upstream.content, 'org/two', 'latest', [randomBytes(1000)]));
    expect(await runs()).toHaveLength(1);
  });

  test.each(['basic', 'bearer'] as const)(
    'a failing helper (%s upstream) fails the pull with a clear upstream error, nothing pulled anonymously; it runs again on the next request',
    async (scheme) => {
      upstream = await startUpstream(scheme);
      mirror = await startMirror(upstream.url, { proxyYaml: exec() });
      const img = seedImage(upstream.content, 'org/one', 'latest', [randomBytes(1000)]);
      await writeFile(join(dir, 'fail'), '');
      const res = await request(mirror.url).get('/v2/org/one/manifests/latest').set('Accept', ACCEPT);
      expect(res.status).toBe(503);
      expect(res.body.errors[0].code).toBe('UNAVAILABLE');
      expect(JSON.stringify(res.body.errors[0].detail ?? res.body.errors[0].message)).toContain('credentials not found in native keychain');
      expect(mirror.logs()).toContain(`credential helper ${helper} get failed for ${new URL(upstream.url).host} (1): credentials not found in native keychain`);
      // The upstream served nothing, and no token was asked for without credentials.
      expect(upstream.seen.filter((s) => s.status === 200)).toEqual([]);
      await unlink(join(dir, 'fail'));
      // The failure is not kept: the next request runs the helper again (past any circuit-breaker pause).
      const deadline = Date.now() + 30_000;
      let status = 0;
      while (Date.now() < deadline && status !== 200) {
        status = (await request(mirror.url).get('/v2/org/one/manifests/latest').set('Accept', ACCEPT)).status;
        if (status !== 200) await new Promise((r) => setTimeout(r, 200));
      }
      expect(status).toBe(200);
      await pull('org/one', img);
      expectNoSecretInLogs();
    },
  );
});

describe('CredentialHelper', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'credential-helper-unit-'));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  const script = async (name: string, body: string): Promise<string> => {
    const path = join(dir, name);
    await writeFile(path, `#!/bin/sh\n${body}\n`);
    await chmod(path, 0o755);
    return path;
  };

  test('a lifetime above 0 reuses the answer until it ends, then runs again; concurrent callers share a run', async () => {
    let now = 0;
    const h = new CredentialHelper({
      command: await script('ok', `printf '{"Username":"u","Secret":"s"}'`),
      serverUrl: 'r.example',
      lifetimems: 1000,
      now: () => now,
    });
    expect(await Promise.all([h.credentials(), h.credentials()])).toEqual([
      { username: 'u', password: 's' },
      { username: 'u', password: 's' },
    ]);
    expect(h.runs).toBe(1);
    now = 999;
    await h.credentials();
    expect(h.runs).toBe(1);
    now = 1000;
    await h.credentials();
    expect(h.runs).toBe(2);
  });

  test.each([
    ['no JSON', `echo 'Username: leaky'`, /answered no JSON/],
    ['no Secret', `printf '{"Username":"leaky","Secret":""}'`, /answered no Username and Secret/],
    ['a missing program', '', /\(not found\)/],
    ['a program that hangs', 'exec sleep 30', /no answer within 300 ms/],
  ])('%s is a CredentialHelperError that quotes nothing of a success answer', async (name, body, message) => {
    const command = name === 'a missing program' ? join(dir, 'absent') : await script(name.replace(/ /g, '-'), body);
    const h = new CredentialHelper({ command, serverUrl: 'r.example', timeoutms: 300 });
    const err = await h.credentials().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CredentialHelperError);
    expect((err as Error).message).toMatch(message);
    expect((err as Error).message).not.toContain('leaky');
  });
});
