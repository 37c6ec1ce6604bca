/**
 * Operability: Prometheus metrics with distribution's names after a pull, and /debug/health
 * turning 503 while the storage root is not writable.
 */
import { randomBytes } from 'node:crypto';
import { chmod, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import request from 'supertest';
import { startFakeUpstream, seedImage, type FakeUpstream } from './helpers/fake-upstream.js';
import { startMirror, type TestMirror } from './helpers/mirror.js';

describe('metrics and health', () => {
  let upstream: FakeUpstream;
  let mirror: TestMirror;
  beforeAll(async () => {
    upstream = await startFakeUpstream();
    mirror = await startMirror(upstream.url, { httpYaml: 'addr: 127.0.0.1:0\ndebug:\n  addr: 127.0.0.1:0\n  prometheus:\n    enabled: true\n    path: /metrics' });
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
    expect(value('registry_proxy_pulled_bytes_total', 'blob')).toBe(12_345);
    expect(value('registry_proxy_pushed_bytes_total', 'blob')).toBe(2 * 12_345);
    expect(text).toMatch(/registry_mirror_http_request_duration_seconds_bucket\{/);
  });

  test('/debug/health turns 503 while the storage root is unwritable and 200 again after', async () => {
    expect((await request(debug()).get('/debug/health')).status).toBe(200);
    const tmp = join(mirror.root, '.tmp');
    await mkdir(tmp, { recursive: true });
    await chmod(tmp, 0o500);
    try {
      const res = await request(debug()).get('/debug/health');
      // root ignores permission bits: only assert the 503 when the chmod has an effect.
      if (process.getuid?.() !== 0) {
        expect(res.status).toBe(503);
        expect(Object.keys(res.body)).toEqual(['storagedriver_filesystem']);
      }
    } finally {
      await chmod(tmp, 0o700);
    }
    expect((await request(debug()).get('/debug/health')).status).toBe(200);
  });
});
