/**
 * The mirror on S3 with real peers: Ceph's RADOS Gateway as the store, Debian's docker-registry
 * (distribution 2.8) as the upstream and, on the same bucket, as the registry that must read what
 * we wrote and write what we read; skopeo as the client. Objects are checked at distribution's keys
 * (`<rootdirectory>/docker/registry/v2/...`, links holding `sha256:<hex>` with no newline).
 */
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import {
  GetObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutBucketPolicyCommand,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { S3Driver } from '../../lib/storage/s3.js';
import { s3Config } from '../../lib/config/s3.js';
import { collect } from '../../lib/storage/garbage-collect.js';
import { describeInterop } from '../helpers/interop.js';
import { until } from '../helpers/until.js';
import { startDistribution, type DistributionProcess } from '../helpers/upstream-registry.js';
import { buildImage } from '../helpers/images.js';
import { pushImage, pullImage } from '../helpers/skopeo.js';
import { startMirror, type TestMirror } from '../helpers/mirror.js';
import { cephAvailable, createBucket, s3Client, s3Parameters, s3StorageYaml, type CephEndpoint } from '../helpers/ceph.js';
import { sharedCeph } from '../helpers/ceph-shared.js';
import { rawRequest as request } from '../helpers/raw-request.js';

const V2 = 'registry/docker/registry/v2';
const hostPort = (m: TestMirror): string => m.url.replace('http://', '');
const hex = (digest: string): string => digest.slice('sha256:'.length);

describeInterop(
  'the mirror on S3 (Ceph RGW) beside distribution 2.8 on the same bucket',
  () => {
    let ceph: CephEndpoint;
    let s3: S3Client;
    let upstream: DistributionProcess;
    const image = buildImage({ layers: [12 * 1024 * 1024 + 3, 4096], seed: 's3-interop' });
    const keysOf = async (bucket: string, prefix: string): Promise<Map<string, number>> => {
      const out = new Map<string, number>();
      let ContinuationToken: string | undefined;
      do {
        const page = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken }));
        for (const o of page.Contents ?? []) out.set(o.Key!, o.Size ?? 0);
        ContinuationToken = page.NextContinuationToken;
      } while (ContinuationToken);
      return out;
    };
    const object = async (bucket: string, key: string): Promise<Buffer> =>
      Buffer.from(await (await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }))).Body!.transformToByteArray());
    const storage = (bucket: string, redirect: boolean): string[] => [...s3StorageYaml(s3Parameters(ceph, bucket)), '  redirect:', `    disable: ${!redirect}`];

    beforeAll(async () => {
      ceph = await sharedCeph();
      s3 = s3Client(ceph);
      upstream = await startDistribution();
      await pushImage(upstream.hostPort, 'library/busybox:latest', image);
    }, 120_000);
    afterAll(async () => {
      await upstream?.destroy();
      s3?.destroy();
    });

    test('pull-through with redirects disabled: cold and warm skopeo pulls, streamed, stored at distribution keys', async () => {
      const bucket = await createBucket(ceph, 'pull');
      const mirror = await startMirror(upstream.url, { storage: storage(bucket, false) });
      try {
        expect((await pullImage(hostPort(mirror), 'library/busybox:latest')).manifestDigest).toBe(image.manifest.digest);
        expect((await pullImage(hostPort(mirror), 'library/busybox:latest')).manifestDigest).toBe(image.manifest.digest);
        const keys = await keysOf(bucket, `${V2}/`);
        for (const l of [image.config, ...image.layers]) {
          expect(keys.get(`${V2}/blobs/sha256/${hex(l.digest).slice(0, 2)}/${hex(l.digest)}/data`)).toBe(l.size);
          const link = await object(bucket, `${V2}/repositories/library/busybox/_layers/sha256/${hex(l.digest)}/link`);
          expect(link.toString('latin1')).toBe(l.digest);
          expect(link.length).toBe(71);
        }
        expect((await object(bucket, `${V2}/repositories/library/busybox/_manifests/revisions/sha256/${hex(image.manifest.digest)}/link`)).toString()).toBe(
          image.manifest.digest,
        );
        expect((await object(bucket, `${V2}/repositories/library/busybox/_manifests/tags/latest/current/link`)).toString()).toBe(image.manifest.digest);
        // Nothing is left half-written: every multipart upload was completed.
        expect((await s3.send(new ListMultipartUploadsCommand({ Bucket: bucket }))).Uploads ?? []).toEqual([]);

        const big = image.layers[0]!;
        const got = await request(`${mirror.url}/v2/library/busybox/blobs/${big.digest}`);
        expect(got.status).toBe(200);
        expect(`sha256:${createHash('sha256').update(got.body).digest('hex')}`).toBe(big.digest);
      } finally {
        await mirror.close();
      }
      // garbage-collect on the bucket: everything an image references stays, an orphan goes.
      const orphan = Buffer.from('orphan blob');
      const orphanDigest = `sha256:${createHash('sha256').update(orphan).digest('hex')}`;
      const orphanKey = `${V2}/blobs/sha256/${hex(orphanDigest).slice(0, 2)}/${hex(orphanDigest)}/data`;
      await s3.send(new PutObjectCommand({ Bucket: bucket, Key: orphanKey, Body: orphan }));
      const driver = new S3Driver(s3Config(s3Parameters(ceph, bucket)));
      try {
        const summary = await collect(driver, { dryRun: false, removeUntagged: false, out: () => undefined });
        expect(summary.blobsDeleted).toBe(1);
        expect(summary.blobsMarked).toBe(2 + image.layers.length);
      } finally {
        driver.client.destroy();
      }
      const left = await keysOf(bucket, `${V2}/blobs/`);
      expect(left.has(orphanKey)).toBe(false);
      expect(left.size).toBe(2 + image.layers.length);
      // The schedule is an object beside the layout, as distribution writes it.
      const state = JSON.parse((await object(bucket, 'registry/scheduler-state.json')).toString()) as Record<string, { EntryType: number }>;
      expect(state[`library/busybox@${image.manifest.digest}`]?.EntryType).toBe(1);
      expect(state[`library/busybox@${image.layers[0]!.digest}`]?.EntryType).toBe(0);
    }, 180_000);

    test('sixty clients that stop reading streamed blobs do not hold up other requests', async () => {
      const bucket = await createBucket(ceph, 'slow');
      const mirror = await startMirror(upstream.url, { storage: storage(bucket, false) });
      const stalled: http.ClientRequest[] = [];
      try {
        await pullImage(hostPort(mirror), 'library/busybox:latest');
        const big = image.layers[0]!;
        // Each holds a response it never reads: its bytes back up into the mirror's read from the bucket.
        await Promise.all(
          Array.from(
            { length: 60 },
            () =>
              new Promise<void>((resolve, reject) => {
                const req = http.get(`${mirror.url}/v2/library/busybox/blobs/${big.digest}`, { agent: false }, (res) => {
                  res.pause();
                  resolve();
                });
                req.on('error', reject);
                stalled.push(req);
              }),
          ),
        );
        const started = Date.now();
        const head = await request(`${mirror.url}/v2/library/busybox/manifests/${image.manifest.digest}`, 'HEAD');
        expect(head.status).toBe(200);
        const small = await request(`${mirror.url}/v2/library/busybox/blobs/${image.layers[1]!.digest}`);
        expect(small.body.length).toBe(image.layers[1]!.size);
        expect(Date.now() - started).toBeLessThan(20_000);
      } finally {
        for (const r of stalled) r.destroy();
        await mirror.close();
      }
    }, 120_000);

    test('a store that refuses writes: clients still get every verified byte, nothing is cached', async () => {
      // A bucket policy denying every write, as a store that is full or read-only: reads still work.
      const bucket = await createBucket(ceph, 'readonly');
      const Policy = JSON.stringify({
        Version: '2012-10-17',
        Statement: [{ Effect: 'Deny', Principal: '*', Action: ['s3:PutObject'], Resource: [`arn:aws:s3:::${bucket}/*`] }],
      });
      await s3.send(new PutBucketPolicyCommand({ Bucket: bucket, Policy }));
      const mirror = await startMirror(upstream.url, { storage: storage(bucket, false) });
      try {
        const big = image.layers[0]!;
        const got = await request(`${mirror.url}/v2/library/busybox/blobs/${big.digest}`);
        expect({ status: got.status, logs: got.status === 200 ? '' : mirror.logs() }).toEqual({ status: 200, logs: '' });
        expect(`sha256:${createHash('sha256').update(got.body).digest('hex')}`).toBe(big.digest);
        // The refused upload may end after the client's last byte (verified bytes are released
        // before the multipart upload completes): its log line and its abort follow.
        const abandoned = new RegExp(
          `level=error msg="cache write abandoned: the client is served from the upstream" .*type=blob vars\\.digest=${big.digest} vars\\.name=library/busybox`,
        );
        await until(() => abandoned.test(mirror.logs()), 'the abandoned cache write logged', 30_000);
        const uploads = async (): Promise<unknown[]> => (await s3.send(new ListMultipartUploadsCommand({ Bucket: bucket }))).Uploads ?? [];
        await until(async () => (await uploads()).length === 0, 'the refused multipart upload aborted', 30_000);
        expect((await keysOf(bucket, '')).size).toBe(0);
      } finally {
        await mirror.close();
      }
    }, 120_000);

    test('redirects on (the default): a cached blob GET and HEAD answer 307 to a presigned gateway URL; a cold one streams', async () => {
      const bucket = await createBucket(ceph, 'redirect');
      const mirror = await startMirror(upstream.url, { storage: storage(bucket, true) });
      try {
        const big = image.layers[0]!;
        const cold = await request(`${mirror.url}/v2/library/busybox/blobs/${big.digest}`);
        expect(cold.status).toBe(200);
        expect(cold.body.length).toBe(big.size);
        const warm = await request(`${mirror.url}/v2/library/busybox/blobs/${big.digest}`);
        expect(warm.status).toBe(307);
        const location = new URL(warm.headers.location!);
        expect(location.origin).toBe(ceph.endpoint);
        expect(location.pathname).toBe(`/${bucket}/${V2}/blobs/sha256/${hex(big.digest).slice(0, 2)}/${hex(big.digest)}/data`);
        expect(location.searchParams.get('X-Amz-Expires')).toBe('1200');
        const fromGateway = await request(location.href);
        expect(fromGateway.status).toBe(200);
        expect(`sha256:${createHash('sha256').update(fromGateway.body).digest('hex')}`).toBe(big.digest);
        const head = await request(`${mirror.url}/v2/library/busybox/blobs/${big.digest}`, 'HEAD');
        expect(head.status).toBe(307);
        const headed = await request(head.headers.location!, 'HEAD');
        expect(headed.status).toBe(200);
        expect(Number(headed.headers['content-length'])).toBe(big.size);
        // A client that follows redirects pulls the whole image, its blobs from the gateway.
        expect((await pullImage(hostPort(mirror), 'library/busybox:latest')).manifestDigest).toBe(image.manifest.digest);
      } finally {
        await mirror.close();
      }
    }, 180_000);

    test('registry:2 on the same bucket serves what we cached and hosted; we serve what it pushed', async () => {
      const bucket = await createBucket(ceph, 'interop');
      const hosted = buildImage({ layers: [6 * 1024 * 1024 + 1, 1500], seed: 's3-hosted' });
      const theirs = buildImage({ layers: [7 * 1024 * 1024 + 5, 900], seed: 's3-theirs' });
      const ours = await startMirror(upstream.url, { storage: storage(bucket, true), proxyYaml: 'hosted: [internal/]\nhostedanonymouspush: true' });
      try {
        await pullImage(hostPort(ours), 'library/busybox:latest');
        await pushImage(hostPort(ours), 'internal/app:1.0', hosted);
        expect((await keysOf(bucket, `${V2}/repositories/internal/app/_uploads/`)).size).toBe(0);
      } finally {
        await ours.close();
      }
      // The official registry as a pull-through cache of the same upstream, on our bucket.
      const official = await startDistribution({ proxy: { remoteurl: upstream.url }, storage: storage(bucket, true) });
      try {
        expect((await pullImage(official.hostPort, `library/busybox@${image.manifest.digest}`)).manifestDigest).toBe(image.manifest.digest);
        expect(official.logs()).not.toMatch(/panic|error reading scheduler/i);
      } finally {
        await official.destroy();
      }
      const plain = await startDistribution({ storage: storage(bucket, true) });
      try {
        expect((await pullImage(plain.hostPort, 'internal/app:1.0')).manifestDigest).toBe(hosted.manifest.digest);
        expect((await pullImage(plain.hostPort, 'library/busybox:latest')).manifestDigest).toBe(image.manifest.digest);
        await pushImage(plain.hostPort, 'internal/theirs:2.0', theirs);
      } finally {
        await plain.destroy();
      }
      const back = await startMirror(upstream.url, { storage: storage(bucket, false), proxyYaml: 'hosted: [internal/]\nhostedanonymouspush: true' });
      try {
        const pulled = await pullImage(hostPort(back), 'internal/theirs:2.0');
        expect(pulled.manifestDigest).toBe(theirs.manifest.digest);
        for (const l of theirs.layers) expect(pulled.blobs).toContain(l.digest);
        expect((await pullImage(hostPort(back), 'internal/app:1.0')).manifestDigest).toBe(hosted.manifest.digest);
        expect(back.logs()).not.toMatch(/scheduler state:/);
      } finally {
        await back.close();
      }
    }, 240_000);

    test('hosted uploads on S3: chunked PATCHes across the part minimum, status, a restart between chunks, a wrong digest', async () => {
      const bucket = await createBucket(ceph, 'uploads');
      const hostedYaml = 'hosted: [internal/]\nhostedanonymouspush: true';
      let mirror = await startMirror(upstream.url, { storage: storage(bucket, false), proxyYaml: hostedYaml });
      try {
        const content = randomBytes(13 * 1024 * 1024 + 11);
        const cuts = [0, 1000, 6 * 1024 * 1024, 7 * 1024 * 1024 + 5, content.length];
        const start = await fetch(`${mirror.url}/v2/internal/big/blobs/uploads/`, { method: 'POST' });
        expect(start.status).toBe(202);
        let location = start.headers.get('location')!;
        const uuid = start.headers.get('docker-upload-uuid')!;
        expect((await object(bucket, `${V2}/repositories/internal/big/_uploads/${uuid}/startedat`)).toString()).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
        // The data is a pending multipart upload at the key registry:2 uses.
        const pendingKeys = async (): Promise<string[]> =>
          ((await s3.send(new ListMultipartUploadsCommand({ Bucket: bucket }))).Uploads ?? []).map((u) => u.Key!);
        expect(await pendingKeys()).toEqual([`${V2}/repositories/internal/big/_uploads/${uuid}/data`]);
        for (let i = 0; i < cuts.length - 2; i++) {
          if (i === 2) {
            // A restart between two chunks: the upload resumes from the bucket, its hash rebuilt at commit.
            await mirror.close({ keepRoot: true });
            mirror = await startMirror(upstream.url, { storage: storage(bucket, false), proxyYaml: hostedYaml });
            location = location.replace(/^https?:\/\/[^/]+/, '');
          }
          const chunk = content.subarray(cuts[i]!, cuts[i + 1]!);
          const patch = await fetch(`${mirror.url}${location}`, {
            method: 'PATCH',
            headers: { 'Content-Type': 'application/octet-stream', 'Content-Range': `${cuts[i]}-${cuts[i + 1]! - 1}` },
            body: chunk,
          });
          expect(patch.status).toBe(202);
          expect(patch.headers.get('range')).toBe(`0-${cuts[i + 1]! - 1}`);
          location = patch.headers.get('location')!;
          const status = await fetch(`${mirror.url}${location}`);
          expect(status.status).toBe(204);
          expect(status.headers.get('range')).toBe(`0-${cuts[i + 1]! - 1}`);
        }
        const digest = `sha256:${createHash('sha256').update(content).digest('hex')}`;
        const wrong = await fetch(`${mirror.url}/v2/internal/other/blobs/uploads/`, { method: 'POST' });
        const bad = await fetch(`${mirror.url}${wrong.headers.get('location')}?digest=${digest}`, { method: 'PUT', body: Buffer.from('not it') });
        expect(bad.status).toBe(400);
        const put = await fetch(`${mirror.url}${location}${location.includes('?') ? '&' : '?'}digest=${digest}`, {
          method: 'PUT',
          headers: { 'Content-Type': 'application/octet-stream' },
          body: content.subarray(cuts[cuts.length - 2]!),
        });
        expect(put.status).toBe(201);
        expect((await object(bucket, `${V2}/blobs/sha256/${hex(digest).slice(0, 2)}/${hex(digest)}/data`)).equals(content)).toBe(true);
        expect((await keysOf(bucket, `${V2}/repositories/internal/big/_uploads/`)).size).toBe(0);
        expect((await keysOf(bucket, `${V2}/repositories/internal/other/_uploads/`)).size).toBe(0);
        expect(await pendingKeys()).toEqual([]);
        const got = await request(`${mirror.url}/v2/internal/big/blobs/${digest}`);
        expect(got.status).toBe(200);
        expect(got.body.equals(content)).toBe(true);
      } finally {
        await mirror.close();
      }
    }, 180_000);

    test('the schedule moves with the bucket: an expiry registry:2 scheduled is carried out by us', async () => {
      const bucket = await createBucket(ceph, 'state');
      const official = await startDistribution({ proxy: { remoteurl: upstream.url, ttl: '1h' }, storage: storage(bucket, false) });
      const key = `library/busybox@${image.manifest.digest}`;
      try {
        await pullImage(official.hostPort, 'library/busybox:latest');
        // distribution 2.8 writes the state every 5 s.
        let state: Record<string, { Key: string; ExpiryData: string; EntryType: number }> = {};
        const deadline = Date.now() + 20_000;
        while (!(key in state) && Date.now() < deadline) {
          await new Promise((r) => setTimeout(r, 500));
          state = await object(bucket, 'registry/scheduler-state.json').then(
            (b) => JSON.parse(b.toString()) as typeof state,
            () => ({}),
          );
        }
        expect(state[key]?.EntryType).toBe(1);
        for (const v of Object.values(state)) v.ExpiryData = '2020-01-01T00:00:00Z';
        await s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'registry/scheduler-state.json', Body: JSON.stringify(state) }));
      } finally {
        await official.destroy();
      }
      const ours = await startMirror(upstream.url, { storage: storage(bucket, false) });
      try {
        const revision = `${V2}/repositories/library/busybox/_manifests/revisions/sha256/${hex(image.manifest.digest)}/link`;
        const layer = `${V2}/blobs/sha256/${hex(image.layers[0]!.digest).slice(0, 2)}/${hex(image.layers[0]!.digest)}/data`;
        let keys = await keysOf(bucket, `${V2}/`);
        const gone = (): boolean => !keys.has(revision) && !keys.has(layer);
        const deadline = Date.now() + 15_000;
        while (!gone() && Date.now() < deadline) {
          await new Promise((r) => setTimeout(r, 300));
          keys = await keysOf(bucket, `${V2}/`);
        }
        expect(gone()).toBe(true);
      } finally {
        await ours.close();
      }
    }, 180_000);
  },
  { what: 'Ceph (ceph-mon, ceph-osd, radosgw, ceph-common)', available: cephAvailable },
);
