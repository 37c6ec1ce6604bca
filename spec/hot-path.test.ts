/**
 * The hot path (lib/api/hot-path.ts: `GET`/`HEAD` of `/v2/`, manifests and blobs answered at the
 * `node:http` level) against the express application it stands in front of: one running mirror,
 * its listener (the hot path) and a second server on its express application alone
 * (`RunningRegistry.app`), the same stores behind both. For a matrix of requests, each sent both
 * ways, the status, the headers (but `Date`, in their order) and the body are the same, and so are
 * the side effects: the request metrics, the access log line, the notification events. Against
 * Debian's docker-registry as the upstream.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeInterop } from './helpers/interop.js';
import { startDistribution, type DistributionProcess } from './helpers/upstream-registry.js';
import { OCI_INDEX, pushManifest, pushSmallImage, smallImage, sha256, type SmallImage } from './helpers/push.js';
import { startMirror, type TestMirror } from './helpers/mirror.js';
import { startEventSink, type EventSink } from './helpers/event-sink.js';
import { until } from './helpers/until.js';

const OCI = 'application/vnd.oci.image.manifest.v1+json';
const DOCKER = 'application/vnd.docker.distribution.manifest.v2+json';
/** `htpasswd -Bbn alice wonderland`. */
const ALICE = 'alice:$2y$05$Y3y9Hddxrj..M18YHcQzeeryGEEzs0pZKZ9ym9m.zsL8tBDml88K.';
const basic = (user: string, pass: string): string => `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`;
/** The same `Host` both ways: events carry the URL the client reached. */
const HOST = 'registry.test';

interface Answer {
  readonly status: number;
  /** Header names and values in the order sent, `Date` left out. */
  readonly headers: Array<[string, string]>;
  readonly body: string;
}

/** One request on a fresh connection; resolves once the connection has closed. */
function send(base: string, method: string, path: string, headers: Record<string, string>): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request(`${base}${path}`, { method, headers: { Host: HOST, ...headers }, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const raw = res.rawHeaders;
        const pairs: Array<[string, string]> = [];
        for (let i = 0; i < raw.length; i += 2) if (raw[i]!.toLowerCase() !== 'date') pairs.push([raw[i]!.toLowerCase(), raw[i + 1]!]);
        const answer = { status: res.statusCode!, headers: pairs, body: Buffer.concat(chunks).toString('latin1') };
        // The server's `finish` (metrics, access log) has run once the connection is gone.
        res.socket.once('close', () => setImmediate(() => resolve(answer)));
        if (res.socket.destroyed) setImmediate(() => resolve(answer));
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

/** The express application of `mirror` alone, on a port of its own. */
async function expressServer(mirror: TestMirror): Promise<{ url: string; close(): Promise<void> }> {
  const server = http.createServer(mirror.registry.app);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** The request metrics' lines (counts by route, method and status; bytes served by type). */
async function requestMetrics(mirror: TestMirror): Promise<Map<string, number>> {
  const text = await mirror.registry.metrics.registry.metrics();
  const lines = text.split('\n').filter((l) => /^registry_mirror_http_request_duration_seconds_count|^registry_proxy_pushed_bytes_total/.test(l));
  return new Map(lines.map((l) => [l.slice(0, l.lastIndexOf(' ')), Number(l.slice(l.lastIndexOf(' ') + 1))]));
}

/** Requests counted so far. */
function requests(metrics: Map<string, number>): number {
  let n = 0;
  for (const [k, v] of metrics) if (k.startsWith('registry_mirror_http_request_duration_seconds_count')) n += v;
  return n;
}

/** What changed between two snapshots of `requestMetrics`. */
function delta(before: Map<string, number>, after: Map<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of after) if (v !== (before.get(k) ?? 0)) out[k] = v - (before.get(k) ?? 0);
  return out;
}

/** The access log lines (JSON) of the requests made with `userAgent`, their durations left out. */
function accessLines(mirror: TestMirror, userAgent: string): unknown[] {
  return mirror
    .logs()
    .split('\n')
    .filter((l) => l.includes('"http.request.useragent"'))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((e) => e['http.request.useragent'] === userAgent)
    .map(({ time: _t, timestamp: _ts, 'http.response.duration': _d, 'http.request.useragent': _ua, ...rest }) => rest);
}

/** The events of the requests made with `userAgent`, without what differs per event (ids, time, user agent, the client's port). */
function eventsOf(sink: EventSink, userAgent: string): unknown[] {
  return sink
    .events()
    .filter((e: { request: { useragent: string } }) => e.request.useragent === userAgent)
    .map(({ id: _id, timestamp: _ts, request: { id: _rid, useragent: _ua, addr, ...request }, ...rest }: Record<string, Record<string, unknown>>) => ({
      ...rest,
      // The client's own port differs from connection to connection.
      request: { ...request, addr: String(addr).replace(/:\d+$/, '') },
    }));
}

interface Case {
  readonly name: string;
  readonly method: 'GET' | 'HEAD';
  readonly path: string;
  readonly headers?: Record<string, string>;
}

/**
 * Sends every case both ways (the hot path first, then express, then the other way round for the
 * next case) and expects the same answers and side effects; resolves with the answers for checks of
 * their own.
 */
async function compare(mirror: TestMirror, express: string, cases: readonly Case[], opts: { sink?: EventSink; accessLog: boolean }): Promise<Answer[]> {
  const sink = opts.sink;
  const answers: Answer[] = [];
  const agents: Array<[string, string]> = [];
  for (const [i, c] of cases.entries()) {
    const ways = i % 2 === 0 ? (['hot', 'express'] as const) : (['express', 'hot'] as const);
    const got: Partial<Record<'hot' | 'express', { answer: Answer; metrics: Record<string, number> }>> = {};
    for (const way of ways) {
      const agent = `case-${i}-${way}`;
      const before = await requestMetrics(mirror);
      const answer = await send(way === 'hot' ? mirror.url : express, c.method, c.path, { 'User-Agent': agent, ...c.headers });
      // The server counts a request at its response's `finish`, which may come after the client has read it all.
      await until(async () => requests(await requestMetrics(mirror)) === requests(before) + 1, `the request of ${agent} counted`);
      got[way] = { answer, metrics: delta(before, await requestMetrics(mirror)) };
    }
    const label = `${c.method} ${c.path} ${JSON.stringify(c.headers ?? {})} (${c.name})`;
    expect({ label, ...got.hot!.answer }).toEqual({ label, ...got.express!.answer });
    expect({ label, metrics: got.hot!.metrics }).toEqual({ label, metrics: got.express!.metrics });
    expect({ label, log: accessLines(mirror, `case-${i}-hot`) }).toEqual({ label, log: accessLines(mirror, `case-${i}-express`) });
    expect(accessLines(mirror, `case-${i}-hot`)).toHaveLength(opts.accessLog ? 1 : 0);
    agents.push([`case-${i}-hot`, `case-${i}-express`]);
    answers.push(got.hot!.answer);
  }
  if (sink) {
    // Events leave in the background: wait until both ways' are in (the same number), then compare.
    await until(() => agents.every(([hot, express]) => eventsOf(sink, hot).length === eventsOf(sink, express).length), 'the events of both ways', 10_000);
    for (const [hot, express] of agents) expect({ hot, events: eventsOf(sink, hot) }).toEqual({ hot, events: eventsOf(sink, express) });
    expect(agents.some(([hot]) => eventsOf(sink, hot).length > 0)).toBe(true);
  }
  return answers;
}

describeInterop('the hot path answers as the express application', () => {
  let upstream: DistributionProcess;
  let image: SmallImage;
  let indexDigest: string;

  beforeAll(async () => {
    upstream = await startDistribution();
    image = smallImage('hot-path');
    await pushSmallImage(upstream.url, 'lib/app', 'v1', image);
    const index = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI_INDEX,
        manifests: [{ mediaType: OCI, digest: image.digest, size: image.manifest.length, platform: { os: 'linux', architecture: 'amd64' } }],
      }),
    );
    indexDigest = sha256(index);
    const pushed = await pushManifest(upstream.url, 'lib/app', 'multi', index, OCI_INDEX);
    if (pushed.status !== 201) throw new Error(`index push: ${pushed.status}`);
  });
  afterAll(() => upstream?.destroy());

  test('an open mirror with hosted names, http.headers and notifications: the same answers, metrics, access log and events', async () => {
    const sink = await startEventSink();
    const mirror = await startMirror(upstream.url, {
      proxyYaml: 'hosted: [internal/]\nhostedanonymouspush: true',
      httpYaml: 'addr: 127.0.0.1:0\nheaders:\n  X-Test: [one, two]',
      extraYaml: ['notifications:', '  endpoints:', '    - name: sink', `      url: ${sink.url}/events`, '      backoff: 100ms'].join('\n'),
      env: { REGISTRY_LOG_ACCESSLOG_DISABLED: 'false', REGISTRY_LOG_FORMATTER: 'json' },
    });
    const express = await expressServer(mirror);
    try {
      const hosted = smallImage('hot-path-hosted');
      const pushed = await pushSmallImage(mirror.url, 'internal/app', 'h1', hosted);
      expect(pushed.status).toBe(201);
      const layer = image.layers[0]!;
      const layerDigest = sha256(layer);
      const unknown = sha256(randomBytes(16));
      // Everything cached once, so that both ways find the same state.
      for (const path of [`/v2/lib/app/manifests/v1`, `/v2/lib/app/manifests/multi`, `/v2/lib/app/blobs/${layerDigest}`]) {
        expect((await send(mirror.url, 'GET', path, { Accept: `${OCI}, ${OCI_INDEX}` })).status).toBe(200);
      }
      const both = (name: string, path: string, headers?: Record<string, string>): Case[] => [
        { name, method: 'GET', path, headers },
        { name, method: 'HEAD', path, headers },
      ];
      const cases: Case[] = [
        ...both('the base', '/v2/'),
        ...both('the base without its slash', '/v2'),
        ...both('the base with a query', '/v2/?x=1'),
        ...both('a tag', '/v2/lib/app/manifests/v1', { Accept: `${OCI}, ${DOCKER}` }),
        ...both('a tag, no Accept', '/v2/lib/app/manifests/v1'),
        ...both('a tag, */*', '/v2/lib/app/manifests/v1', { Accept: '*/*' }),
        ...both('a tag, an Accept without its type', '/v2/lib/app/manifests/v1', { Accept: DOCKER }),
        ...both('a digest', `/v2/lib/app/manifests/${image.digest}`, { Accept: OCI }),
        ...both('a digest, no Accept', `/v2/lib/app/manifests/${image.digest}`),
        ...both('an index by tag, the image type accepted', '/v2/lib/app/manifests/multi', { Accept: OCI }),
        ...both('an index by tag, its type accepted', '/v2/lib/app/manifests/multi', { Accept: `${OCI}, ${OCI_INDEX}` }),
        ...both('an index by digest, the image type only', `/v2/lib/app/manifests/${indexDigest}`, { Accept: OCI }),
        ...both('If-None-Match', `/v2/lib/app/manifests/${image.digest}`, { 'If-None-Match': `"${image.digest}"` }),
        ...both('a missing tag', '/v2/lib/app/manifests/nope'),
        ...both('a missing digest', `/v2/lib/app/manifests/${unknown}`),
        ...both('a bad digest', '/v2/lib/app/manifests/sha256:abc'),
        ...both('an invalid tag', '/v2/lib/app/manifests/-bad'),
        ...both('a bad name', '/v2/Lib/App/manifests/v1'),
        ...both('an unknown repository', '/v2/nothere/app/manifests/v1'),
        ...both('ns given twice', '/v2/lib/app/manifests/v1?ns=a&ns=b'),
        ...both('ns of no upstream', '/v2/lib/app/manifests/v1?ns=other.example'),
        ...both('a fragment (express parses it)', '/v2/lib/app/manifests/v1#x'),
        ...both('a blob', `/v2/lib/app/blobs/${layerDigest}`),
        ...both('a blob range', `/v2/lib/app/blobs/${layerDigest}`, { Range: 'bytes=0-9' }),
        ...both('a suffix range', `/v2/lib/app/blobs/${layerDigest}`, { Range: 'bytes=-5' }),
        ...both('an open range', `/v2/lib/app/blobs/${layerDigest}`, { Range: 'bytes=5-' }),
        ...both('an unsatisfiable range', `/v2/lib/app/blobs/${layerDigest}`, { Range: `bytes=${layer.length + 10}-` }),
        ...both('a malformed range', `/v2/lib/app/blobs/${layerDigest}`, { Range: 'bytes=x-y' }),
        ...both('several ranges', `/v2/lib/app/blobs/${layerDigest}`, { Range: 'bytes=0-1,3-4' }),
        ...both('a missing blob', `/v2/lib/app/blobs/${unknown}`),
        ...both('a bad blob digest', '/v2/lib/app/blobs/sha256:xyz'),
        ...both('a hosted manifest', '/v2/internal/app/manifests/h1', { Accept: OCI }),
        ...both('a hosted manifest by digest', `/v2/internal/app/manifests/${hosted.digest}`),
        ...both('a missing hosted tag', '/v2/internal/app/manifests/nope'),
        ...both('a hosted blob', `/v2/internal/app/blobs/${sha256(hosted.config)}`),
        ...both('a missing hosted blob', `/v2/internal/app/blobs/${unknown}`),
      ];
      const answers = await compare(mirror, express.url, cases, { sink, accessLog: true });
      // The matrix covers what it says: successes, ranges, refusals.
      const statuses = new Set(answers.map((a) => a.status));
      for (const s of [200, 206, 400, 404, 416]) expect(statuses).toContain(s);
      expect(answers[0]!.headers).toEqual(
        expect.arrayContaining([
          ['x-test', 'one'],
          ['x-test', 'two'],
        ]),
      );
    } finally {
      await express.close();
      await mirror.close();
      await sink.close();
    }
  }, 120_000);

  test('with auth.htpasswd: the same challenges and answers with and without credentials', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hot-path-'));
    const file = join(dir, 'htpasswd');
    writeFileSync(file, `${ALICE}\n`);
    const mirror = await startMirror(upstream.url, {
      extraYaml: `auth:\n  htpasswd:\n    realm: test-realm\n    path: ${file}`,
      env: { REGISTRY_LOG_ACCESSLOG_DISABLED: 'false', REGISTRY_LOG_FORMATTER: 'json' },
    });
    const express = await expressServer(mirror);
    try {
      const alice = { Authorization: basic('alice', 'wonderland') };
      const wrong = { Authorization: basic('alice', 'Wonderland') };
      const layerDigest = sha256(image.layers[1]!);
      expect((await send(mirror.url, 'GET', `/v2/lib/app/blobs/${layerDigest}`, alice)).status).toBe(200);
      const cases: Case[] = [
        { name: 'no credentials', method: 'GET', path: '/v2/' },
        { name: 'credentials', method: 'GET', path: '/v2/', headers: alice },
        { name: 'wrong credentials', method: 'HEAD', path: '/v2/', headers: wrong },
        { name: 'a manifest, no credentials', method: 'GET', path: '/v2/lib/app/manifests/v1' },
        { name: 'a manifest, credentials', method: 'GET', path: '/v2/lib/app/manifests/v1', headers: { ...alice, Accept: OCI } },
        { name: 'a manifest, wrong credentials', method: 'HEAD', path: `/v2/lib/app/manifests/${image.digest}`, headers: wrong },
        { name: 'a bad name, no credentials', method: 'GET', path: '/v2/Bad/manifests/v1' },
        { name: 'a blob, credentials', method: 'GET', path: `/v2/lib/app/blobs/${layerDigest}`, headers: alice },
        { name: 'a blob, no credentials', method: 'HEAD', path: `/v2/lib/app/blobs/${layerDigest}` },
        { name: 'a bearer token', method: 'GET', path: `/v2/lib/app/blobs/${layerDigest}`, headers: { Authorization: 'Bearer abc' } },
      ];
      const answers = await compare(mirror, express.url, cases, { accessLog: true });
      expect(answers.map((a) => a.status)).toEqual([401, 200, 401, 401, 200, 401, 400, 200, 401, 401]);
    } finally {
      await express.close();
      await mirror.close();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);

  test('a configured prefix: the hot routes under it, the rest through express', async () => {
    const mirror = await startMirror(upstream.url, { httpYaml: 'addr: 127.0.0.1:0\nprefix: /mirror/' });
    const express = await expressServer(mirror);
    try {
      const layerDigest = sha256(image.layers[0]!);
      const cases: Case[] = [
        { name: 'the base', method: 'GET', path: '/mirror/v2/' },
        { name: 'a manifest', method: 'GET', path: '/mirror/v2/lib/app/manifests/v1', headers: { Accept: OCI } },
        { name: 'a blob', method: 'HEAD', path: `/mirror/v2/lib/app/blobs/${layerDigest}` },
        { name: 'another case of the prefix', method: 'GET', path: '/MIRROR/v2/lib/app/manifests/v1' },
        { name: 'no prefix', method: 'GET', path: '/v2/lib/app/manifests/v1' },
        { name: 'the catalog', method: 'GET', path: '/mirror/v2/_catalog' },
      ];
      const answers = await compare(mirror, express.url, cases, { accessLog: false });
      expect(answers.slice(0, 3).map((a) => a.status)).toEqual([200, 200, 200]);
    } finally {
      await express.close();
      await mirror.close();
    }
  }, 120_000);
});
