/**
 * The conformance suite's specs that read, the same on hosted and on cached names: pulling blobs
 * and manifests, the error-code spec, and listing referrers. Each is one jest test named after the
 * suite's spec, with our answer asserted; `conformance.test.ts` and `conformance-cached.test.ts`
 * call them inside their workflow's `describe` once the content is in place.
 */
import request from 'supertest';
import { OCI_INDEX, OCI_MANIFEST, withQuery, type ConformanceData, type ReferrersIndex } from './conformance.js';

/** Where the specs run: the registry, the repository, the data, and (for cached names) a count of upstream requests. */
export interface SpecTarget {
  readonly url: () => string;
  readonly name: string;
  readonly data: ConformanceData;
  /** Requests the upstream has seen so far; given, the invalid tag is checked never to reach it. */
  readonly upstreamRequests?: () => number;
}

/** The `Pull blobs`, `Pull manifests` and `Error codes` specs, for content pushed by the pull setup. */
export function pullSpecs(t: SpecTarget): void {
  const api = () => request(t.url());
  const { data: d, name } = t;
  const accept = { Accept: OCI_MANIFEST };
  /** Runs `f`, checking the upstream was not asked meanwhile. */
  const unasked = async <T>(f: () => Promise<T>): Promise<T> => {
    const before = t.upstreamRequests?.();
    const result = await f();
    if (before !== undefined) expect(t.upstreamRequests!()).toBe(before);
    return result;
  };

  describe('Pull blobs', () => {
    test('HEAD request to nonexistent blob should result in 404 response', async () => {
      expect((await api().head(`/v2/${name}/blobs/${d.dummyDigest}`)).status).toBe(404);
    });
    test('HEAD request to existing blob should yield 200', async () => {
      const res = await api().head(`/v2/${name}/blobs/${d.configs[0]!.digest}`);
      expect(res.status).toBe(200);
      expect(res.headers['docker-content-digest']).toBe(d.configs[0]!.digest);
    });
    test('GET nonexistent blob should result in 404 response', async () => {
      const res = await api().get(`/v2/${name}/blobs/${d.dummyDigest}`);
      expect(res.status).toBe(404);
      expect(res.body.errors[0].code).toBe('BLOB_UNKNOWN');
    });
    test('GET request to existing blob URL should yield 200', async () => {
      const res = await api().get(`/v2/${name}/blobs/${d.configs[0]!.digest}`).buffer(true);
      expect(res.status).toBe(200);
      expect(res.headers['docker-content-digest']).toBe(d.configs[0]!.digest);
    });
  });

  describe('Pull manifests', () => {
    test('HEAD request to nonexistent manifest should return 404', async () => {
      expect((await unasked(() => api().head(`/v2/${name}/manifests/${d.nonexistentManifest}`))).status).toBe(404);
    });
    test.each([0, 1])('HEAD request to manifest[%i] path (digest) should yield 200 response', async (i) => {
      const res = await api().head(`/v2/${name}/manifests/${d.manifests[i]!.digest}`).set(accept);
      expect(res.status).toBe(200);
      expect(res.headers['docker-content-digest']).toBe(d.manifests[i]!.digest);
    });
    test('HEAD request to manifest path (tag) should yield 200 response', async () => {
      const res = await api().head(`/v2/${name}/manifests/tagtest0`).set(accept);
      expect(res.status).toBe(200);
      expect(res.headers['docker-content-digest']).toBe(d.manifests[0]!.digest);
    });
    test('GET nonexistent manifest should return 404', async () => {
      const res = await unasked(() => api().get(`/v2/${name}/manifests/${d.nonexistentManifest}`));
      expect(res.status).toBe(404);
      expect(res.body.errors[0]).toMatchObject({ code: 'MANIFEST_UNKNOWN', detail: { Tag: d.nonexistentManifest } });
    });
    test.each([0, 1])('GET request to manifest[%i] path (digest) should yield 200 response', async (i) => {
      const res = await api().get(`/v2/${name}/manifests/${d.manifests[i]!.digest}`).set(accept);
      expect(res.status).toBe(200);
      expect(res.text).toBe(d.manifests[i]!.body.toString());
    });
    test('GET request to manifest path (tag) should yield 200 response', async () => {
      const res = await api().get(`/v2/${name}/manifests/tagtest0`).set(accept);
      expect(res.status).toBe(200);
      expect(res.headers['content-type']).toBe(OCI_MANIFEST);
    });
  });

  describe('Error codes', () => {
    test('400 response body should contain OCI-conforming JSON message', async () => {
      const res = await api().get(`/v2/${name}/manifests/sha256:totallywrong`).set('Content-Type', OCI_MANIFEST).send('blablabla');
      expect(res.status).toBe(400);
      expect(res.body.errors[0].code).toBe('DIGEST_INVALID');
    });
  });
}

/** The `Test content discovery endpoints (listing references)` specs, for content pushed by the discovery setup. */
export function referrersSpecs(t: SpecTarget): void {
  const { data: d, name } = t;
  const referrers = (digest: string, query: Record<string, string> = {}): request.Test =>
    request(t.url()).get(withQuery(`/v2/${name}/referrers/${digest}`, query));
  const expectAnnotated = (index: ReferrersIndex): void => {
    for (const m of index.manifests) expect(m.annotations).toEqual({ [d.annotationKey]: d.annotations[m.digest] });
  };
  test('GET request to nonexistent blob should result in empty 200 response', async () => {
    const res = await referrers(d.dummyDigest);
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe(OCI_INDEX);
    expect(res.body).toEqual({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: [] });
  });
  test('GET request to existing blob should yield 200', async () => {
    const res = await referrers(d.manifests[4]!.digest);
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe(OCI_INDEX);
    const index = res.body as ReferrersIndex;
    expect(index.manifests.map((m) => m.digest).sort()).toEqual(Object.keys(d.annotations).sort());
    expectAnnotated(index);
  });
  test('GET request to existing blob with filter should yield 200', async () => {
    const res = await referrers(d.manifests[4]!.digest, { artifactType: d.artifactTypeA });
    expect(res.status).toBe(200);
    expect(res.headers['oci-filters-applied']).toBe('artifactType');
    const index = res.body as ReferrersIndex;
    expect(index.manifests.map((m) => m.digest).sort()).toEqual([d.refs.aConfig.digest, d.refs.aLayer.digest].sort());
    expectAnnotated(index);
  });
  test('GET request to missing manifest should yield 200', async () => {
    const res = await referrers(d.manifests[3]!.digest);
    expect(res.status).toBe(200);
    expect(res.body.manifests.map((m: { digest: string }) => m.digest)).toEqual([d.refs.cLayer.digest]);
  });
}
