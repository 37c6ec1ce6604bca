/** Operability: Prometheus metrics with distribution's names after a pull. */
import { randomBytes } from 'node:crypto';
import request from 'supertest';
import { startFakeUpstream, seedImage, type FakeUpstream } from './helpers/fake-upstream.js';
import { startMirror, type TestMirror } from './helpers/mirror.js';

describe('metrics', () => {
  let upstream: FakeUpstream;
  let mirror: TestMirror;
  beforeAll(async () => {
    upstream = await startFakeUpstream();
    mirror = await startMirror(upstream.url, {
      httpYaml: 'addr: 127.0.0.1:0\ndebug:\n  addr: 127.0.0.1:0\n  prometheus:\n    enabled: true\n    path: /metrics',
    });
  });
  afterAll(async () => {
    await mirror.close();
    await upstream.close();
  });
  const debug = () => `http://127.0.0.1:${mirror.registry.debugPort}`;

  test('a pull shows up as misses, hits and bytes under the official metric names', async () => {
    const layer = randomBytes(12_345);
    const img = seedImage(upstream, 'library/busybox', 'latest', [layer]);
    for (let i = 0; i < 2; i++) {
      await request(mirror.url).get(`/v2/library/busybox/manifests/${img.manifest}`).expect(200);
      await request(mirror.url).get(`/v2/library/busybox/blobs/${img.layers[0]}`).expect(200);
    }
    const text = (await request(debug()).get('/metrics')).text;
    const value = (name: string, type: string) => Number(new RegExp(`^${name}\\{type="${type}"\\} (\\S+)$`, 'm').exec(text)?.[1]);
    expect(value('registry_proxy_misses_total', 'blob')).toBe(1);
    expect(value('registry_proxy_hits_total', 'blob')).toBe(1);
    expect(value('registry_proxy_requests_total', 'blob')).toBe(2);
    expect(value('registry_proxy_misses_total', 'manifest')).toBe(1);
    expect(value('registry_proxy_hits_total', 'manifest')).toBe(1);
    // The layer, and the config fetched ahead of a client (the manifest named it).
    const configSize = Number((await request(upstream.url).head(`/v2/library/busybox/blobs/${img.config}`)).headers['content-length']);
    expect(value('registry_proxy_pulled_bytes_total', 'blob')).toBe(12_345 + configSize);
    expect(value('registry_proxy_pushed_bytes_total', 'blob')).toBe(2 * 12_345);
    expect(text).toMatch(/registry_mirror_http_request_duration_seconds_bucket\{/);
    // Measured without a size cap too: the layer, the config and the manifest.
    const cacheBytes = Number(/^registry_mirror_cache_bytes (\S+)$/m.exec(text)?.[1]);
    expect(cacheBytes).toBeGreaterThan(12_345);
    expect(cacheBytes).toBeLessThan(12_345 + 2000);
  });
});
