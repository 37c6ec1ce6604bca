/**
 * A manifest is committed under a tag only when its digest is known to be the upstream's for that
 * tag (issue 20): named by `Docker-Content-Digest` on the HEAD or the GET by tag, or confirmed by a
 * HEAD by the body's digest when the upstream names none. Bodies altered on the way (whitespace, a
 * different valid manifest) are refused with a 503, nothing is stored, and the refusal is logged
 * and counted; a tag served stale during an outage is always a verified one.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import request from 'supertest';
import { seedImage, type FakeUpstream } from './helpers/fake-upstream.js';
import { type TestMirror } from './helpers/mirror.js';
import { closeBoth, mirrorOfFakeUpstream } from './helpers/mirror-of-fake-upstream.js';
import { sha256 } from './helpers/digest.js';
import { binary } from './helpers/binary.js';

const ACCEPT = 'application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json';
const REPO = 'library/busybox';
const sha = sha256;

describe('manifest verification against the upstream', () => {
  let upstream: FakeUpstream;
  let mirror: TestMirror;

  beforeEach(async () => ({ upstream, mirror } = await mirrorOfFakeUpstream()));
  afterEach(() => closeBoth({ upstream, mirror }));

  const get = (ref: string) => request(mirror.url).get(`/v2/${REPO}/manifests/${ref}`).set('Accept', ACCEPT).buffer(true).parse(binary);
  const v2 = (...parts: string[]): string => join(mirror.root, 'docker/registry/v2', ...parts);
  const stored = (digest: string): { data: boolean; revision: boolean } => {
    const hex = digest.slice(7);
    return {
      data: existsSync(v2('blobs/sha256', hex.slice(0, 2), hex, 'data')),
      revision: existsSync(v2('repositories', REPO, '_manifests/revisions/sha256', hex, 'link')),
    };
  };
  const tagLink = (tag: string): string => v2('repositories', REPO, '_manifests/tags', tag, 'current/link');
  const refusals = async (): Promise<Record<string, number>> =>
    Object.fromEntries((await mirror.registry.metrics.manifestsRefused.get()).values.map((v) => [String(v.labels.reason), v.value]));
  /** The HEAD and the GET by tag both without a digest header; the GET's body replaced by `body` (default: re-indented). */
  const alterInTransit = (body?: Buffer, times = 1): void => {
    upstream.fault(/^HEAD \/v2\/library\/busybox\/manifests\/latest$/, { kind: 'no-digest-header' }, times);
    upstream.fault(/^GET \/v2\/library\/busybox\/manifests\/latest$/, { kind: 'altered-manifest', body, dropDigest: true }, times);
  };
  /** Another valid image manifest (its config and layer exist upstream in another repository only). */
  const otherManifest = (): Buffer => seedImage(upstream, 'library/other', 'latest', [randomBytes(64)]).manifestBody;

  test('without a digest header on the HEAD and the GET, the body is confirmed with a HEAD by its digest and stored under the tag', async () => {
    const img = seedImage(upstream, REPO, 'latest', [randomBytes(100)]);
    upstream.fault(/^(HEAD|GET) \/v2\/library\/busybox\/manifests\/latest$/, { kind: 'no-digest-header' }, 2);
    const res = await get('latest');
    expect(res.status).toBe(200);
    expect(res.headers['docker-content-digest']).toBe(img.manifest);
    expect((res.body as Buffer).equals(img.manifestBody)).toBe(true);
    expect(upstream.count(new RegExp(`^HEAD /v2/library/busybox/manifests/${img.manifest}$`))).toBe(1);
    expect(stored(img.manifest)).toEqual({ data: true, revision: true });
    expect(existsSync(tagLink('latest'))).toBe(true);
    expect(await refusals()).toEqual({});
  });

  test('without a digest header, a body altered on the way (whitespace) is refused: 503, nothing stored, logged and counted', async () => {
    const img = seedImage(upstream, REPO, 'latest', [randomBytes(100)]);
    const altered = Buffer.from(JSON.stringify(JSON.parse(img.manifestBody.toString()), null, 2));
    alterInTransit(altered);
    const res = await get('latest');
    expect(res.status).toBe(503);
    expect(JSON.parse((res.body as Buffer).toString()).errors[0].code).toBe('UNAVAILABLE');
    expect(stored(sha(altered))).toEqual({ data: false, revision: false });
    expect(existsSync(tagLink('latest'))).toBe(false);
    expect(await refusals()).toEqual({ not_upstream: 1 });
    expect(mirror.logs()).toMatch(
      new RegExp(`msg="upstream manifest refused as unverified, nothing stored" .*reason=not_upstream vars\\.name=${REPO} vars\\.reference=latest`),
    );
    // The next request, with the upstream healthy, is served and cached the upstream's manifest.
    const next = await get('latest');
    expect(next.status).toBe(200);
    expect(next.headers['docker-content-digest']).toBe(img.manifest);
  });

  test("without a digest header, a different valid manifest in place of the tag's is refused: 503, nothing stored", async () => {
    seedImage(upstream, REPO, 'latest', [randomBytes(100)]);
    const other = otherManifest();
    alterInTransit(other);
    const res = await get('latest');
    expect(res.status).toBe(503);
    expect(stored(sha(other))).toEqual({ data: false, revision: false });
    expect(existsSync(tagLink('latest'))).toBe(false);
    expect(await refusals()).toEqual({ not_upstream: 1 });
  });

  test('a GET by tag whose body does not hash to its own Docker-Content-Digest is refused: 503, nothing stored', async () => {
    const img = seedImage(upstream, REPO, 'latest', [randomBytes(100)]);
    upstream.fault(/^HEAD /, { kind: 'no-digest-header' }, 1);
    upstream.fault(/^GET \/v2\/library\/busybox\/manifests\/latest$/, { kind: 'altered-manifest' }, 1);
    const res = await get('latest');
    expect(res.status).toBe(503);
    expect(stored(img.manifest)).toEqual({ data: false, revision: false });
    expect(existsSync(tagLink('latest'))).toBe(false);
    expect(await refusals()).toEqual({ digest_mismatch: 1 });
    // Refused on the GET's own header: the upstream was not asked by digest.
    expect(upstream.count(/^HEAD \/v2\/library\/busybox\/manifests\/sha256:/)).toBe(0);
  });

  test('a HEAD naming the digest and a GET body altered on the way are refused: 503, nothing stored', async () => {
    // A HEAD goes out for a cached tag: cache it, then move it upstream.
    const first = seedImage(upstream, REPO, 'latest', [randomBytes(100)]);
    expect((await get('latest')).status).toBe(200);
    const img = seedImage(upstream, REPO, 'latest', [randomBytes(100)]);
    const altered = otherManifest();
    upstream.fault(new RegExp(`^GET /v2/library/busybox/manifests/${img.manifest}$`), { kind: 'altered-manifest', body: altered }, 1);
    const res = await get('latest');
    expect(res.status).toBe(503);
    expect(upstream.count(/^HEAD \/v2\/library\/busybox\/manifests\/latest$/)).toBe(1);
    expect(stored(img.manifest)).toEqual({ data: false, revision: false });
    expect(stored(sha(altered))).toEqual({ data: false, revision: false });
    expect(readFileSync(tagLink('latest'), 'utf8')).toBe(first.manifest);
    expect(await refusals()).toEqual({ digest_mismatch: 1 });
  });

  test('an altered body, then the upstream answering 500: a cold tag is 503 every time, never the altered body', async () => {
    seedImage(upstream, REPO, 'latest', [randomBytes(100)]);
    alterInTransit();
    expect((await get('latest')).status).toBe(503);
    upstream.fault(/./, { kind: 'status', status: 500 });
    for (let i = 0; i < 3; i++) expect((await get('latest')).status).toBe(503);
    expect(existsSync(tagLink('latest'))).toBe(false);
  });

  test('the tag moved upstream and its new manifest arrived altered: refused, and while the upstream answers 500 the verified manifest is served', async () => {
    const first = seedImage(upstream, REPO, 'latest', [randomBytes(100)]);
    expect((await get('latest')).headers['docker-content-digest']).toBe(first.manifest);
    const second = seedImage(upstream, REPO, 'latest', [randomBytes(100)]);
    alterInTransit();
    expect((await get('latest')).status).toBe(503);
    upstream.fault(/./, { kind: 'status', status: 500 });
    // Two, not three: a third failure in a row would open the circuit breaker for 5 s.
    for (let i = 0; i < 2; i++) {
      const stale = await get('latest');
      expect(stale.status).toBe(200);
      expect(stale.headers['docker-content-digest']).toBe(first.manifest);
      expect(sha(stale.body as Buffer)).toBe(first.manifest);
    }
    upstream.clearFaults();
    const healed = await get('latest');
    expect(healed.headers['docker-content-digest']).toBe(second.manifest);
    expect(sha(healed.body as Buffer)).toBe(second.manifest);
  });

  test('without a digest header and the HEAD by digest failing with 500: nothing stored, counted as unconfirmed, and the verified cached tag is served', async () => {
    const first = seedImage(upstream, REPO, 'latest', [randomBytes(100)]);
    await get('latest').expect(200);
    const second = seedImage(upstream, REPO, 'latest', [randomBytes(100)]);
    upstream.fault(/^(HEAD|GET) \/v2\/library\/busybox\/manifests\/latest$/, { kind: 'no-digest-header' }, 2);
    upstream.fault(new RegExp(`^HEAD /v2/library/busybox/manifests/${second.manifest}$`), { kind: 'status', status: 500 }, 1);
    const res = await get('latest');
    expect(res.status).toBe(200);
    expect(res.headers['docker-content-digest']).toBe(first.manifest);
    expect(stored(second.manifest)).toEqual({ data: false, revision: false });
    expect(await refusals()).toEqual({ unconfirmed: 1 });
    expect(mirror.logs()).toMatch(
      new RegExp(
        `level=warning msg="serving the cached manifest: the upstream could not confirm it" .*vars\\.digest=${first.manifest} vars\\.name=library/busybox vars\\.reference=latest`,
      ),
    );
  });
});
