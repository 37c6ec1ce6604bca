/**
 * `middleware.storage` beside Debian's docker-registry (distribution 2.8) configured the same: a
 * cached blob's `GET` and `HEAD` redirected where it redirects them. `redirect` on a filesystem
 * root; `cloudfront` on S3 (Ceph's RADOS Gateway), its URL signed as the AWS SDK signs it (checked
 * with the key pair's public key, and equal to distribution's signature for the same second);
 * `rewrite` (distribution 3 only) on the gateway's presigned URLs.
 */
import { createPublicKey, createVerify, generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeInterop } from '../helpers/interop.js';
import { startDistribution, type DistributionProcess } from '../helpers/upstream-registry.js';
import { buildImage } from '../helpers/images.js';
import { pushImage } from '../helpers/skopeo.js';
import { startMirror } from '../helpers/mirror.js';
import { createBucket, s3Parameters, s3StorageYaml, type CephEndpoint } from '../helpers/ceph.js';
import { sharedCeph } from '../helpers/ceph-shared.js';
import { rawRequest } from '../helpers/raw-request.js';
import { signCloudFront } from '../../lib/storage/middleware.js';

const V2 = 'docker/registry/v2';
const hex = (digest: string): string => digest.slice('sha256:'.length);

/** One request without following redirects: its status and `Location`. */
async function request(url: string, method: string): Promise<{ status: number; location?: string }> {
  const { status, headers } = await rawRequest(url, method);
  return { status, location: headers.location };
}

/**
 * A blob fetched cold (streamed, 200), then its `GET` and `HEAD` once cached: distribution 2.8
 * stores what it streamed after the client's last byte, so a `GET` right after may still be
 * streamed from the upstream; the first one that is not, within a deadline, is the answer
 * (`wait`; without it, the first one).
 */
async function coldThenCached(
  base: string,
  digest: string,
  wait = true,
): Promise<{ cold: number; get: { status: number; location?: string }; head: { status: number; location?: string } }> {
  const url = `${base}/v2/library/busybox/blobs/${digest}`;
  const cold = (await request(url, 'GET')).status;
  let get = await request(url, 'GET');
  const deadline = Date.now() + 30_000;
  while (wait && get.status === 200 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
    get = await request(url, 'GET');
  }
  return { cold, get, head: await request(url, 'HEAD') };
}

const middlewareYaml = (name: string, options: Record<string, string>): string[] => [
  'middleware:',
  '  storage:',
  `    - name: ${name}`,
  '      options:',
  ...Object.entries(options).map(([k, v]) => `        ${k}: ${v}`),
];

describeInterop('storage middleware, as distribution 2.8', () => {
  let upstream: DistributionProcess;
  let dir: string;
  const image = buildImage({ layers: [300 * 1024 + 7, 4096], seed: 'storage-middleware' });
  const blob = image.layers[0]!.digest;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'storage-middleware-'));
    upstream = await startDistribution();
    await pushImage(upstream.hostPort, 'library/busybox:latest', image);
  }, 120_000);

  afterAll(async () => {
    await upstream?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  test('redirect: a cached blob GET and HEAD answer 307 to baseurl + its storage path, as distribution 2.8', async () => {
    const extra = middlewareYaml('redirect', { baseurl: 'https://blobs.example.com:8443' });
    const official = await startDistribution({ proxy: { remoteurl: upstream.url }, extra });
    const mirror = await startMirror(upstream.url, { extraYaml: extra.join('\n') });
    try {
      const theirs = await coldThenCached(official.url, blob);
      const ours = await coldThenCached(mirror.url, blob);
      expect(ours).toEqual(theirs);
      expect(theirs).toEqual({
        cold: 200,
        get: { status: 307, location: `https://blobs.example.com:8443/${V2}/blobs/sha256/${hex(blob).slice(0, 2)}/${hex(blob)}/data` },
        head: { status: 307, location: `https://blobs.example.com:8443/${V2}/blobs/sha256/${hex(blob).slice(0, 2)}/${hex(blob)}/data` },
      });
    } finally {
      await mirror.close();
      await official.destroy();
    }
    // storage.redirect.disable turns it off, as distribution's blob server does.
    const streamed = await startMirror(upstream.url, { extraYaml: [...extra, 'storage:', '  redirect:', '    disable: true'].join('\n') });
    try {
      expect((await coldThenCached(streamed.url, blob, false)).get).toEqual({ status: 200, location: undefined });
    } finally {
      await streamed.close();
    }
  }, 120_000);

  describe('on S3 (Ceph RGW)', () => {
    let ceph: CephEndpoint;

    beforeAll(async () => {
      ceph = await sharedCeph();
    }, 180_000);

    test('cloudfront: the object key under baseurl, signed with the canned policy exactly as distribution 2.8 signs it', async () => {
      const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
      const keyPath = join(dir, 'cloudfront.pem');
      writeFileSync(keyPath, privateKey.export({ type: 'pkcs1', format: 'pem' }));
      // A bucket each, so that each one's first GET is cold: the keys, and so the URLs, are the same.
      const storage = async (name: string): Promise<string[]> => s3StorageYaml(s3Parameters(ceph, await createBucket(ceph, name)));
      const extra = middlewareYaml('cloudfront', {
        baseurl: 'd111111abcdef8.cloudfront.net',
        privatekey: keyPath,
        keypairid: 'K2JCJMDEHXQW5F',
        duration: '1000s',
      });
      process.env.REGISTRY_LOG_LEVEL = 'debug';
      const official = await startDistribution({ proxy: { remoteurl: upstream.url }, storage: await storage('cloudfront-theirs'), extra });
      delete process.env.REGISTRY_LOG_LEVEL;
      const mirror = await startMirror(upstream.url, { storage: await storage('cloudfront-ours'), extraYaml: extra.join('\n') });
      try {
        const started = Math.floor(Date.now() / 1000);
        process.stderr.write('DEBUGLOGS\n');
        const theirs = await coldThenCached(official.url, blob);
        const ours = await coldThenCached(mirror.url, blob);
        const ended = Math.ceil(Date.now() / 1000);
        const resource = `https://d111111abcdef8.cloudfront.net/registry/${V2}/blobs/sha256/${hex(blob).slice(0, 2)}/${hex(blob)}/data`;
        const signed = (location: string | undefined): { resource: string; expires: number; signature: string; query: string[] } => {
          const u = new URL(location!);
          return {
            resource: `${u.origin}${u.pathname}`,
            expires: Number(u.searchParams.get('Expires')),
            signature: u.searchParams.get('Signature')!,
            query: [...u.searchParams.keys()],
          };
        };
        for (const [who, answers] of [
          ['distribution', theirs],
          ['ours', ours],
        ] as const) {
          expect({ who, cold: answers.cold, get: answers.get.status, head: answers.head.status }).toEqual({ who, cold: 200, get: 307, head: 307 });
          for (const location of [answers.get.location, answers.head.location]) {
            const s = signed(location);
            expect({ who, resource: s.resource, query: s.query }).toEqual({ who, resource, query: ['Expires', 'Signature', 'Key-Pair-Id'] });
            expect(new URL(location!).searchParams.get('Key-Pair-Id')).toBe('K2JCJMDEHXQW5F');
            expect(s.expires).toBeGreaterThanOrEqual(started + 1000);
            expect(s.expires).toBeLessThanOrEqual(ended + 1000);
            // The canned policy, as CloudFront checks it.
            const policy = JSON.stringify({ Statement: [{ Resource: s.resource, Condition: { DateLessThan: { 'AWS:EpochTime': s.expires } } }] });
            const raw = Buffer.from(s.signature.replace(/-/g, '+').replace(/_/g, '=').replace(/~/g, '/'), 'base64');
            expect({ who, verified: createVerify('RSA-SHA1').update(policy).verify(createPublicKey(privateKey), raw) }).toEqual({ who, verified: true });
          }
        }
        // RSA PKCS #1 v1.5 signatures are deterministic: signed for distribution's second, our URL
        // is distribution's, byte for byte.
        const t = signed(theirs.get.location);
        expect(signCloudFront(resource, t.expires * 1000, { privatekey: privateKey, keypairid: 'K2JCJMDEHXQW5F' })).toBe(theirs.get.location);
      } finally {
        (await import('node:fs')).writeFileSync('/tmp/exp/official.log', official.logs());
        await mirror.close();
        await official.destroy();
      }
    }, 180_000);

    test('rewrite: the presigned gateway URL with the scheme and host replaced and a path prefix trimmed', async () => {
      const bucket = await createBucket(ceph, 'rewrite');
      const storage = s3StorageYaml(s3Parameters(ceph, bucket));
      const plain = await startMirror(upstream.url, { storage });
      let presigned: URL;
      try {
        presigned = new URL((await coldThenCached(plain.url, blob)).get.location!);
      } finally {
        await plain.close({ keepRoot: true });
      }
      const extra = middlewareYaml('rewrite', { scheme: 'https', host: 'blobs.example.com', trimpathprefix: `/${bucket}` });
      const mirror = await startMirror(upstream.url, { storage, extraYaml: extra.join('\n') });
      try {
        const { get } = await coldThenCached(mirror.url, blob);
        expect(get.status).toBe(307);
        const rewritten = new URL(get.location!);
        expect(rewritten.origin).toBe('https://blobs.example.com');
        expect(rewritten.pathname).toBe(presigned.pathname.slice(`/${bucket}`.length));
        expect(rewritten.pathname).toBe(`/registry/${V2}/blobs/sha256/${hex(blob).slice(0, 2)}/${hex(blob)}/data`);
        expect(rewritten.searchParams.get('X-Amz-Expires')).toBe('1200');
      } finally {
        await mirror.close();
      }
    }, 120_000);
  });
});
