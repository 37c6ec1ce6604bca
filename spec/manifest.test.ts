/**
 * The one manifest parser (lib/distribution/manifest.ts) that eviction, garbage collection, warm,
 * the cache page, negotiation and push validation share: what a manifest references, by role.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseDigest, sha256Of, type Digest } from '../lib/distribution/digest.js';
import { parseManifest, references, tryParseManifest, mediaTypeOfPayload } from '../lib/distribution/manifest.js';
import { MediaType } from '../lib/distribution/mediatypes.js';
import { FilesystemDriver } from '../lib/storage/filesystem.js';
import { BlobStore } from '../lib/storage/blob-store.js';
import { referencedBy } from '../lib/storage/purge.js';

const d = (seed: string): string => sha256Of(seed);
const json = (doc: unknown): Buffer => Buffer.from(JSON.stringify(doc));

describe('manifest references', () => {
  test('every role: config, layers, index children, artifact blobs, subject and schema 1 fsLayers, in distribution order', () => {
    const m = parseManifest(
      json({
        schemaVersion: 2,
        config: { digest: d('config'), size: 2 },
        layers: [{ digest: d('l1'), size: 10, mediaType: 'x' }, { digest: 'sha256:nothex' }, 7],
        manifests: [{ digest: d('child'), platform: { os: 'linux', architecture: 'arm64' } }],
        blobs: [{ digest: d('blob') }],
        subject: { digest: d('subject') },
        fsLayers: [{ blobSum: d('fs') }, { blobSum: 'bad' }],
      }),
    );
    expect(references(m).map((r) => r.digest.value)).toEqual([d('config'), d('l1'), d('child'), d('blob'), d('subject'), d('fs')]);
    expect(m.refs.layers[0]).toMatchObject({ size: 10, mediaType: 'x' });
    expect(m.refs.manifests[0]!.platform).toEqual({ os: 'linux', architecture: 'arm64', variant: undefined });
    expect(m.invalid.map((i) => [i.field, i.reason, i.digest])).toEqual([
      ['layers', 'invalid digest', 'sha256:nothex'],
      ['layers', 'not a descriptor', undefined],
      ['fsLayers', 'invalid digest', 'bad'],
    ]);
  });

  test('media types as distribution derives them (registered types agreeing with the shape only); what is not a JSON object', () => {
    expect(mediaTypeOfPayload(json({ schemaVersion: 1, fsLayers: [] }))).toBe(MediaType.DockerManifestV1);
    expect(mediaTypeOfPayload(json({ schemaVersion: 1, signatures: [] }))).toBe(MediaType.DockerManifestV1Signed);
    expect(mediaTypeOfPayload(json({ schemaVersion: 2, manifests: [] }))).toBe(MediaType.OciIndex);
    expect(mediaTypeOfPayload(json({ schemaVersion: 2, config: {} }))).toBe(MediaType.OciManifest);
    expect(mediaTypeOfPayload(json({ schemaVersion: 2, mediaType: MediaType.DockerManifest, config: {} }))).toBe(MediaType.DockerManifest);
    expect(mediaTypeOfPayload(json({ schemaVersion: 2, mediaType: MediaType.DockerManifestList, manifests: [] }))).toBe(MediaType.DockerManifestList);
    // Only registered types that agree with the document's shape, with schemaVersion 2 (distribution's manifest store).
    expect(mediaTypeOfPayload(json({ schemaVersion: 2, mediaType: 'text/html', config: {} }))).toBeUndefined();
    expect(mediaTypeOfPayload(json({ schemaVersion: 2, mediaType: MediaType.OciIndex, config: {} }))).toBeUndefined();
    expect(mediaTypeOfPayload(json({ schemaVersion: 2, mediaType: MediaType.OciManifest, manifests: [] }))).toBeUndefined();
    expect(mediaTypeOfPayload(json({ schemaVersion: 2, mediaType: MediaType.DockerManifest }))).toBeUndefined();
    expect(mediaTypeOfPayload(json({ config: {} }))).toBeUndefined();
    expect(tryParseManifest(Buffer.from('[1]'))).toBeUndefined();
    expect(() => parseManifest(Buffer.from('{'))).toThrow(/manifest is not valid JSON/);
    expect(() => parseManifest(Buffer.from('null'))).toThrow('manifest is not a JSON object');
  });

  test("eviction's referencedBy sees the subject, artifact blobs and schema 1 layers, as garbage collection does", async () => {
    const root = await mkdtemp(join(tmpdir(), 'manifest-'));
    try {
      const blobs = new BlobStore(new FilesystemDriver(root));
      const put = async (payload: Buffer): Promise<Digest> => {
        const digest = parseDigest(sha256Of(payload))!;
        await blobs.put(digest, payload);
        return digest;
      };
      const schema1 = await put(json({ schemaVersion: 1, fsLayers: [{ blobSum: d('a') }, { blobSum: d('b') }] }));
      expect((await referencedBy(blobs, schema1)).map((x) => x.value)).toEqual([d('a'), d('b')]);
      const referrer = await put(json({ schemaVersion: 2, config: { digest: d('c') }, layers: [], subject: { digest: d('s') }, blobs: [{ digest: d('x') }] }));
      expect((await referencedBy(blobs, referrer)).map((x) => x.value)).toEqual([d('c'), d('x'), d('s')]);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});
