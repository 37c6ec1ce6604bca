/**
 * The catalog of replicas on one volume (the catalog index, lib/storage/repository-index.ts): two
 * of our processes and Debian's docker-registry writing the same storage root. What a replica
 * stores itself is in its own catalog at once; what the other replica stores, what registry:2
 * pushes, and a repository removed from the volume show in every catalog within the index's
 * bound (seconds; held to it by mechanism in spec/catalog-index.test.ts), and the pages are
 * distribution's: registry:2 serving the same volume gives the same ones.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeInterop } from '../helpers/interop.js';
import { pushSmallImage, smallImage } from '../helpers/push.js';
import { seedImage, startFakeUpstream, type FakeUpstream } from '../helpers/fake-upstream.js';
import { startReplica, stopReplicas, type Replica } from '../helpers/replica.js';
import { startDistribution, type DistributionProcess } from '../helpers/upstream-registry.js';
import { until } from '../helpers/until.js';

const ACCEPT = 'application/vnd.oci.image.manifest.v1+json';

function get(url: string, accept?: string): Promise<{ status: number; body: string; link?: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false, headers: accept ? { accept } : {} }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode!, body, link: typeof res.headers.link === 'string' ? res.headers.link : undefined }));
      res.on('error', reject);
    });
    req.on('error', reject);
  });
}

/** Every page of `/v2/_catalog?n=<n>` along the `Link` headers, as bodies and links. */
async function walk(url: string, n: number): Promise<Array<{ body: string; link?: string }>> {
  const pages: Array<{ body: string; link?: string }> = [];
  let next: string | undefined = `/v2/_catalog?n=${n}`;
  while (next) {
    const r = await get(`${url}${next}`);
    expect(r.status).toBe(200);
    pages.push({ body: r.body, link: r.link });
    next = r.link ? /<([^>]+)>/.exec(r.link)?.[1] : undefined;
  }
  return pages;
}

const names = async (url: string): Promise<string[]> => (JSON.parse((await get(`${url}/v2/_catalog`)).body) as { repositories: string[] }).repositories;

describeInterop('the catalog of processes sharing one volume', () => {
  let upstream: FakeUpstream;
  let dir: string;
  let root: string;
  let replicas: Replica[] = [];
  let official: DistributionProcess | undefined;

  beforeEach(async () => {
    upstream = await startFakeUpstream();
    dir = await mkdtemp(join(tmpdir(), 'catalog-volume-'));
    root = join(dir, 'root');
  });
  afterEach(async () => {
    await stopReplicas(replicas, expect.getState().currentTestName);
    replicas = [];
    await official?.destroy();
    official = undefined;
    await upstream.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('new repositories of a replica and of registry:2, and one removed from the volume, show in every catalog', async () => {
    for (let i = 0; i < 2; i++) replicas.push(await startReplica(dir, root, upstream.url));
    const [a, b] = replicas as [Replica, Replica];
    seedImage(upstream, 'library/app', 'v1', [Buffer.from('app layer')]);
    seedImage(upstream, 'team/tool', 'v1', [Buffer.from('tool layer')]);
    expect(await names(a.url)).toEqual([]);
    expect(await names(b.url)).toEqual([]);

    // Stored by A: in A's catalog with the answer, in B's within the bound.
    expect((await get(`${a.url}/v2/library/app/manifests/v1`, ACCEPT)).status).toBe(200);
    expect(await names(a.url)).toEqual(['library/app']);
    await until(async () => (await names(b.url)).includes('library/app'), "B's catalog to list A's repository", 30_000);
    expect((await get(`${b.url}/v2/team/tool/manifests/v1`, ACCEPT)).status).toBe(200);
    expect(await names(b.url)).toEqual(['library/app', 'team/tool']);
    await until(async () => (await names(a.url)).includes('team/tool'), "A's catalog to list B's repository", 30_000);

    // Pushed by registry:2 serving the same volume.
    official = await startDistribution({ rootDir: root });
    expect((await pushSmallImage(official.url, 'other/pushed', 'v1', smallImage('catalog-volume'))).status).toBe(201);
    for (const r of [a, b]) await until(async () => (await names(r.url)).includes('other/pushed'), "the replicas' catalogs to list registry:2's push", 30_000);

    // Removed from the volume by someone else (an operator, a clean-up job): gone from both.
    await rm(join(root, 'docker/registry/v2/repositories/team'), { recursive: true });
    for (const r of [a, b]) await until(async () => !(await names(r.url)).includes('team/tool'), 'the removed repository to leave the catalogs', 30_000);

    // And the pages, links included, are registry:2's on the same volume.
    const expected = await walk(official.url, 1);
    expect(expected.map((p) => p.body)).toEqual(['{"repositories":["library/app"]}\n', '{"repositories":["other/pushed"]}\n']);
    for (const r of [a, b]) expect((await walk(r.url, 1)).map((p) => [JSON.parse(p.body), p.link])).toEqual(expected.map((p) => [JSON.parse(p.body), p.link]));
  });
});
