/**
 * The upstream circuit breaker: a repeatedly failing upstream is not asked again until a cool-down
 * passes, so cache hits stay fast while it is down; one trial then decides.
 */
import { randomBytes } from 'node:crypto';
import request from 'supertest';
import { CircuitBreaker } from '../lib/proxy/upstream-guards.js';
import { startFakeUpstream, seedImage } from './helpers/fake-upstream.js';
import { startMirror } from './helpers/mirror.js';

describe('circuit breaker', () => {
  test('opens after the threshold, lets one trial through after the cool-down, doubles it on failure, closes on success', () => {
    let now = 0;
    const changes: string[] = [];
    const b = new CircuitBreaker({
      threshold: 3,
      cooldownMs: 1000,
      maxCooldownMs: 3000,
      now: () => now,
      onChange: (open) => changes.push(open ? 'open' : 'closed'),
    });
    for (let i = 0; i < 3; i++) {
      expect(b.allow()).toBe(true);
      b.failure('refused');
    }
    expect(changes).toEqual(['open']);
    expect(b.allow()).toBe(false);
    expect(b.retryInMs).toBe(1000);
    now = 1000;
    expect(b.allow()).toBe(true);
    expect(b.allow()).toBe(false);
    b.failure('refused');
    expect(b.retryInMs).toBe(2000);
    now = 3000;
    expect(b.allow()).toBe(true);
    b.failure('refused');
    now = 6000;
    expect(b.allow()).toBe(true);
    b.failure('refused');
    expect(b.retryInMs).toBe(3000);
    now = 9000;
    expect(b.allow()).toBe(true);
    b.success();
    expect(changes).toEqual(['open', 'closed']);
    expect(b.allow()).toBe(true);
    expect(b.retryInMs).toBe(0);
  });

  test('failures in between successes do not open it', () => {
    const b = new CircuitBreaker({ threshold: 2 });
    b.failure('x');
    b.success();
    b.failure('x');
    expect(b.allow()).toBe(true);
  });

  test('through the mirror: with the upstream down, tag requests are served from the cache and stop reaching the upstream', async () => {
    const upstream = await startFakeUpstream();
    const mirror = await startMirror(upstream.url);
    try {
      const img = seedImage(upstream, 'library/busybox', 'latest', [randomBytes(100)]);
      const get = () => request(mirror.url).get('/v2/library/busybox/manifests/latest').set('Accept', 'application/vnd.oci.image.manifest.v1+json');
      await get().expect(200);
      upstream.setDown(true);
      const before = upstream.hits.length;
      for (let i = 0; i < 8; i++) expect((await get()).headers['docker-content-digest']).toBe(img.manifest);
      expect(upstream.hits.length - before).toBeLessThanOrEqual(3);
      expect(mirror.logs()).toMatch(/circuit open/);
      const uncached = await request(mirror.url).get(`/v2/library/other/manifests/latest`);
      expect(uncached.status).toBe(503);
      expect(uncached.body.errors[0].code).toBe('UNAVAILABLE');
    } finally {
      await mirror.close();
      await upstream.close();
    }
  });
});
