/**
 * `notifications:` (distribution's events): the endpoint's queue, retry, backoff and filters on a
 * real HTTP sink, the configuration, and the events a pull through the mirror sends. The same
 * pulls side by side with distribution 2.8 are in spec/interop/notifications.test.ts.
 */
import request from 'supertest';
import { loadConfig } from '../lib/config/load.js';
import { notificationsConfig, type NotificationEndpointConfig } from '../lib/config/notifications.js';
import { Endpoint, type DropReason } from '../lib/notifications/endpoint.js';
import { createEvent, EVENTS_MEDIA_TYPE, type EventAction, type RegistryEvent } from '../lib/notifications/event.js';
import { startEventSink, type EventSink } from './helpers/event-sink.js';
import { startFakeUpstream, seedImage, type FakeUpstream } from './helpers/fake-upstream.js';
import { startMirror, type TestMirror } from './helpers/mirror.js';
import { freePort } from './helpers/ports.js';
import { until } from './helpers/until.js';

function endpointConfig(url: string, extra: Partial<NotificationEndpointConfig> = {}): NotificationEndpointConfig {
  return {
    name: 'sink',
    url,
    disabled: false,
    headers: {},
    timeoutms: 1000,
    threshold: 10,
    backoffms: 1000,
    ignoredmediatypes: [],
    ignoredactions: [],
    includedactions: [],
    queuelimit: 100,
    mediatype: EVENTS_MEDIA_TYPE,
    ...extra,
  };
}

function event(action: EventAction, n: number, mediaType = 'application/vnd.oci.image.manifest.v1+json'): RegistryEvent {
  return createEvent(
    action,
    { mediaType, digest: `sha256:${String(n).padStart(64, '0')}`, size: n, length: n, repository: 'r' },
    { id: `req${n}`, method: 'GET', useragent: 'test' },
    {},
    { addr: 'h:5000', instanceID: 'i' },
  );
}

/** What an endpoint reported, by kind. */
function recorder() {
  const seen = {
    delivered: 0,
    rejected: 0,
    failed: 0,
    dropped: { queue_full: 0, shutdown: 0 } as Record<DropReason, number>,
    queued: 0,
    dequeued: 0,
    backingOff: 0,
    failedAt: [] as number[],
  };
  return {
    seen,
    listener: {
      queued: () => void seen.queued++,
      dequeued: () => void seen.dequeued++,
      delivered: () => void seen.delivered++,
      rejected: () => void seen.rejected++,
      failed: () => void (seen.failed++, seen.failedAt.push(Date.now())),
      backingOff: () => void seen.backingOff++,
      dropped: (_e: string, reason: DropReason, n: number) => void (seen.dropped[reason] += n),
    },
  };
}

describe('a notification endpoint', () => {
  let sink: EventSink;
  const endpoints: Endpoint[] = [];
  beforeEach(async () => {
    sink = await startEventSink();
  });
  afterEach(async () => {
    await Promise.all(endpoints.splice(0).map((e) => e.close(0)));
    await sink.close();
  });
  const open = (config: NotificationEndpointConfig, listener = {}): Endpoint => {
    const e = new Endpoint(config, listener);
    endpoints.push(e);
    return e;
  };

  test('posts each event in its own envelope, in order, with the media type and the configured headers', async () => {
    const e = open(endpointConfig(`${sink.url}/hook`, { headers: { Authorization: ['Bearer t0ken'], 'X-Two': ['a', 'b'] } }));
    const sent = [1, 2, 3].map((n) => event('pull', n));
    for (const ev of sent) e.write(ev);
    await until(() => sink.posts.length === 3, 'three posts');
    expect(sink.posts.map((p) => p.events)).toEqual(sent.map((ev) => [JSON.parse(JSON.stringify(ev))]));
    for (const p of sink.posts) {
      expect(p.path).toBe('/hook');
      expect(p.headers['content-type']).toBe(EVENTS_MEDIA_TYPE);
      expect(p.headers.authorization).toBe('Bearer t0ken');
      expect(p.headers['x-two']).toBe('a, b');
      // distribution's json.MarshalIndent(envelope, "", "   ").
      expect(p.body.startsWith('{\n   "events": [\n      {\n         "id": ')).toBe(true);
    }
  });

  test("with mediatype set to 3.x's, posts the same envelope under that media type", async () => {
    const e = open(endpointConfig(sink.url, { mediatype: 'application/vnd.docker.distribution.events.v2+json' }));
    const sent = event('pull', 1);
    e.write(sent);
    await until(() => sink.posts.length === 1, 'one post');
    expect(sink.posts[0]!.headers['content-type']).toBe('application/vnd.docker.distribution.events.v2+json');
    expect(sink.posts[0]!.events).toEqual([JSON.parse(JSON.stringify(sent))]);
  });

  test('leaves out ignored media types and actions, and our extra actions unless included', async () => {
    const e = open(endpointConfig(sink.url, { ignoredmediatypes: ['application/octet-stream'], ignoredactions: ['delete'], includedactions: ['evicted'] }));
    e.write(event('pull', 1, 'application/octet-stream'));
    e.write(event('delete', 2));
    e.write(event('cached', 3));
    e.write(event('evicted', 4));
    e.write(event('push', 5));
    await until(() => sink.posts.length === 2, 'two posts');
    await e.close(1000);
    expect(sink.events().map((ev: RegistryEvent) => `${ev.action} ${ev.target.size}`)).toEqual(['evicted 4', 'push 5']);
  });

  test('retries a refused event until it is accepted, then sends the next', async () => {
    const r = recorder();
    sink.answer({ status: 500 });
    const e = open(endpointConfig(sink.url, { threshold: 100 }), r.listener);
    e.write(event('pull', 1));
    e.write(event('pull', 2));
    await until(() => r.seen.rejected >= 3, 'three refusals');
    sink.answer({ status: 200 });
    // Delivered once the endpoint's answer is read, which is after the sink has the post.
    await until(() => r.seen.delivered >= 2, 'both events delivered');
    expect(sink.posts.length).toBe(2);
    expect(sink.events().map((ev: RegistryEvent) => ev.target.size)).toEqual([1, 2]);
    expect(r.seen.delivered).toBe(2);
    expect(e.pending).toBe(0);
    expect(r.seen.queued).toBe(r.seen.dequeued);
  });

  test('after threshold failures in a row, waits backoff between tries', async () => {
    const r = recorder();
    const dead = `http://127.0.0.1:${await freePort()}`;
    const e = open(endpointConfig(dead, { threshold: 3, backoffms: 300 }), r.listener);
    e.write(event('pull', 1));
    await until(() => r.seen.failed >= 3, 'three failures');
    expect(r.seen.backingOff).toBe(1);
    await until(() => r.seen.failed >= 4, 'a fourth try');
    // A lower bound only, between the failures as the endpoint reported them (not when this test's
    // polling noticed them, which may be late): the fourth try comes no sooner than the backoff.
    expect(r.seen.failedAt[3]! - r.seen.failedAt[2]!).toBeGreaterThanOrEqual(295);
    expect(e.pending).toBe(1);
  });

  test('an endpoint that never answers: writing never waits, the queue holds queuelimit events, the rest are dropped and counted', async () => {
    const r = recorder();
    sink.answer('hang');
    const e = open(endpointConfig(sink.url, { queuelimit: 5, timeoutms: 60_000 }), r.listener);
    for (let n = 1; n <= 12; n++) e.write(event('pull', n));
    // Synchronously: nothing was waited for.
    expect(e.pending).toBe(5);
    expect(r.seen.dropped.queue_full).toBe(7);
    await until(() => sink.requests === 1, 'the first post to arrive');
    await e.close(50);
    expect(r.seen.dropped.shutdown).toBe(5);
    expect(r.seen.queued).toBe(5);
    expect(r.seen.dequeued).toBe(5);
    expect(e.pending).toBe(0);
  });

  test('a post that outlasts the timeout is abandoned and retried', async () => {
    const r = recorder();
    sink.answer('hang');
    const e = open(endpointConfig(sink.url, { timeoutms: 100, threshold: 100 }), r.listener);
    e.write(event('pull', 1));
    await until(() => r.seen.failed >= 2, 'two timed-out posts');
    sink.answer({ status: 202 });
    await until(() => sink.posts.length === 1, 'the event delivered');
    expect(sink.events()[0].target.size).toBe(1);
  });
});

describe('notifications configuration', () => {
  test("distribution's keys and defaults", () => {
    const c = notificationsConfig({
      events: { includereferences: true },
      endpoints: [
        {
          name: 'a',
          url: 'http://a/e',
          headers: { Authorization: ['Bearer x'], Single: 'v' },
          timeout: '500ms',
          threshold: 5,
          backoff: '2s',
          ignoredmediatypes: ['x/y'],
          ignore: { mediatypes: ['z/w'], actions: ['pull'] },
        },
        {
          name: 'b',
          url: 'https://b/e',
          disabled: true,
          include: { actions: ['cached', 'evicted'] },
          queuelimit: 50,
          mediatype: 'application/vnd.docker.distribution.events.v2+json',
        },
      ],
    });
    expect(c.includereferences).toBe(true);
    expect(c.endpoints[0]).toEqual({
      name: 'a',
      url: 'http://a/e',
      disabled: false,
      headers: { Authorization: ['Bearer x'], Single: ['v'] },
      timeoutms: 500,
      threshold: 5,
      backoffms: 2000,
      ignoredmediatypes: ['x/y', 'z/w'],
      ignoredactions: ['pull'],
      includedactions: [],
      queuelimit: 10_000,
      mediatype: 'application/vnd.docker.distribution.events.v1+json',
    });
    expect(c.endpoints[1]).toMatchObject({
      disabled: true,
      timeoutms: 1000,
      threshold: 10,
      backoffms: 1000,
      includedactions: ['cached', 'evicted'],
      queuelimit: 50,
      mediatype: 'application/vnd.docker.distribution.events.v2+json',
    });
  });

  test.each([
    [{ endpoints: [{ url: 'http://a' }] }, 'notifications.endpoints[0].name is required'],
    [{ endpoints: [{ name: 'a', url: 'ftp://a' }] }, 'notifications.endpoints[0].url: "ftp://a" is not an http(s) URL'],
    [{ endpoints: [{ name: 'a', url: 'http://a', treshold: 3 }] }, 'notifications.endpoints[0].treshold is not a known key of an endpoint'],
    [{ endpoints: [{ name: 'a', url: 'http://a', timeout: 'soon' }] }, 'notifications.endpoints[0].timeout: "soon" is not a duration like 1s'],
    [
      { endpoints: [{ name: 'a', url: 'http://a', include: { actions: ['pulled'] } }] },
      'notifications.endpoints[0].include.actions: pulled is not one of cached, evicted',
    ],
    [{ endpoints: { name: 'a' } }, 'notifications.endpoints must be a list'],
    [
      { endpoints: [{ name: 'a', url: 'http://a', mediatype: 'application/json' }] },
      'notifications.endpoints[0].mediatype: "application/json" is not one of application/vnd.docker.distribution.events.v1+json, application/vnd.docker.distribution.events.v2+json',
    ],
  ])('refuses %j', (raw, message) => {
    expect(() => notificationsConfig(raw)).toThrow(message);
  });

  test('a configuration with notifications loads without the warning it used to give', () => {
    const { config, warnings } = loadConfig({
      text: 'version: 0.1\nproxy:\n  remoteurl: http://u\nnotifications:\n  endpoints:\n    - name: a\n      url: http://a/e\n',
      env: {},
    });
    expect(warnings).toEqual([]);
    expect(config.notifications.endpoints.map((e) => e.name)).toEqual(['a']);
  });
});

describe('the events of a pull through the mirror', () => {
  let sink: EventSink;
  let upstream: FakeUpstream;
  let mirror: TestMirror | undefined;
  beforeEach(async () => {
    sink = await startEventSink();
    upstream = await startFakeUpstream();
  });
  afterEach(async () => {
    await mirror?.close();
    mirror = undefined;
    await upstream.close();
    await sink.close();
  });

  const start = (endpointYaml: string[]): Promise<TestMirror> =>
    startMirror(upstream.url, {
      extraYaml: [
        'notifications:',
        '  events:',
        '    includereferences: true',
        '  endpoints:',
        '    - name: sink',
        `      url: ${sink.url}/ours`,
        ...endpointYaml.map((l) => `      ${l}`),
      ].join('\n'),
    });

  test('pull events for manifests and blobs served, HEAD included, with the request; cached events when included', async () => {
    const image = seedImage(upstream, 'library/busybox', 'latest', [Buffer.from('layer one')]);
    mirror = await start(['include:', '  actions: [cached]']);
    const ua = 'events-test/1.0';
    await request(mirror.url)
      .get('/v2/library/busybox/manifests/latest')
      .set('User-Agent', ua)
      .set('Accept', 'application/vnd.oci.image.manifest.v1+json')
      .expect(200);
    await request(mirror.url)
      .head('/v2/library/busybox/manifests/latest')
      .set('User-Agent', ua)
      .set('Accept', 'application/vnd.oci.image.manifest.v1+json')
      .expect(200);
    await request(mirror.url).get(`/v2/library/busybox/blobs/${image.layers[0]}`).set('User-Agent', ua).expect(200);
    await request(mirror.url).head(`/v2/library/busybox/blobs/${image.layers[0]}`).set('User-Agent', ua).set('X-Forwarded-For', '203.0.113.9').expect(200);
    // The fills: the manifest, the layer, and the config the mirror fetched ahead of the client.
    await until(
      () => sink.events().filter((e) => e.action === 'pull').length === 4 && sink.events().filter((e) => e.action === 'cached').length === 3,
      'four pulls and three fills',
    );
    const pulls = sink.events().filter((e) => e.action === 'pull');
    const base = `${mirror.url}/v2/library/busybox`;
    expect(pulls[0]).toMatchObject({
      action: 'pull',
      target: {
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        digest: image.manifest,
        size: image.manifestBody.length,
        length: image.manifestBody.length,
        repository: 'library/busybox',
        url: `${base}/manifests/${image.manifest}`,
        tag: 'latest',
        references: [
          { mediaType: 'application/vnd.oci.image.config.v1+json', digest: image.config },
          { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: image.layers[0], size: 9 },
        ],
      },
      request: { method: 'GET', useragent: ua, host: new URL(mirror.url).host },
      actor: {},
    });
    expect(pulls[0].request.addr).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(pulls[0].request.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(pulls[0].source).toEqual({ addr: expect.stringMatching(/:0$/), instanceID: expect.stringMatching(/^[0-9a-f-]{36}$/) });
    expect(pulls[1]).toMatchObject({ target: { digest: image.manifest, tag: 'latest' }, request: { method: 'HEAD' } });
    const blob = {
      mediaType: 'application/octet-stream',
      digest: image.layers[0],
      size: 9,
      length: 9,
      repository: 'library/busybox',
      url: `${base}/blobs/${image.layers[0]}`,
    };
    expect(pulls[2]).toMatchObject({ target: blob, request: { method: 'GET' } });
    expect(pulls[2].target.tag).toBeUndefined();
    expect(pulls[3]).toMatchObject({ target: blob, request: { method: 'HEAD', addr: '203.0.113.9' } });
    const cached = sink.events().filter((e) => e.action === 'cached');
    expect(cached.map((e) => e.target.digest).sort()).toEqual([image.manifest, image.config, image.layers[0]].sort());
    expect(cached.every((e) => e.request.method === '' && e.target.repository === 'library/busybox')).toBe(true);
  });

  test('a pull is answered while the endpoint hangs: the queue is bounded, the drops are counted and logged', async () => {
    const image = seedImage(upstream, 'library/busybox', 'latest', [Buffer.from('layer')]);
    sink.answer('hang');
    mirror = await start(['timeout: 60s', 'queuelimit: 2']);
    for (let i = 0; i < 5; i++) {
      await request(mirror.url).get(`/v2/library/busybox/blobs/${image.layers[0]}`).expect(200);
      await request(mirror.url).head('/v2/library/busybox/manifests/latest').expect(200);
    }
    // Ten events, one held by the hanging post, one more queued: every request was answered regardless.
    expect(sink.posts.length).toBe(0);
    const metrics = await mirror.registry.metrics.registry.metrics();
    expect(metrics).toMatch(/registry_notifications_dropped_total\{endpoint="sink",reason="queue_full"\} 8/);
    expect(metrics).toMatch(/registry_notifications_pending_total\{endpoint="sink"\} 2/);
    expect(metrics).toMatch(/registry_notifications_events_total\{type="Events",endpoint="sink"\} 2/);
    expect(mirror.logs()).toMatch(/level=warning msg="notifications: events dropped[^"]*" dropped\.queue_full=1 endpoint=sink/);
  });
});
