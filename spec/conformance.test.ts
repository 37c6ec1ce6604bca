/**
 * The OCI distribution-spec conformance suite's cases (v1.1.1 and the later test fixes), on a hosted
 * name (`proxy.hosted`, anonymous pushes), in the suite's order and with its data
 * (spec/helpers/conformance.ts). Each test is named after the suite's spec and asserts our answer,
 * which is the one the suite accepts or a stricter one of those it accepts. The pull and discovery
 * workflows on cached names are in conformance-cached.test.ts.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import request from 'supertest';
import { startFakeUpstream, seedImage, type FakeUpstream } from './helpers/fake-upstream.js';
import { startMirror, type TestMirror } from './helpers/mirror.js';
import { pullSpecs, referrersSpecs } from './helpers/conformance-specs.js';
import { OCI_INDEX, conformanceData, putManifest, relativeLocation, sortedAsTheSuiteAccepts, uploadBlob, withQuery } from './helpers/conformance.js';

const NAME = 'conformance/oci';
/** `OCI_CROSSMOUNT_NAMESPACE`, set to a hosted name (the suite's default, `conformance-<uuid>`, is not under `conformance/`). */
const CROSS = 'conformance/crossmount';
const d = conformanceData();
let upstream: FakeUpstream;
let mirror: TestMirror;
const api = () => request(mirror.url);
const ok = (status: number): void => expect(status >= 200 && status < 300).toBe(true);

beforeAll(async () => {
  upstream = await startFakeUpstream();
  mirror = await startMirror(upstream.url, { proxyYaml: 'hosted: [conformance/]\nhostedanonymouspush: true' });
});
afterAll(async () => {
  await mirror.close();
  await upstream.close();
});

describe('Pull', () => {
  describe('Setup', () => {
    test.each([0, 1])('Populate registry with test blob (config %i)', async (i) => ok((await uploadBlob(mirror.url, NAME, d.configs[i]!)).status));
    test('Populate registry with test layer', async () => ok((await uploadBlob(mirror.url, NAME, d.layer)).status));
    test('Populate registry with test manifest (tag)', async () => ok((await putManifest(mirror.url, NAME, 'tagtest0', d.manifests[0]!)).status));
    test('Populate registry with test manifest (digest)', async () =>
      ok((await putManifest(mirror.url, NAME, d.manifests[1]!.digest, d.manifests[1]!)).status));
  });

  pullSpecs({ url: () => mirror.url, name: NAME, data: d });

  describe('Teardown', () => {
    test.each([0, 1])('Delete manifest[%i] created in setup', async (i) => {
      expect((await api().delete(`/v2/${NAME}/manifests/${d.manifests[i]!.digest}`)).status).toBe(202);
    });
    test.each([0, 1])('Delete config[%i] blob created in setup', async (i) => {
      expect((await api().delete(`/v2/${NAME}/blobs/${d.configs[i]!.digest}`)).status).toBe(202);
    });
    test('Delete layer blob created in setup', async () => {
      expect((await api().delete(`/v2/${NAME}/blobs/${d.layer.digest}`)).status).toBe(202);
    });
  });
});

describe('Push', () => {
  let last: request.Response;
  let prev: request.Response;

  describe('Blob Upload Streamed', () => {
    test('PATCH request with blob in body should yield 202 response', async () => {
      const start = await api().post(`/v2/${NAME}/blobs/uploads/`);
      expect(start.headers.location).toBeTruthy();
      last = await api().patch(relativeLocation(start)).set('Content-Type', 'application/octet-stream').send(d.blobA.body);
      expect(last.status).toBe(202);
    });
    test('PUT request to session URL with digest should yield 201 response', async () => {
      const res = await api()
        .put(withQuery(relativeLocation(last), { digest: d.blobA.digest }))
        .set('Content-Type', 'application/octet-stream');
      expect(res.status).toBe(201);
      expect(res.headers.location).toBe(`/v2/${NAME}/blobs/${d.blobA.digest}`);
    });
  });

  describe('Blob Upload Monolithic', () => {
    test('GET nonexistent blob should result in 404 response', async () => {
      expect((await api().get(`/v2/${NAME}/blobs/${d.dummyDigest}`)).status).toBe(404);
    });
    test('POST request with digest and blob should yield a 201 or 202', async () => {
      last = await api()
        .post(withQuery(`/v2/${NAME}/blobs/uploads/`, { digest: d.configs[1]!.digest }))
        .set('Content-Type', 'application/octet-stream')
        .send(d.configs[1]!.body);
      expect(last.status).toBe(201);
      expect(last.headers.location).toBe(`/v2/${NAME}/blobs/${d.configs[1]!.digest}`);
    });
    test('GET request to blob URL from prior request should yield 200 or 404 based on response code', async () => {
      expect((await api().get(`/v2/${NAME}/blobs/${d.configs[1]!.digest}`)).status).toBe(200);
    });
    test('POST request should yield a session ID', async () => {
      last = await api().post(`/v2/${NAME}/blobs/uploads/`);
      expect(last.status).toBe(202);
      expect(last.headers['docker-upload-uuid']).toBeTruthy();
    });
    test('PUT upload of a blob should yield a 201 Response', async () => {
      const res = await api()
        .put(withQuery(relativeLocation(last), { digest: d.configs[1]!.digest }))
        .set('Content-Type', 'application/octet-stream')
        .send(d.configs[1]!.body);
      expect(res.status).toBe(201);
      expect(res.headers.location).toBeTruthy();
    });
    test('GET request to existing blob should yield 200 response', async () => {
      expect((await api().get(`/v2/${NAME}/blobs/${d.configs[1]!.digest}`)).status).toBe(200);
    });
    test('PUT upload of a layer blob should yield a 201 Response', async () => {
      const res = await uploadBlob(mirror.url, NAME, d.layer);
      expect(res.status).toBe(201);
      expect(res.headers.location).toBeTruthy();
    });
    test('GET request to existing layer should yield 200 response', async () => {
      expect((await api().get(`/v2/${NAME}/blobs/${d.layer.digest}`)).status).toBe(200);
    });
  });

  describe('Blob Upload Chunked', () => {
    const patch = (path: string, chunk: Buffer, range: string): request.Test =>
      api().patch(path).set('Content-Type', 'application/octet-stream').set('Content-Range', range).send(chunk);
    test('Out-of-order blob upload should return 416', async () => {
      const start = await api().post(`/v2/${NAME}/blobs/uploads/`).set('Content-Length', '0');
      // We set no OCI-Chunk-Min-Length: any chunk size is taken.
      expect(start.headers['oci-chunk-min-length']).toBeUndefined();
      const res = await patch(relativeLocation(start), d.blobB.chunk2, d.blobB.range2);
      expect(res.status).toBe(416);
      expect(res.body.errors[0].code).toBe('RANGE_INVALID');
    });
    test('PATCH request with first chunk should return 202', async () => {
      prev = await api().post(`/v2/${NAME}/blobs/uploads/`).set('Content-Length', '0');
      last = await patch(relativeLocation(prev), d.blobB.chunk1, d.blobB.range1);
      expect(last.status).toBe(202);
      expect(last.headers.range).toBe(d.blobB.range1);
    });
    test('Retry previous blob chunk should return 416', async () => {
      expect((await patch(relativeLocation(prev), d.blobB.chunk1, d.blobB.range1)).status).toBe(416);
    });
    test('Get on stale blob upload should return 204 with a range and location', async () => {
      last = await api().get(relativeLocation(prev));
      expect(last.status).toBe(204);
      expect(last.headers.location).toBeTruthy();
      expect(last.headers.range).toBe(d.blobB.range1);
    });
    test('PATCH request with second chunk should return 202', async () => {
      last = await patch(relativeLocation(last), d.blobB.chunk2, d.blobB.range2);
      expect(last.status).toBe(202);
      expect(last.headers.range).toBe(`0-${d.blobB.body.length - 1}`);
      expect(last.headers.location).toBeTruthy();
    });
    test('PUT request with digest should return 201', async () => {
      const res = await api()
        .put(withQuery(relativeLocation(last), { digest: d.blobB.digest }))
        .set('Content-Type', 'application/octet-stream');
      expect(res.status).toBe(201);
      expect(res.headers.location).toBeTruthy();
    });
  });

  describe('Cross-Repository Blob Mount', () => {
    const mount = (params: Record<string, string>): request.Test => api().post(withQuery(`/v2/${CROSS}/blobs/uploads/`, params));
    test('Cross-mounting of a blob without the from argument should yield session id', async () => {
      const res = await mount({ mount: d.dummyDigest });
      expect(res.status).toBe(202);
      expect(relativeLocation(res)).toMatch(new RegExp(`^/v2/${CROSS}/blobs/uploads/[0-9a-f-]{36}$`));
    });
    test("POST request to mount another repository's blob should return 201 or 202", async () => {
      last = await mount({ mount: d.blobA.digest, from: NAME });
      expect(last.status).toBe(201);
      expect(last.headers['docker-content-digest']).toBe(d.blobA.digest);
    });
    test('GET request to test digest within cross-mount namespace should return 200', async () => {
      expect(relativeLocation(last)).toBe(`/v2/${CROSS}/blobs/${d.blobA.digest}`);
      const res = await api().get(relativeLocation(last)).buffer(true);
      expect(res.status).toBe(200);
      expect(res.headers['content-length']).toBe(String(d.blobA.body.length));
    });
    test('Cross-mounting of nonexistent blob should yield session id', async () => {
      // The suite runs this one only when the mount above answered 202; ours mounts (201), so the
      // same request is made here with a blob the source does not have.
      const res = await mount({ mount: d.dummyDigest, from: NAME });
      expect(res.status).toBe(202);
      expect(relativeLocation(res).startsWith(`/v2/${CROSS}/blobs/uploads/`)).toBe(true);
    });
    test('Cross-mounting without from, and automatic content discovery disabled should return a 202', async () => {
      // OCI_AUTOMATIC_CROSSMOUNT=false: a mount names its source, as in distribution (docs/behaviour.md).
      const res = await mount({ mount: d.blobA.digest });
      expect(res.status).toBe(202);
      expect(res.headers['docker-upload-uuid']).toBeTruthy();
    });
    test('mounts from a cached repository that holds the blob, never from one that does not or from a name not served', async () => {
      const image = seedImage(upstream, 'library/alpine', 'latest', [Buffer.from('cached layer')]);
      await api().get(`/v2/library/alpine/blobs/${image.layers[0]}`).expect(200);
      const cached = await mount({ mount: image.layers[0]!, from: 'library/alpine' });
      expect(cached.status).toBe(201);
      expect((await api().head(`/v2/${CROSS}/blobs/${image.layers[0]}`)).status).toBe(200);
      for (const from of ['library/other', 'Not/Valid', `${NAME}/../x`]) {
        expect((await mount({ mount: image.config, from })).status).toBe(202);
      }
      expect((await api().head(`/v2/${CROSS}/blobs/${image.config}`)).status).toBe(404);
    });
  });

  describe('Manifest Upload', () => {
    test('GET nonexistent manifest should return 404', async () => {
      const res = await api().get(`/v2/${NAME}/manifests/${d.nonexistentManifest}`);
      expect(res.status).toBe(404);
      expect(res.body.errors[0].code).toBe('MANIFEST_UNKNOWN');
    });
    test('PUT should accept a manifest upload', async () => {
      for (let i = 0; i < 4; i++) {
        const res = await putManifest(mirror.url, NAME, `test${i}`, d.manifests[1]!);
        expect(res.status).toBe(201);
        expect(res.headers.location).toBe(`/v2/${NAME}/manifests/${d.manifests[1]!.digest}`);
      }
    });
    test('Registry should accept a manifest upload with no layers', async () => {
      const res = await putManifest(mirror.url, NAME, 'emptylayer', d.emptyLayerManifest);
      expect(res.status).toBe(201);
      expect(res.headers.location).toBe(`/v2/${NAME}/manifests/${d.emptyLayerManifest.digest}`);
    });
    test('GET request to manifest URL (digest) should yield 200 response', async () => {
      expect((await api().get(`/v2/${NAME}/manifests/${d.manifests[1]!.digest}`).set('Accept', 'application/vnd.oci.image.manifest.v1+json')).status).toBe(200);
    });
  });

  describe('Teardown', () => {
    test('Delete manifest created in tests', async () => {
      expect((await api().delete(`/v2/${NAME}/manifests/${d.manifests[1]!.digest}`)).status).toBe(202);
      expect((await api().delete(`/v2/${NAME}/manifests/${d.emptyLayerManifest.digest}`)).status).toBe(202);
    });
    test('Delete config blob created in tests', async () => {
      expect((await api().delete(`/v2/${NAME}/blobs/${d.configs[1]!.digest}`)).status).toBe(202);
    });
    test('Delete layer blob created in setup', async () => {
      expect((await api().delete(`/v2/${NAME}/blobs/${d.layer.digest}`)).status).toBe(202);
    });
  });
});

describe('Content Discovery', () => {
  let tagList: string[] = [];
  let numTags = 4;
  const tags = (query: Record<string, string> = {}): request.Test => api().get(withQuery(`/v2/${NAME}/tags/list`, query));

  describe('Setup', () => {
    test('Populate registry with test blob', async () => ok((await uploadBlob(mirror.url, NAME, d.configs[2]!)).status));
    test('Populate registry with test layer', async () => ok((await uploadBlob(mirror.url, NAME, d.layer)).status));
    test('Populate registry with test tags', async () => {
      for (let i = 0; i < numTags; i++) {
        for (const tag of [`test${i}`, `TEST${i}`]) ok((await putManifest(mirror.url, NAME, tag, d.manifests[2]!)).status);
      }
    });
    test('References setup', async () => {
      expect(d.emptyJson.digest).toBe('sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a');
      ok((await uploadBlob(mirror.url, NAME, d.emptyJson)).status);
      ok((await uploadBlob(mirror.url, NAME, d.refBlobA)).status);
      const m4 = d.manifests[4]!.digest;
      for (const [c, type] of [[d.refs.aConfig], [d.refs.aLayer], [d.refs.index, OCI_INDEX]] as const) {
        const res = await putManifest(mirror.url, NAME, c.digest, c, type);
        ok(res.status);
        // Pushed before their subject exists: the subject is still processed.
        expect(res.headers['oci-subject']).toBe(m4);
      }
      ok((await uploadBlob(mirror.url, NAME, d.configs[4]!)).status);
      ok((await uploadBlob(mirror.url, NAME, d.layer)).status);
      ok((await putManifest(mirror.url, NAME, 'tagtest0', d.manifests[4]!)).status);
      ok((await uploadBlob(mirror.url, NAME, d.refBlobB)).status);
      for (const c of [d.refs.bConfig, d.refs.bLayer]) expect((await putManifest(mirror.url, NAME, c.digest, c)).headers['oci-subject']).toBe(m4);
      const c = await putManifest(mirror.url, NAME, d.refs.cLayer.digest, d.refs.cLayer);
      ok(c.status);
      expect(c.headers['oci-subject']).toBe(d.manifests[3]!.digest);
    });
  });

  describe('Test content discovery endpoints (listing tags)', () => {
    test('GET request to list tags should yield 200 response and be in sorted order', async () => {
      const res = await tags();
      expect(res.status).toBe(200);
      tagList = res.body.tags;
      numTags = tagList.length;
      expect(tagList).toEqual(['TEST0', 'TEST1', 'TEST2', 'TEST3', 'tagtest0', 'test0', 'test1', 'test2', 'test3']);
      expect(sortedAsTheSuiteAccepts(tagList)).toBe(true);
    });
    test('GET number of tags should be limitable by `n` query parameter', async () => {
      const res = await tags({ n: String(Math.floor(numTags / 2)) });
      expect(res.status).toBe(200);
      expect(res.body.tags).toHaveLength(Math.floor(numTags / 2));
    });
    test('GET start of tag is set by `last` query parameter', async () => {
      const n = Math.floor(numTags / 2);
      const first = await tags({ n: String(n) });
      const lastTag = first.body.tags[n - 1] as string;
      const res = await tags({ n: String(n), last: lastTag });
      expect(res.status).toBe(200);
      expect(res.body.tags.length).toBeLessThanOrEqual(n);
      expect(res.body.tags).not.toContain(lastTag);
      expect(res.body.tags).toEqual(tagList.slice(n, 2 * n));
    });
  });

  describe('Test content discovery endpoints (listing references)', () => {
    referrersSpecs({ url: () => mirror.url, name: NAME, data: d });
  });

  describe('Teardown', () => {
    test('Delete created manifest & associated tags', async () => {
      const { index, aConfig, aLayer, bConfig, bLayer, cLayer } = d.refs;
      for (const ref of [
        index.digest,
        d.manifests[2]!.digest,
        d.manifests[4]!.digest,
        aConfig.digest,
        aLayer.digest,
        bConfig.digest,
        bLayer.digest,
        cLayer.digest,
      ]) {
        expect((await api().delete(`/v2/${NAME}/manifests/${ref}`)).status).toBe(202);
      }
    });
    test('Delete config blob created in tests', async () => {
      expect((await api().delete(`/v2/${NAME}/blobs/${d.configs[2]!.digest}`)).status).toBe(202);
    });
    test('Delete layer blob created in setup', async () => {
      expect((await api().delete(`/v2/${NAME}/blobs/${d.layer.digest}`)).status).toBe(202);
    });
    test('References teardown', async () => {
      // The manifests went above: deleting them again is the suite's accepted 404.
      expect((await api().delete(`/v2/${NAME}/manifests/${d.refs.index.digest}`)).status).toBe(404);
      for (const blob of [d.configs[4]!, d.refBlobA, d.refBlobB, d.emptyJson])
        expect((await api().delete(`/v2/${NAME}/blobs/${blob.digest}`)).status).toBe(202);
    });
  });
});

describe('Content Management', () => {
  let numTags = 0;
  let blobDeleteAllowed = true;

  describe('Setup', () => {
    test('Populate registry with test config blob', async () => ok((await uploadBlob(mirror.url, NAME, d.configs[3]!)).status));
    test('Populate registry with test layer', async () => ok((await uploadBlob(mirror.url, NAME, d.layer)).status));
    test('Populate registry with test tag', async () => ok((await putManifest(mirror.url, NAME, 'tagtest0', d.manifests[3]!)).status));
    test('Check how many tags there are before anything gets deleted', async () => {
      const res = await api().get(`/v2/${NAME}/tags/list`);
      expect(res.status).toBe(200);
      numTags = res.body.tags.length;
      // The earlier workflows deleted what they pushed, their tags with it.
      expect(res.body.tags).toEqual(['tagtest0']);
    });
  });

  describe('Manifest delete', () => {
    test('DELETE request to manifest tag should return 202, unless tag deletion is disallowed (400/405)', async () => {
      expect((await api().delete(`/v2/${NAME}/manifests/tagtest0`)).status).toBe(202);
    });
    test('DELETE request to manifest (digest) should yield 202 response unless already deleted', async () => {
      expect((await api().delete(`/v2/${NAME}/manifests/${d.manifests[3]!.digest}`)).status).toBe(202);
    });
    test('GET request to deleted manifest URL should yield 404 response, unless delete is disallowed', async () => {
      expect((await api().get(`/v2/${NAME}/manifests/${d.manifests[3]!.digest}`)).status).toBe(404);
    });
    test('GET request to tags list should reflect manifest deletion', async () => {
      const res = await api().get(`/v2/${NAME}/tags/list`);
      expect(res.status).toBe(200);
      expect(res.body.tags).toHaveLength(numTags - 1);
    });
  });

  describe('Blob delete', () => {
    test('DELETE request to blob URL should yield 202 response', async () => {
      expect((await api().delete(`/v2/${NAME}/blobs/${d.configs[3]!.digest}`)).status).toBe(202);
      const layer = await api().delete(`/v2/${NAME}/blobs/${d.layer.digest}`);
      expect(layer.status).toBe(202);
      blobDeleteAllowed = layer.status !== 405;
    });
    test('GET request to deleted blob URL should yield 404 response', async () => {
      expect(blobDeleteAllowed).toBe(true);
      expect((await api().get(`/v2/${NAME}/blobs/${d.configs[3]!.digest}`)).status).toBe(404);
    });
  });
});

describe('a reference that is not a valid tag, per method', () => {
  const bad = d.nonexistentManifest;
  test('PUT is 400 TAG_INVALID and writes nothing; the body is drained, so the answer arrives', async () => {
    const res = await putManifest(mirror.url, NAME, bad, d.manifests[0]!);
    expect(res.status).toBe(400);
    expect(res.body.errors[0]).toMatchObject({ code: 'TAG_INVALID', detail: { Tag: bad } });
    expect(existsSync(join(mirror.root, 'docker/registry/v2/repositories', NAME, '_manifests/tags', bad))).toBe(false);
    const large = await api()
      .put(`/v2/${NAME}/manifests/-big`)
      .set('Content-Type', 'application/vnd.oci.image.manifest.v1+json')
      .send('x'.repeat(2 * 1024 * 1024));
    expect(large.status).toBe(400);
  });
  test('DELETE is 404 MANIFEST_UNKNOWN, as for any tag that does not exist', async () => {
    const res = await api().delete(`/v2/${NAME}/manifests/${bad}`);
    expect(res.status).toBe(404);
    expect(res.body.errors[0].code).toBe('MANIFEST_UNKNOWN');
  });
  test('on a cached name a write is 405 UNSUPPORTED whatever the reference, and a read 404 without asking the upstream', async () => {
    const before = upstream.hits.length;
    expect((await putManifest(mirror.url, 'library/alpine', bad, d.manifests[0]!)).status).toBe(405);
    expect((await api().delete(`/v2/library/alpine/manifests/${bad}`)).status).toBe(405);
    expect((await api().get(`/v2/library/alpine/manifests/${bad}`)).status).toBe(404);
    expect(upstream.hits.length).toBe(before);
  });
});
