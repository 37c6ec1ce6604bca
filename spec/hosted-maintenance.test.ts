/**
 * Hosted content over time: abandoned uploads are purged as `storage.maintenance.uploadpurging`
 * says (distribution's purgeuploads.go), the proxy TTL and the size cap never touch hosted names,
 * and `registry garbage-collect` collects hosted repositories as distribution does.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import request from 'supertest';
import { createLogger } from '../lib/log/logger.js';
import { FilesystemDriver } from '../lib/storage/filesystem.js';
import { collect } from '../lib/storage/garbage-collect.js';
import { UploadPurger, purgeUploads } from '../lib/hosted/upload-purger.js';
import { formatStartedAt } from '../lib/hosted/upload-store.js';
import { startFakeUpstream, seedImage, type FakeUpstream } from './helpers/fake-upstream.js';
import { startMirror } from './helpers/mirror.js';
import { pushManifest, pushSmallImage, sha256, smallImage } from './helpers/push.js';
import { PassThrough } from 'node:stream';

const V2 = 'docker/registry/v2';
const OCI = 'application/vnd.oci.image.manifest.v1+json';
const blobFile = (root: string, d: string): string => join(root, V2, 'blobs/sha256', d.slice(7, 9), d.slice(7), 'data');
const until = async (cond: () => boolean, ms = 8000): Promise<boolean> => {
  for (const end = Date.now() + ms; !cond() && Date.now() < end;) await new Promise((r) => setTimeout(r, 50));
  return cond();
};

let upstream: FakeUpstream;
let root: string;
beforeEach(async () => {
  upstream = await startFakeUpstream();
  root = await mkdtemp(join(tmpdir(), 'hosted-maint-'));
});
afterEach(async () => {
  await upstream.close();
  await rm(root, { recursive: true, force: true });
});

describe('upload purging', () => {
  test('uploads older than the age go, younger ones and ones without startedat stay; a dry run deletes nothing', async () => {
    const mirror = await startMirror(upstream.url, { root, proxyYaml: 'hosted: [internal/]\nhostedanonymouspush: true' });
    try {
      expect(mirror.logs()).toMatch(/msg="Starting upload purge in \d+m" uploadpurging\.age=168h uploadpurging\.dryrun=false uploadpurging\.interval=24h/);
      const uuids: string[] = [];
      for (const repo of ['internal/a', 'internal/b/c', 'internal/d']) {
        const res = await request(mirror.url).post(`/v2/${repo}/blobs/uploads/`).expect(202);
        await request(mirror.url).patch(res.headers.location).send(Buffer.from('partial')).expect(202);
        uuids.push(res.headers['docker-upload-uuid']);
      }
      const dir = (repo: string, uuid: string): string => join(root, V2, 'repositories', repo, '_uploads', uuid);
      await writeFile(join(dir('internal/a', uuids[0]!), 'startedat'), formatStartedAt(new Date(Date.now() - 200 * 3600_000)));
      await writeFile(join(dir('internal/b/c', uuids[1]!), 'startedat'), 'garbage');
      const driver = new FilesystemDriver(root);
      const olderThan = new Date(Date.now() - 168 * 3600_000);
      const dry = await purgeUploads(driver, olderThan, false);
      expect(dry.deleted).toEqual([`/${V2}/repositories/internal/a/_uploads/${uuids[0]}`]);
      expect(existsSync(dir('internal/a', uuids[0]!))).toBe(true);
      const real = await purgeUploads(driver, olderThan, true);
      expect(real.deleted).toHaveLength(1);
      expect(real.errors.join()).toMatch(/internal\/b\/c.*startedat/);
      expect(existsSync(dir('internal/a', uuids[0]!))).toBe(false);
      expect(existsSync(dir('internal/b/c', uuids[1]!))).toBe(true);
      expect(existsSync(dir('internal/d', uuids[2]!))).toBe(true);
      const gone = await request(mirror.url).get(`/v2/internal/a/blobs/uploads/${uuids[0]}`);
      expect(gone.body.errors[0].code).toBe('BLOB_UPLOAD_UNKNOWN');
    } finally {
      await mirror.close();
    }
  });

  test('the periodic purger runs after its first delay and then every interval', async () => {
    const driver = new FilesystemDriver(root);
    const uploads = join(root, V2, 'repositories/internal/x/_uploads/0b9f3c2e-8a61-4d55-9d0c-1f2e3d4c5b6a');
    await driver.putContent(
      `/${V2}/repositories/internal/x/_uploads/0b9f3c2e-8a61-4d55-9d0c-1f2e3d4c5b6a/startedat`,
      formatStartedAt(new Date(Date.now() - 3600_000)),
    );
    const out = new PassThrough();
    const purger = new UploadPurger({
      driver,
      agems: 60_000,
      intervalms: 1000,
      dryrun: false,
      logger: createLogger({ level: 'info', formatter: 'text', fields: {}, accesslog: { disabled: true } }, out),
      firstRunMs: 50,
    });
    purger.start();
    try {
      expect(await until(() => !existsSync(uploads), 3000)).toBe(true);
    } finally {
      await purger.stop();
    }
  });
});

test('an upload survives a restart: the hash is rebuilt from data and the upload finishes', async () => {
  const content = randomBytes(200_000);
  const options = { root, proxyYaml: 'hosted: [internal/]\nhostedanonymouspush: true' };
  let mirror = await startMirror(upstream.url, options);
  let location: string;
  try {
    const post = await request(mirror.url).post('/v2/internal/restart/blobs/uploads/').expect(202);
    const first = await request(mirror.url).patch(post.headers.location).set('Content-Range', '0-99999').send(content.subarray(0, 100_000));
    expect(first.status).toBe(202);
    location = first.headers.location;
  } finally {
    await mirror.close({ keepRoot: true });
  }
  mirror = await startMirror(upstream.url, options);
  try {
    expect((await request(mirror.url).get(location)).headers.range).toBe('0-99999');
    const second = await request(mirror.url).patch(location).set('Content-Range', '100000-199999').send(content.subarray(100_000));
    expect(second.status).toBe(202);
    expect((await request(mirror.url).put(`${second.headers.location}?digest=${sha256(content)}`)).status).toBe(201);
    expect(existsSync(blobFile(root, sha256(content)))).toBe(true);
  } finally {
    await mirror.close({ keepRoot: true });
  }
});

describe('hosted content is outside the cache policies', () => {
  test('proxy.ttl expires proxied content and never hosted content, even a stale schedule entry', async () => {
    const img = seedImage(upstream, 'org/a', 'latest', [randomBytes(500)]);
    const hostedImage = smallImage('ttl');
    const hostedLayer = sha256(hostedImage.layers[0]!);
    // A schedule entry for the hosted name left from before it was hosted (already due).
    await writeFile(
      join(root, 'scheduler-state.json'),
      JSON.stringify({
        [`internal/app@${hostedLayer}`]: { Key: `internal/app@${hostedLayer}`, ExpiryData: new Date(Date.now() + 1500).toISOString(), EntryType: 0 },
      }),
    );
    const mirror = await startMirror(upstream.url, { root, proxyYaml: 'ttl: 1s\nhosted: [internal/]\nhostedanonymouspush: true' });
    try {
      expect((await pushSmallImage(mirror.url, 'internal/app', 'latest', hostedImage)).status).toBe(201);
      await request(mirror.url).get('/v2/org/a/manifests/latest').set('Accept', OCI).expect(200);
      for (const d of [img.config, ...img.layers]) await request(mirror.url).get(`/v2/org/a/blobs/${d}`).expect(200);
      await request(mirror.url).get('/v2/internal/app/manifests/latest').set('Accept', OCI).expect(200);
      expect(await until(() => !existsSync(blobFile(root, img.layers[0]!)))).toBe(true);
      expect(await until(() => /msg="not expiring: the repository is hosted" type=blob vars\.digest=\S+ vars\.name=internal\/app/.test(mirror.logs()))).toBe(
        true,
      );
      await request(mirror.url).get('/v2/internal/app/manifests/latest').set('Accept', OCI).expect(200);
      await request(mirror.url).get(`/v2/internal/app/blobs/${hostedLayer}`).expect(200);
    } finally {
      await mirror.close({ keepRoot: true });
    }
    const state = JSON.parse(await readFile(join(root, 'scheduler-state.json'), 'utf8')) as Record<string, unknown>;
    expect(Object.keys(state).filter((k) => k.startsWith('internal/'))).toEqual([]);
  });

  test('proxy.maxsize neither counts nor evicts hosted content', async () => {
    const mirror = await startMirror(upstream.url, { root, proxyYaml: 'maxsize: 10KB\nhosted: [internal/]\nhostedanonymouspush: true' });
    const big = { ...smallImage('cap'), layers: [randomBytes(30_000)] };
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI,
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(big.config), size: big.config.length },
        layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: sha256(big.layers[0]!), size: 30_000 }],
      }),
    );
    try {
      const img = seedImage(upstream, 'org/a', 'latest', [randomBytes(20_000)]);
      expect((await pushSmallImage(mirror.url, 'internal/big', 'latest', { ...big, manifest, digest: sha256(manifest) })).status).toBe(201);
      await request(mirror.url).get('/v2/org/a/manifests/latest').set('Accept', OCI).expect(200);
      for (const d of [img.config, ...img.layers]) await request(mirror.url).get(`/v2/org/a/blobs/${d}`).expect(200);
      expect(existsSync(blobFile(root, sha256(big.layers[0]!)))).toBe(true);
    } finally {
      await mirror.close({ keepRoot: true });
    }
    // Restarted, the cap measures only the cache.
    const again = await startMirror(upstream.url, { root, proxyYaml: 'maxsize: 10KB\nhosted: [internal/]' });
    try {
      // The cap measures in the background.
      expect(await until(() => /msg="size cap: cache measured" cached\.bytes=\d+ maxsize\.bytes=10000/.test(again.logs()))).toBe(true);
      const m = /msg="size cap: cache measured" cached\.bytes=(\d+) maxsize\.bytes=10000/.exec(again.logs());
      expect(Number(m?.[1])).toBeLessThan(30_000);
      await request(again.url)
        .get(`/v2/internal/big/blobs/${sha256(big.layers[0]!)}`)
        .expect(200);
    } finally {
      await again.close({ keepRoot: true });
    }
  });
});

test('garbage-collect sweeps what hosted deletes left, keeps what hosted manifests reference', async () => {
  const mirror = await startMirror(upstream.url, { root, proxyYaml: 'hosted: [internal/]\nhostedanonymouspush: true' });
  const a = smallImage('gc-a');
  const b = smallImage('gc-b');
  try {
    await pushSmallImage(mirror.url, 'internal/gc', 'a', a);
    await pushSmallImage(mirror.url, 'internal/gc', 'b', b);
    await pushManifest(mirror.url, 'internal/gc', 'a2', a.manifest);
    await request(mirror.url).delete(`/v2/internal/gc/manifests/${a.digest}`).expect(202);
  } finally {
    await mirror.close({ keepRoot: true });
  }
  const lines: string[] = [];
  const summary = await collect(new FilesystemDriver(root), { dryRun: false, removeUntagged: false, out: (l) => lines.push(l) });
  for (const d of [a.digest, sha256(a.config), ...a.layers.map(sha256)]) expect(existsSync(blobFile(root, d))).toBe(false);
  for (const d of [b.digest, sha256(b.config), ...b.layers.map(sha256)]) expect(existsSync(blobFile(root, d))).toBe(true);
  expect(summary.blobsDeleted).toBe(4);
  const again = await startMirror(upstream.url, { root, proxyYaml: 'hosted: [internal/]' });
  try {
    await request(again.url).get('/v2/internal/gc/manifests/b').set('Accept', OCI).expect(200);
    expect((await request(again.url).head(`/v2/internal/gc/blobs/${sha256(a.config)}`)).status).toBe(404);
  } finally {
    await again.close();
  }
});
