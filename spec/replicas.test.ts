/**
 * Several mirror processes on one storage root behave as one cache: one upstream fetch per blob
 * whichever replicas the clients pick, a replica dying mid-fetch costs at most one more fetch, and
 * one schedule expires content once with the state file valid throughout.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { seedImage, startFakeUpstream, type FakeUpstream } from './helpers/fake-upstream.js';
import { startReplica, type Replica } from './helpers/replica.js';
import { until } from './helpers/until.js';

const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const MiB = 1024 * 1024;
const ACCEPT = 'application/vnd.oci.image.manifest.v1+json';

/** GETs `url`; resolves with the status and body, `complete` false when the transfer broke. */
function get(url: string, accept?: string): Promise<{ status: number; body: Buffer; complete: boolean }> {
  return new Promise((resolve) => {
    const req = http.get(url, { agent: false, headers: accept ? { accept } : {} }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, body: Buffer.concat(chunks), complete: res.complete }));
      res.on('error', () => resolve({ status: res.statusCode!, body: Buffer.concat(chunks), complete: false }));
    });
    req.on('error', () => resolve({ status: 0, body: Buffer.alloc(0), complete: false }));
  });
}

const pick = <T>(items: T[]): T => items[Math.floor(Math.random() * items.length)]!;

describe('replicas on one storage root', () => {
  let upstream: FakeUpstream;
  let dir: string;
  let root: string;
  let replicas: Replica[] = [];

  beforeEach(async () => {
    upstream = await startFakeUpstream();
    dir = await mkdtemp(join(tmpdir(), 'replicas-'));
    root = join(dir, 'root');
  });
  afterEach(async () => {
    await Promise.all(replicas.map((r) => r.stop()));
    replicas = [];
    await upstream.close();
    await rm(dir, { recursive: true, force: true });
  });

  const start = async (n: number, proxyYaml: string[] = []): Promise<void> => {
    for (let i = 0; i < n; i++) replicas.push(await startReplica(dir, root, upstream.url, ['lockstale: 2s', ...proxyYaml]));
  };

  test('30 concurrent cold pulls spread over 3 replicas: one upstream GET per blob, every pull correct', async () => {
    await start(3);
    const img = seedImage(upstream, 'library/app', 'v1', [randomBytes(3 * MiB), randomBytes(MiB), randomBytes(200_000)]);
    // Slow answers keep the pulls overlapping.
    upstream.fault(/^GET \/v2\/library\/app\/blobs\//, { kind: 'delay', ms: 300 });
    const pull = async (): Promise<string[]> => {
      const manifest = await get(`${pick(replicas).url}/v2/library/app/manifests/v1`, ACCEPT);
      expect(manifest.status).toBe(200);
      const doc = JSON.parse(manifest.body.toString()) as { config: { digest: string }; layers: { digest: string }[] };
      const digests = [doc.config.digest, ...doc.layers.map((l) => l.digest)];
      const blobs = await Promise.all(digests.map((d) => get(`${pick(replicas).url}/v2/library/app/blobs/${d}`)));
      return blobs.map((b, i) => (b.status === 200 && b.complete && sha(b.body) === digests[i] ? 'ok' : `bad ${digests[i]} (${b.status})`));
    };
    const results = await Promise.all(Array.from({ length: 30 }, pull));
    for (const r of results) expect(r).toEqual(['ok', 'ok', 'ok', 'ok']);
    for (const d of [img.config, ...img.layers]) expect(upstream.count(new RegExp(`^GET /v2/library/app/blobs/${d}$`))).toBe(1);
    expect(replicas.every((r) => r.alive())).toBe(true);
  });

  test('the replica fetching a large blob is killed: the others\' clients still get it, with at most one more upstream fetch', async () => {
    await start(3);
    const big = randomBytes(24 * MiB);
    const digest = upstream.addBlob('library/big', big);
    upstream.fault(/^GET \/v2\/library\/big\/blobs\//, { kind: 'slow', bytesPerTick: 512 * 1024, tickMs: 50 }, 1);
    const url = (r: Replica): string => `${r.url}/v2/library/big/blobs/${digest}`;
    const first = get(url(replicas[0]!));
    await until(() => upstream.count(/^GET \/v2\/library\/big\/blobs\//) === 1, 'the first fetch');
    await new Promise((r) => setTimeout(r, 300));
    const others = [replicas[1]!, replicas[2]!, replicas[1]!, replicas[2]!].map((r) => get(url(r)));
    await new Promise((r) => setTimeout(r, 300));
    await replicas[0]!.kill();
    expect((await first).complete).toBe(false);
    for (const res of await Promise.all(others)) {
      expect(res.status).toBe(200);
      expect(res.complete).toBe(true);
      expect(sha(res.body)).toBe(digest);
    }
    expect(upstream.count(/^GET \/v2\/library\/big\/blobs\//)).toBe(2);
  }, 60_000);
});
