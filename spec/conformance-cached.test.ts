/**
 * The OCI conformance suite's pull and content-discovery cases on cached names: the suite's setup
 * is pushed to the upstream (a cached name takes no pushes), then the suite's requests are made to
 * the mirror. The upstream is Debian's docker-registry (distribution 2.8, which has no referrers
 * API: its referrers are in the referrers tag schema, pushed as an OCI client pushes them to such a
 * registry), or the programmable fake upstream with a referrers API. Each test is named after the
 * suite's spec; hosted names are in conformance.test.ts.
 */
import request from 'supertest';
import { countingProxy, type CountingProxy } from './helpers/counting-proxy.js';
import { startFakeUpstream, type FakeUpstream } from './helpers/fake-upstream.js';
import { describeInterop } from './helpers/interop.js';
import { startMirror, type TestMirror } from './helpers/mirror.js';
import { startDistribution, type DistributionProcess } from './helpers/upstream-registry.js';
import { pullSpecs, referrersSpecs } from './helpers/conformance-specs.js';
import {
  OCI_INDEX,
  OCI_MANIFEST,
  conformanceData,
  putManifest,
  sha256,
  sortedAsTheSuiteAccepts,
  uploadBlob,
  withQuery,
  type Content,
  type ConformanceData,
} from './helpers/conformance.js';

const NAME = 'oci/cached';
const ok = (status: number): void => expect(status >= 200 && status < 300).toBe(true);

/** The referrers of `manifests[4]` in the suite's push order, with their media types. */
const referrersOf4 = (d: ConformanceData): Array<{ c: Content; mediaType: string }> => [
  { c: d.refs.aConfig, mediaType: OCI_MANIFEST },
  { c: d.refs.aLayer, mediaType: OCI_MANIFEST },
  { c: d.refs.index, mediaType: OCI_INDEX },
  { c: d.refs.bConfig, mediaType: OCI_MANIFEST },
  { c: d.refs.bLayer, mediaType: OCI_MANIFEST },
];

/** The referrers tag schema index, as an OCI client keeps it for a registry without the API. */
function referrersTagIndex(referrers: Array<{ c: Content; mediaType: string }>): Content {
  const manifests = referrers.map(({ c, mediaType }) => {
    const doc = JSON.parse(c.body.toString()) as { artifactType?: string; config?: { mediaType: string }; annotations?: Record<string, string> };
    const artifactType = doc.artifactType ?? doc.config?.mediaType;
    return { mediaType, digest: c.digest, size: c.body.length, artifactType, ...(doc.annotations ? { annotations: doc.annotations } : {}) };
  });
  const body = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests }));
  return { body, digest: sha256(body) };
}

/** The suite's discovery setup, pushed to a registry `url` that takes pushes. */
async function pushDiscoverySetup(url: string, d: ConformanceData): Promise<void> {
  ok((await uploadBlob(url, NAME, d.configs[2]!)).status);
  ok((await uploadBlob(url, NAME, d.layer)).status);
  for (let i = 0; i < 4; i++) for (const tag of [`test${i}`, `TEST${i}`]) ok((await putManifest(url, NAME, tag, d.manifests[2]!)).status);
  for (const blob of [d.emptyJson, d.refBlobA, d.refBlobB, d.configs[4]!]) ok((await uploadBlob(url, NAME, blob)).status);
  ok((await putManifest(url, NAME, 'tagtest0', d.manifests[4]!)).status);
  for (const { c, mediaType } of [...referrersOf4(d), { c: d.refs.cLayer, mediaType: OCI_MANIFEST }])
    ok((await putManifest(url, NAME, c.digest, c, mediaType)).status);
}

describeInterop('conformance on a cached name, upstream distribution 2.8', () => {
  const d = conformanceData();
  let upstream: DistributionProcess;
  let counting: CountingProxy;
  let mirror: TestMirror;
  const api = () => request(mirror.url);

  beforeAll(async () => {
    upstream = await startDistribution();
    counting = await countingProxy(upstream.url);
    mirror = await startMirror(counting.url);
  }, 60_000);
  afterAll(async () => {
    await mirror?.close();
    await counting?.close();
    await upstream?.destroy();
  });

  describe('Pull', () => {
    describe('Setup', () => {
      test("the suite's pull setup is pushed to the upstream; the mirror refuses it (405)", async () => {
        for (const blob of [d.configs[0]!, d.configs[1]!, d.layer]) ok((await uploadBlob(upstream.url, NAME, blob)).status);
        ok((await putManifest(upstream.url, NAME, 'tagtest0', d.manifests[0]!)).status);
        ok((await putManifest(upstream.url, NAME, d.manifests[1]!.digest, d.manifests[1]!)).status);
        expect((await api().post(`/v2/${NAME}/blobs/uploads/`)).status).toBe(405);
        expect((await putManifest(mirror.url, NAME, 'tagtest0', d.manifests[0]!)).status).toBe(405);
      });
    });

    pullSpecs({ url: () => mirror.url, name: NAME, data: d, upstreamRequests: () => counting.hits.length });

    describe('Teardown', () => {
      test('Delete manifest[0] and manifest[1], config[0], config[1] and the layer: 405, a cached name is read only', async () => {
        for (const path of [
          `manifests/${d.manifests[0]!.digest}`,
          `manifests/${d.manifests[1]!.digest}`,
          `blobs/${d.configs[0]!.digest}`,
          `blobs/${d.layer.digest}`,
        ]) {
          expect((await api().delete(`/v2/${NAME}/${path}`)).status).toBe(405);
        }
      });
    });
  });

  describe('Content Discovery', () => {
    let tagList: string[] = [];

    describe('Setup', () => {
      test("the suite's discovery setup and the referrers tag schema are pushed to the upstream", async () => {
        await pushDiscoverySetup(upstream.url, d);
        // distribution 2.8 has no referrers API, so it does not answer OCI-Subject: a client keeps the referrers tag.
        expect((await putManifest(upstream.url, NAME, d.refs.aConfig.digest, d.refs.aConfig)).headers['oci-subject']).toBeUndefined();
        expect((await request(upstream.url).get(`/v2/${NAME}/referrers/${d.manifests[4]!.digest}`)).status).toBe(404);
        const m4 = referrersTagIndex(referrersOf4(d));
        ok((await putManifest(upstream.url, NAME, `sha256-${d.manifests[4]!.digest.slice(7)}`, m4, OCI_INDEX)).status);
        const m3 = referrersTagIndex([{ c: d.refs.cLayer, mediaType: OCI_MANIFEST }]);
        ok((await putManifest(upstream.url, NAME, `sha256-${d.manifests[3]!.digest.slice(7)}`, m3, OCI_INDEX)).status);
      });
    });

    describe('Test content discovery endpoints (listing tags)', () => {
      test('GET request to list tags should yield 200 response and be in sorted order', async () => {
        const res = await api().get(`/v2/${NAME}/tags/list`);
        expect(res.status).toBe(200);
        tagList = res.body.tags;
        expect(tagList).toHaveLength(11);
        expect(sortedAsTheSuiteAccepts(tagList)).toBe(true);
      });
      test('GET number of tags should be limitable by `n` query parameter', async () => {
        const res = await api().get(`/v2/${NAME}/tags/list?n=${Math.floor(tagList.length / 2)}`);
        expect(res.status).toBe(200);
        expect(res.body.tags).toEqual(tagList.slice(0, Math.floor(tagList.length / 2)));
        // distribution 2.8 ignores `n` (and `last`) and does not sort: the mirror pages its answer.
        expect(res.headers.link).toBe(`</v2/${NAME}/tags/list?last=${tagList[4]}&n=5>; rel="next"`);
        const none = await api().get(`/v2/${NAME}/tags/list?n=0`);
        expect(none.body.tags).toEqual([]);
        expect(none.headers.link).toBeUndefined();
      });
      test('GET start of tag is set by `last` query parameter', async () => {
        const n = Math.floor(tagList.length / 2);
        const last = tagList[n - 1]!;
        const res = await api().get(withQuery(`/v2/${NAME}/tags/list`, { n: String(n), last }));
        expect(res.status).toBe(200);
        expect(res.body.tags).not.toContain(last);
        expect(res.body.tags).toEqual(tagList.slice(n, 2 * n));
      });
    });

    describe('Test content discovery endpoints (listing references)', () => {
      referrersSpecs({ url: () => mirror.url, name: NAME, data: d });
      test('an upstream without the API is read through the referrers tag, which the cache then serves while the upstream is down', async () => {
        const before = counting.hits.length;
        expect((await api().get(`/v2/${NAME}/referrers/${d.manifests[4]!.digest}`)).body.manifests).toHaveLength(5);
        const asked = counting.hits.slice(before);
        expect(asked).toContain(`GET /v2/${NAME}/referrers/${d.manifests[4]!.digest}`);
        expect(asked).toContain(`HEAD /v2/${NAME}/manifests/sha256-${d.manifests[4]!.digest.slice(7)}`);
        await upstream.stop();
        try {
          const res = await api().get(`/v2/${NAME}/referrers/${d.manifests[4]!.digest}`);
          expect(res.status).toBe(200);
          expect(res.body.manifests).toHaveLength(5);
          // Nothing cached for this subject: the upstream's failure is the answer.
          expect((await api().get(`/v2/${NAME}/referrers/${d.dummyDigest}`)).status).toBe(503);
        } finally {
          await upstream.restart();
        }
      });
    });

    describe('Teardown', () => {
      test('Delete created manifest & associated tags: 405, a cached name is read only', async () => {
        expect((await api().delete(`/v2/${NAME}/manifests/${d.manifests[2]!.digest}`)).status).toBe(405);
        expect((await api().delete(`/v2/${NAME}/blobs/${d.configs[2]!.digest}`)).status).toBe(405);
      });
    });
  });
});

describe('conformance on a cached name, upstream with the referrers API', () => {
  const d = conformanceData();
  let upstream: FakeUpstream;
  let mirror: TestMirror;

  beforeAll(async () => {
    upstream = await startFakeUpstream({ referrers: true });
    for (const { c, mediaType } of [...referrersOf4(d), { c: d.refs.cLayer, mediaType: OCI_MANIFEST }])
      upstream.addManifest(NAME, c.body, undefined, mediaType);
    upstream.addManifest(NAME, d.manifests[4]!.body, 'tagtest0');
    mirror = await startMirror(upstream.url);
  });
  afterAll(async () => {
    await mirror.close();
    await upstream.close();
  });

  describe('Content Discovery', () => {
    describe('Test content discovery endpoints (listing references)', () => {
      referrersSpecs({ url: () => mirror.url, name: NAME, data: d });
    });
  });

  test("the upstream's list is asked every time, not cached: a referrer pushed later is listed at once; no referrers tag is asked", async () => {
    const late = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI_MANIFEST,
        artifactType: 'application/vnd.late',
        config: {},
        layers: [],
        subject: { mediaType: OCI_MANIFEST, digest: d.manifests[4]!.digest, size: 1 },
      }),
    );
    upstream.addManifest(NAME, late);
    const res = await request(mirror.url).get(`/v2/${NAME}/referrers/${d.manifests[4]!.digest}?artifactType=application/vnd.late`);
    expect(res.body.manifests.map((m: { digest: string }) => m.digest)).toEqual([sha256(late)]);
    expect(upstream.hits.filter((h) => h.path.includes('/referrers/')).length).toBeGreaterThan(4);
    expect(upstream.count(/^(GET|HEAD) \/v2\/.*\/manifests\/sha256-/)).toBe(0);
  });

  test('a digest that is not one is 400 DIGEST_INVALID, and the upstream is not asked', async () => {
    const before = upstream.hits.length;
    const res = await request(mirror.url).get(`/v2/${NAME}/referrers/sha256:totallywrong`);
    expect(res.status).toBe(400);
    expect(res.body.errors[0].code).toBe('DIGEST_INVALID');
    expect(upstream.hits.length).toBe(before);
  });
});
