/**
 * A data directory and its scheduler-state.json move between the official registry (Debian's
 * docker-registry 2.8 as a pull-through cache) and ours, both ways, and an expiry the official
 * registry scheduled is carried out by ours.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeInterop } from '../helpers/interop.js';
import { startDistribution, type DistributionProcess } from '../helpers/upstream-registry.js';
import { buildImage } from '../helpers/images.js';
import { pushImage, pullImage } from '../helpers/skopeo.js';
import { startMirror } from '../helpers/mirror.js';
import { until } from '../helpers/until.js';

type State = Record<string, { Key: string; ExpiryData: string; EntryType: number }>;
const V2 = 'docker/registry/v2';
const readState = (root: string): State => JSON.parse(readFileSync(join(root, 'scheduler-state.json'), 'utf8')) as State;

describeInterop('scheduler-state.json shared with the official registry', () => {
  let upstream: DistributionProcess;
  let work: string;
  const image = buildImage({ layers: [50_000, 1000], seed: 'swap' });
  const keys = [image.manifest.digest, image.config.digest, ...image.layers.map((l) => l.digest)].map((d) => `library/swap@${d}`);

  beforeAll(async () => {
    upstream = await startDistribution();
    await pushImage(upstream.hostPort, 'library/swap:latest', image);
    work = await mkdtemp(join(tmpdir(), 'swap-'));
  }, 60_000);
  afterAll(async () => {
    await upstream?.destroy();
    if (work) await rm(work, { recursive: true, force: true });
  });

  test('official → ours: its schedule is loaded and kept, its cache served with the upstream down, its expiries carried out', async () => {
    const root = join(work, 'from-official');
    const official = await startDistribution({ proxy: { remoteurl: upstream.url }, rootDir: root });
    try {
      expect((await pullImage(official.hostPort, 'library/swap:latest')).manifestDigest).toBe(image.manifest.digest);
      // distribution 2.8 writes the state file every 5 s.
      await until(() => existsSync(join(root, 'scheduler-state.json')) && keys.every((k) => k in readState(root)), 'the official state file', 15_000);
    } finally {
      await official.destroy();
    }
    const written = readState(root);
    expect(written[keys[0]!]!.EntryType).toBe(1);
    expect(written[keys[2]!]!.EntryType).toBe(0);

    await upstream.stop();
    try {
      const ours = await startMirror('http://127.0.0.1:1', { root });
      try {
        expect((await pullImage(ours.url.replace('http://', ''), 'library/swap:latest')).manifestDigest).toBe(image.manifest.digest);
      } finally {
        await ours.close({ keepRoot: true });
      }
      const kept = readState(root);
      for (const k of keys) expect(Date.parse(kept[k]!.ExpiryData)).toBeGreaterThanOrEqual(Date.parse(written[k]!.ExpiryData) - 1000);

      // Time passes: the official registry's entries are due. Ours expires them on start-up.
      const due: State = {};
      for (const [k, v] of Object.entries(kept)) due[k] = { ...v, ExpiryData: '2020-01-01T00:00:00Z' };
      writeFileSync(join(root, 'scheduler-state.json'), JSON.stringify(due));
      const later = await startMirror('http://127.0.0.1:1', { root });
      try {
        const revision = join(root, V2, 'repositories/library/swap/_manifests/revisions/sha256', image.manifest.digest.slice(7), 'link');
        const blobs = [image.config, ...image.layers].map((b) => join(root, V2, 'blobs/sha256', b.digest.slice(7, 9), b.digest.slice(7), 'data'));
        // Every entry's expiry finished (its files gone is not enough): the state is written at the
        // close, and an entry whose expiry the stop interrupts is rightly kept for the next start.
        const expired = (k: string): boolean => later.logs().includes(`msg="expired" key=${k}`);
        await until(() => keys.every(expired), 'expiry of every official entry', 20_000);
        expect({ revision: existsSync(revision), blobs: blobs.filter((b) => existsSync(b)) }).toEqual({ revision: false, blobs: [] });
      } finally {
        await later.close({ keepRoot: true });
      }
      expect(Object.keys(readState(root))).toEqual([]);
    } finally {
      await upstream.restart();
    }
  }, 90_000);

  test('ours → official: the official registry starts on our data and state file and serves the cache with the upstream down', async () => {
    const root = join(work, 'from-ours');
    const ours = await startMirror(upstream.url, { root });
    try {
      await pullImage(ours.url.replace('http://', ''), 'library/swap:latest');
    } finally {
      await ours.close({ keepRoot: true });
    }
    const written = readState(root);
    for (const k of keys) expect(written[k]).toBeDefined();

    // The official registry panics when it starts with its upstream down: stop it only afterwards.
    const official = await startDistribution({ proxy: { remoteurl: upstream.url }, rootDir: root });
    await upstream.stop();
    try {
      try {
        expect((await pullImage(official.hostPort, 'library/swap:latest')).manifestDigest).toBe(image.manifest.digest);
        expect(official.logs()).not.toMatch(/panic|error reading scheduler/i);
      } finally {
        await official.destroy();
      }
      // What the official registry left behind is still ours to read.
      const back = await startMirror('http://127.0.0.1:1', { root });
      await back.close({ keepRoot: true });
      expect(back.logs()).not.toMatch(/scheduler state:/);
      for (const k of keys) expect(readState(root)[k]).toBeDefined();
    } finally {
      await upstream.restart();
    }
  }, 90_000);
});
