/**
 * Docker Hub's rate limit as a budget (extension `proxy.budget`), against a fake Docker Hub that
 * charges manifest GETs and answers 429 beyond its limit. Counted in charges and upstream requests:
 * a low budget stops revalidation, an exhausted one answers cold requests 429 with `Retry-After`
 * without sending them and serves cached tags, and the mirror resumes once the window reopens.
 */
import { randomBytes } from 'node:crypto';
import { seedImage } from './helpers/fake-upstream.js';
import { startFakeHub, type FakeHub } from './helpers/fake-hub.js';
import { startMirror, type TestMirror } from './helpers/mirror.js';
import { until } from './helpers/until.js';
import { RateBudget } from '../lib/proxy/upstream-guards.js';

const ACCEPT = 'application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json';

describe('the rate-limit budget', () => {
  let hub: FakeHub;
  let mirror: TestMirror;

  const start = async (limit: number, proxyYaml: string, retryAfterSeconds = 1): Promise<void> => {
    hub = await startFakeHub({ limit, retryAfterSeconds });
    // Fetch-ahead of configs is on: blob GETs are free on Docker Hub and here.
    mirror = await startMirror(hub.url, {
      proxyYaml,
      httpYaml: 'addr: 127.0.0.1:0\ndebug:\n  addr: 127.0.0.1:0\n  prometheus:\n    enabled: true\n    path: /metrics',
    });
  };
  afterEach(async () => {
    await mirror.close();
    await hub.close();
  });

  const pull = async (repo: string, ref: string): Promise<{ status: number; digest: string | null; retryAfter: string | null }> => {
    const res = await fetch(`${mirror.url}/v2/${repo}/manifests/${ref}`, { headers: { accept: ACCEPT } });
    await res.arrayBuffer();
    return { status: res.status, digest: res.headers.get('docker-content-digest'), retryAfter: res.headers.get('retry-after') };
  };
  const metric = async (line: RegExp): Promise<number> => {
    const text = await (await fetch(`http://127.0.0.1:${mirror.registry.debugPort}/metrics`)).text();
    return Number(line.exec(text)?.[1] ?? 0);
  };

  test('low: cached tags are served without a HEAD while the cold ones still spend what is left', async () => {
    await start(6, 'budget:\n    reserve: 3');
    const tags = ['a', 'b', 'c', 'd', 'e'].map((t) => ({ t, img: seedImage(hub, 'library/app', t, [randomBytes(32)]) }));
    // Two pulls cost two charges; 4 left, above the reserve: a cached tag is still checked (a free HEAD).
    for (const { t } of tags.slice(0, 2)) expect((await pull('library/app', t)).status).toBe(200);
    const heads = hub.count(/^HEAD /);
    expect((await pull('library/app', 'a')).status).toBe(200);
    expect(hub.count(/^HEAD /)).toBe(heads + 1);
    // A third charge: 3 left, at the reserve. Cached tags are no longer checked...
    expect((await pull('library/app', 'c')).status).toBe(200);
    const requests = hub.hits.length;
    for (const { t, img } of tags.slice(0, 3)) expect((await pull('library/app', t)).digest).toBe(img.manifest);
    expect(hub.hits.length).toBe(requests);
    // ...and what is left goes to the tags the cache does not hold.
    for (const { t, img } of tags.slice(3)) expect((await pull('library/app', t)).digest).toBe(img.manifest);
    expect(hub.charged).toBe(5);
    expect(hub.limited).toBe(0);
  });

  test('exhausted: cold requests answered 429 with Retry-After without reaching the hub, cached ones served; resumed once the window reopens', async () => {
    // The reading is trusted 5 s: time enough for the requests below even on a loaded machine.
    await start(2, 'budget:\n    reserve: 0\n    recheck: 5s');
    const a = seedImage(hub, 'library/app', 'a', [randomBytes(32)]);
    const b = seedImage(hub, 'library/app', 'b', [randomBytes(32)]);
    const c = seedImage(hub, 'library/app', 'c', [randomBytes(32)]);
    expect((await pull('library/app', 'a')).status).toBe(200);
    expect((await pull('library/app', 'b')).status).toBe(200);
    expect(hub.charged).toBe(2);
    // The hub said 0 remaining: the cold tag is answered here, the hub never asked.
    const requests = hub.hits.length;
    const refused = await pull('library/app', 'c');
    expect(refused.status).toBe(429);
    expect(Number(refused.retryAfter)).toBeGreaterThanOrEqual(1);
    const byDigest = await pull('library/app', c.manifest);
    expect(byDigest.status).toBe(429);
    // Cached tags answer from the cache, with no request either.
    expect((await pull('library/app', 'a')).digest).toBe(a.manifest);
    expect((await pull('library/app', 'b')).digest).toBe(b.manifest);
    expect(hub.hits.length).toBe(requests);
    expect(hub.limited).toBe(0);

    hub.resetWindow();
    await until(async () => (await pull('library/app', 'c')).status === 200, 'the cold tag served once the window reopened', 30_000);
    expect((await pull('library/app', 'c')).digest).toBe(c.manifest);
    expect(hub.charged).toBe(3);
  });

  test('a 429 from the hub is passed on with its Retry-After for a cold tag and answered from the cache for a cached one', async () => {
    await start(2, 'budget:\n    reserve: 0\n    recheck: 1h', 3600);
    const a = seedImage(hub, 'library/app', 'a', [randomBytes(32)]);
    seedImage(hub, 'library/app', 'b', [randomBytes(32)]);
    expect((await pull('library/app', 'a')).status).toBe(200);
    // Another client of the same address spends the window's last pull: the mirror learns it from the 429.
    await fetch(`${hub.url}/v2/library/app/manifests/a`, { headers: { accept: ACCEPT } }).then((r) => r.arrayBuffer());
    const moved = seedImage(hub, 'library/app', 'a', [randomBytes(32)]);
    expect(moved.manifest).not.toBe(a.manifest);
    const cold = await pull('library/app', 'b');
    expect(cold.status).toBe(429);
    expect(cold.retryAfter).toBe('3600');
    expect(hub.limited).toBe(1);
    // The cached tag, moved upstream: until the Retry-After passes it is served from the cache, unasked
    // (that the mirror resumes is the test above).
    const requests = hub.hits.length;
    const cached = await pull('library/app', 'a');
    expect(cached.status).toBe(200);
    expect(cached.digest).toBe(a.manifest);
    expect(hub.hits.length).toBe(requests);
  });

  test("the mirror's charged pulls equal the hub's, and equal the distinct manifests fetched", async () => {
    await start(100, "freshness:\n    '^latest$': 1h\nbudget:\n    reserve: 0");
    const imgs = ['x', 'y', 'z'].map((r) => seedImage(hub, `library/${r}`, 'latest', [randomBytes(32)]));
    for (let round = 0; round < 5; round++) {
      const pulls = await Promise.all(['x', 'y', 'z'].map((r) => pull(`library/${r}`, 'latest')));
      expect(pulls.map((p) => p.digest)).toEqual(imgs.map((i) => i.manifest));
    }
    expect(hub.charged).toBe(3);
    const charged = await metric(/^registry_mirror_upstream_requests_total\{upstream="[^"]+",charged="true"\} (\d+)$/m);
    const skipped = await metric(/^registry_mirror_tag_checks_skipped_total\{reason="fresh"\} (\d+)$/m);
    expect(charged).toBe(hub.charged);
    // 15 pulls, 3 of them cold: 12 served within the window.
    expect(skipped).toBe(12);
    const page = await (await fetch(`${mirror.url}/`, { headers: { accept: 'text/html' } })).text();
    expect(page).toContain('3 charged pulls, 12 served from the cache');
  });
});

describe('RateBudget on its own (a clock of the test)', () => {
  const hub = (remaining: number): Record<string, string> => ({ 'ratelimit-limit': '100;w=21600', 'ratelimit-remaining': `${remaining};w=21600` });

  test("Docker Hub's headers read; ok, low at the reserve, exhausted at 0; a reading trusted for recheck; each change told once", () => {
    let now = 0;
    const changes: string[] = [];
    const budget = new RateBudget({ reserve: 5, recheckMs: 60_000, now: () => now, onChange: (state) => changes.push(state) });
    expect(budget.state).toBe('unknown');
    budget.observe('HEAD', '/v2/library/a/manifests/latest', 200, hub(76));
    expect(budget.snapshot()).toMatchObject({ state: 'ok', limit: 100, remaining: 76, windowSeconds: 21600, charged: 0, free: 1 });
    budget.observe('GET', '/v2/library/a/manifests/latest', 200, hub(5));
    expect(budget.low).toBe(true);
    budget.observe('GET', '/v2/library/a/manifests/v1', 200, hub(4));
    expect(budget.state).toBe('low');
    budget.observe('GET', '/v2/library/a/manifests/v2', 200, hub(0));
    expect(budget.snapshot()).toMatchObject({ state: 'exhausted', charged: 3 });
    expect(() => budget.admit('GET', '/v2/library/a/manifests/v3')).toThrow(
      expect.objectContaining({ status: 429, headers: { 'retry-after': '60' } }) as Error,
    );
    // Free requests still go: a HEAD, a blob.
    budget.admit('HEAD', '/v2/library/a/manifests/v3');
    budget.admit('GET', '/v2/library/a/blobs/sha256:00');
    now = 60_000;
    expect(budget.state).toBe('unknown');
    budget.admit('GET', '/v2/library/a/manifests/v3');
    budget.observe('GET', '/v2/library/a/manifests/v3', 200, hub(99));
    expect(budget.snapshot()).toMatchObject({ state: 'ok', refused: 1, charged: 4 });
    expect(changes).toEqual(['low', 'exhausted', 'ok']);
  });

  test("a 429's Retry-After (seconds or a date) decides when to ask again; without one, recheck does", () => {
    let now = 1_000_000;
    const budget = new RateBudget({ reserve: 0, recheckMs: 30_000, now: () => now });
    budget.observe('GET', '/v2/a/manifests/x', 429, { 'retry-after': '10', ...hub(0) });
    expect(budget.snapshot()).toMatchObject({ state: 'exhausted', charged: 0 });
    now += 10_000;
    expect(budget.state).toBe('unknown');
    budget.observe('GET', '/v2/a/manifests/x', 429, { 'retry-after': new Date(now + 20_000).toUTCString() });
    now += 19_000;
    expect(budget.state).toBe('exhausted');
    now += 1_000;
    expect(budget.state).toBe('unknown');
    budget.observe('GET', '/v2/a/manifests/x', 429, {});
    now += 29_999;
    expect(budget.state).toBe('exhausted');
    now += 1;
    expect(budget.state).toBe('unknown');
    // An upstream without the headers is never limited.
    const plain = new RateBudget({ reserve: 5, recheckMs: 1000, now: () => now });
    plain.observe('GET', '/v2/a/manifests/x', 200, {});
    expect(plain.low).toBe(false);
  });
});
