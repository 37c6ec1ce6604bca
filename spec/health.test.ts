/**
 * The `health` section as distribution: storage driver, file, HTTP and TCP checks polled in the
 * background, `/debug/health` listing the failing ones with 503, and every registry request
 * answered 503 UNAVAILABLE while one fails.
 */
import { rm, writeFile } from 'node:fs/promises';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import request from 'supertest';
import { startFakeUpstream, type FakeUpstream } from './helpers/fake-upstream.js';
import { startMirror, type TestMirror } from './helpers/mirror.js';
import { describeSmallDisk, mountSmallDisk, type SmallDisk } from './helpers/small-disk.js';
import { freePort } from './helpers/ports.js';

const DEBUG = 'addr: 127.0.0.1:0\ndebug:\n  addr: 127.0.0.1:0';
const debugUrl = (m: TestMirror): string => `http://127.0.0.1:${m.registry.debugPort}`;

/** Polls `/debug/health` until it answers `status`; returns its body. */
async function healthBecomes(m: TestMirror, status: number, ms = 5000): Promise<Record<string, string>> {
  const deadline = Date.now() + ms;
  for (;;) {
    const res = await request(debugUrl(m)).get('/debug/health');
    if (res.status === status) return res.body as Record<string, string>;
    if (Date.now() > deadline) throw new Error(`/debug/health stayed ${res.status}: ${res.text}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function expectRefused(m: TestMirror): Promise<void> {
  for (const path of ['/v2/', '/v2/library/busybox/manifests/latest', '/']) {
    const res = await request(m.url).get(path);
    expect(res.status).toBe(503);
    expect(res.body).toEqual({ errors: [{ code: 'UNAVAILABLE', message: 'service unavailable', detail: 'health check failed: please see /debug/health' }] });
  }
}

describe('health checks', () => {
  let upstream: FakeUpstream;
  let mirror: TestMirror | undefined;
  let dir: string;
  beforeEach(async () => {
    upstream = await startFakeUpstream();
    dir = mkdtempSync(join(tmpdir(), 'health-'));
  });
  afterEach(async () => {
    await mirror?.close();
    mirror = undefined;
    await upstream.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('without a health section there are no checks: /debug/health is 200 {}', async () => {
    mirror = await startMirror(upstream.url, { httpYaml: DEBUG });
    const res = await request(debugUrl(mirror)).get('/debug/health');
    expect(res.status).toBe(200);
    expect(res.body).toEqual({});
  });

  test('health.file: unhealthy while the file exists, healthy again once it is gone', async () => {
    const flag = join(dir, 'maintenance');
    mirror = await startMirror(upstream.url, { httpYaml: DEBUG, extraYaml: `health:\n  file:\n    - file: ${flag}\n      interval: 50ms` });
    await request(mirror.url).get('/v2/').expect(200);
    await writeFile(flag, '');
    expect(await healthBecomes(mirror, 503)).toEqual({ [flag]: 'file exists' });
    await expectRefused(mirror);
    await rm(flag);
    expect(await healthBecomes(mirror, 200)).toEqual({});
    await request(mirror.url).get('/v2/').expect(200);
  });

  test('health.http: the upstream watched with a threshold; a wrong status names it', async () => {
    mirror = await startMirror(upstream.url, {
      httpYaml: DEBUG,
      extraYaml: [
        'health:',
        '  http:',
        `    - uri: ${upstream.url}/v2/`,
        '      interval: 50ms',
        '      threshold: 3',
        `    - uri: ${upstream.url}/v2/`,
        '      statuscode: 401',
        '      interval: 50ms',
      ].join('\n'),
    });
    expect(await healthBecomes(mirror, 503)).toEqual({ [`${upstream.url}/v2/`]: `${upstream.url}/v2/: downstream service returned unexpected status: 200` });
    await mirror.close();

    mirror = await startMirror(upstream.url, {
      httpYaml: DEBUG,
      extraYaml: `health:\n  http:\n    - uri: ${upstream.url}/v2/\n      interval: 50ms\n      threshold: 3`,
    });
    await new Promise((r) => setTimeout(r, 200));
    expect((await request(debugUrl(mirror)).get('/debug/health')).status).toBe(200);
    const headsBefore = upstream.count(/^HEAD \/v2\/$/);
    expect(headsBefore).toBeGreaterThan(0);
    upstream.setDown(true);
    const failures = await healthBecomes(mirror, 503);
    // Three failures in a row were needed, not one.
    expect(upstream.count(/^HEAD \/v2\/$/) - headsBefore).toBeGreaterThanOrEqual(3);
    expect(failures[`${upstream.url}/v2/`]).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/v2\/: error while checking: /);
    await expectRefused(mirror);
    upstream.setDown(false);
    await healthBecomes(mirror, 200);
  });

  test('health.tcp: a port nobody listens on is unhealthy', async () => {
    const port = await freePort();
    mirror = await startMirror(upstream.url, {
      httpYaml: DEBUG,
      extraYaml: `health:\n  tcp:\n    - addr: 127.0.0.1:${port}\n      interval: 50ms\n      timeout: 1s`,
    });
    const failures = await healthBecomes(mirror, 503);
    expect(failures[`127.0.0.1:${port}`]).toMatch(/^127\.0\.0\.1:\d+: connection failed: .*ECONNREFUSED/);
  });

  test('a health section with nonsense fails at start-up naming the key', async () => {
    await expect(startMirror(upstream.url, { extraYaml: 'health:\n  http:\n    - uri: not-a-url' })).rejects.toThrow(/health\.http\.0\.uri/);
    await expect(startMirror(upstream.url, { extraYaml: 'health:\n  storagedriver:\n    enabled: true\n    threshold: -1' })).rejects.toThrow(
      /health\.storagedriver\.threshold/,
    );
  });
});

describeSmallDisk('health.storagedriver', () => {
  let disk: SmallDisk;
  let upstream: FakeUpstream;
  let mirror: TestMirror;
  beforeEach(async () => {
    disk = mountSmallDisk(1024 * 1024)!;
    upstream = await startFakeUpstream();
    mirror = await startMirror(upstream.url, {
      root: disk.path,
      httpYaml: DEBUG,
      extraYaml: 'health:\n  storagedriver:\n    enabled: true\n    interval: 50ms\n    threshold: 2',
    });
  });
  afterEach(async () => {
    await disk.setReadOnly(false);
    await mirror.close();
    await upstream.close();
    disk.unmount();
  });

  test('/debug/health turns 503 when the storage root becomes unwritable and back to 200 when it is fixed', async () => {
    expect(await healthBecomes(mirror, 200)).toEqual({});
    await disk.setReadOnly(true);
    const failures = await healthBecomes(mirror, 503);
    expect(Object.keys(failures)).toEqual(['storagedriver_filesystem']);
    expect(failures.storagedriver_filesystem).toMatch(/EROFS/);
    await expectRefused(mirror);
    await disk.setReadOnly(false);
    expect(await healthBecomes(mirror, 200)).toEqual({});
    await request(mirror.url).get('/v2/').expect(200);
  });
});
