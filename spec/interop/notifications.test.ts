/**
 * Notifications side by side with distribution 2.8 (Debian's docker-registry): the same pulls
 * through its pull-through cache and through ours, and the same push to a plain docker-registry
 * and to one of our hosted repositories (then deletes there), all posting to one HTTP sink in the test; the events must
 * carry the same fields with the same values, except what differs by nature (event and request
 * ids, timestamps, the client's and the registry's addresses and ports, the instance id).
 */
import request from 'supertest';
import { describeInterop } from '../helpers/interop.js';
import { startDistribution, type DistributionProcess } from '../helpers/upstream-registry.js';
import { startMirror, type TestMirror } from '../helpers/mirror.js';
import { startEventSink, type EventSink } from '../helpers/event-sink.js';
import { OCI_MANIFEST, pushSmallImage, sha256, smallImage } from '../helpers/push.js';
import { until } from '../helpers/until.js';

const UA = 'notifications-interop/1.0';

/** A `notifications:` section posting to `url` (one endpoint, distribution's keys only). */
function notificationsYaml(url: string): string[] {
  return ['notifications:', '  endpoints:', '    - name: sink', `      url: ${url}`, '      timeout: 5s', '      threshold: 3', '      backoff: 100ms'];
}

/** An event without what differs by nature between two registries, its URLs without their origin. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
function comparable(e: any, origin: string): unknown {
  const { id: _id, timestamp, source, request: r, ...rest } = e;
  const { id: _rid, addr, host, ...req } = r;
  expect(typeof timestamp).toBe('string');
  expect(Number.isNaN(Date.parse(timestamp))).toBe(false);
  expect(typeof addr).toBe('string');
  expect(host).toBe(new URL(origin).host);
  expect(Object.keys(source).sort()).toEqual(['addr', 'instanceID']);
  const target = { ...rest.target };
  if (typeof target.url === 'string') target.url = target.url.replace(origin, '<origin>');
  return { ...rest, target, request: req };
}

/** Events in a stable order: a registry may emit two events of consecutive requests in either order. */
function sorted(events: unknown[]): unknown[] {
  return events
    .map((e) => JSON.stringify(e))
    .sort()
    .map((s) => JSON.parse(s) as unknown);
}

describeInterop('notifications compared with distribution 2.8', () => {
  let sink: EventSink;
  let upstream: DistributionProcess;
  let official: DistributionProcess;
  let plain: DistributionProcess;
  let ours: TestMirror;
  const image = smallImage('notifications-interop');
  const pushed = smallImage('notifications-push');

  beforeAll(async () => {
    sink = await startEventSink();
    upstream = await startDistribution();
    const res = await pushSmallImage(upstream.url, 'library/busybox', 'latest', image);
    expect(res.status).toBe(201);
    official = await startDistribution({ proxy: { remoteurl: upstream.url }, extra: notificationsYaml(`${sink.url}/official`) });
    plain = await startDistribution({ extra: notificationsYaml(`${sink.url}/plain`) });
    ours = await startMirror(upstream.url, {
      proxyYaml: 'hosted: [internal/]\nhostedanonymouspush: true',
      extraYaml: notificationsYaml(`${sink.url}/ours`).join('\n'),
    });
  }, 60_000);

  afterAll(async () => {
    await ours?.close();
    await official?.destroy();
    await plain?.destroy();
    await upstream?.destroy();
    await sink?.close();
  });

  /** The same requests, in the same order, to `url`. */
  async function pulls(url: string): Promise<void> {
    const accept = `${OCI_MANIFEST}, application/vnd.docker.distribution.manifest.v2+json`;
    await request(url).get('/v2/library/busybox/manifests/latest').set('User-Agent', UA).set('Accept', accept).expect(200);
    await request(url).head('/v2/library/busybox/manifests/latest').set('User-Agent', UA).set('Accept', accept).expect(200);
    await request(url).get(`/v2/library/busybox/manifests/${image.digest}`).set('User-Agent', UA).set('Accept', accept).expect(200);
    await request(url)
      .get(`/v2/library/busybox/blobs/${sha256(image.config)}`)
      .set('User-Agent', UA)
      .expect(200);
    await request(url)
      .get(`/v2/library/busybox/blobs/${sha256(image.layers[0]!)}`)
      .set('User-Agent', UA)
      .expect(200);
    await request(url)
      .head(`/v2/library/busybox/blobs/${sha256(image.layers[0]!)}`)
      .set('User-Agent', UA)
      .expect(200);
  }

  test('pulls through the cache: the same pull events, HEAD included, field by field', async () => {
    await pulls(official.url);
    await pulls(ours.url);
    // On a timeout, say which side fell short and with what (one late event or a missing kind).
    const got = (path: string): string =>
      `${path}: ${JSON.stringify(sink.events(path).map((e: { action: string; request: { method: string }; target: { mediaType: string } }) => `${e.action} ${e.request.method} ${e.target.mediaType}`))}`;
    await until(() => sink.events('/official').length >= 6 && sink.events('/ours').length >= 6, 'six events from each registry', 20_000).catch((err: Error) => {
      throw new Error(`${err.message}; ${got('/official')}; ${got('/ours')}`);
    });
    const theirs = sink.events('/official').map((e) => comparable(e, official.url));
    const mine = sink.events('/ours').map((e) => comparable(e, ours.url));
    expect(theirs).toHaveLength(6);
    expect(sorted(mine)).toEqual(sorted(theirs));
    // The envelope: one event each, the same media type.
    const types = (path: string): string[] => [
      ...new Set(sink.posts.filter((p) => p.path === path).map((p) => `${p.headers['content-type']} ${p.events.length}`)),
    ];
    expect(types('/ours')).toEqual(types('/official'));
    expect(types('/official')).toEqual(['application/vnd.docker.distribution.events.v1+json 1']);
  });

  test('a push to a hosted repository: the same push events as a plain registry', async () => {
    for (const url of [plain.url, ours.url]) {
      const res = await pushSmallImage(url, 'internal/app', '1.0', pushed);
      expect(res.status).toBe(201);
    }
    const isPush = (e: { action: string }): boolean => e.action === 'push';
    await until(
      () => sink.events('/plain').filter(isPush).length >= 4 && sink.events('/ours').filter(isPush).length >= 4,
      'four push events from each registry',
      20_000,
    );
    const theirs = sink
      .events('/plain')
      .filter(isPush)
      .map((e) => comparable(e, plain.url));
    const mine = sink
      .events('/ours')
      .filter(isPush)
      .map((e) => comparable(e, ours.url));
    expect(theirs).toHaveLength(4);
    expect(sorted(mine)).toEqual(sorted(theirs));
  });

  test('deletes of a hosted manifest and blob: the same delete events', async () => {
    for (const url of [plain.url, ours.url]) {
      await request(url).delete(`/v2/internal/app/manifests/${pushed.digest}`).set('User-Agent', UA).expect(202);
      await request(url)
        .delete(`/v2/internal/app/blobs/${sha256(pushed.layers[0]!)}`)
        .set('User-Agent', UA)
        .expect(202);
    }
    const isDelete = (e: { action: string }): boolean => e.action === 'delete';
    // The manifest's, its tag's (distribution untags it), the blob's.
    await until(
      () => sink.events('/plain').filter(isDelete).length >= 3 && sink.events('/ours').filter(isDelete).length >= 3,
      'three delete events from each registry',
      20_000,
    );
    const theirs = sink
      .events('/plain')
      .filter(isDelete)
      .map((e) => comparable(e, plain.url));
    const mine = sink
      .events('/ours')
      .filter(isDelete)
      .map((e) => comparable(e, ours.url));
    expect(theirs).toHaveLength(3);
    expect(sorted(mine)).toEqual(sorted(theirs));
  });
});
