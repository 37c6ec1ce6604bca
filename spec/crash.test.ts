/**
 * Crash safety: the registry process is killed with SIGKILL at random points of a large cold pull,
 * several times. After each restart every stored blob hashes to its name, no link points at missing
 * data, no temporary file is left, and finally the pull completes with the right bytes.
 */
import { createHash, randomBytes, randomInt } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startFakeUpstream, seedImage, type FakeUpstream } from './helpers/fake-upstream.js';
import { startRegistry, type Replica } from './helpers/replica.js';
import { until } from './helpers/until.js';

const V2 = 'docker/registry/v2';

/**
 * Every problem found in the storage root: blobs that do not hash to their name, dangling links,
 * leftovers. `.tmp` may hold only the (empty, when idle) directory of the live process `livePid`.
 */
function verifyRoot(root: string, livePid?: number): string[] {
  const problems: string[] = [];
  const blobsDir = join(root, V2, 'blobs/sha256');
  const present = new Set<string>();
  if (existsSync(blobsDir)) {
    for (const prefix of readdirSync(blobsDir)) {
      for (const hex of readdirSync(join(blobsDir, prefix))) {
        const data = join(blobsDir, prefix, hex, 'data');
        if (!existsSync(data)) continue;
        const actual = createHash('sha256').update(readFileSync(data)).digest('hex');
        if (actual !== hex) problems.push(`blob ${hex} hashes to ${actual}`);
        present.add(`sha256:${hex}`);
      }
    }
  }
  const walk = (dir: string): void => {
    if (!existsSync(dir)) return;
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, entry.name);
      if (entry.isDirectory()) walk(p);
      else if (entry.name === 'link') {
        const target = readFileSync(p, 'utf8');
        if (!present.has(target)) problems.push(`${p} points at missing ${target}`);
      }
    }
  };
  walk(join(root, V2, 'repositories'));
  const tmp = join(root, '.tmp');
  for (const entry of existsSync(tmp) ? readdirSync(tmp) : []) {
    const own = livePid !== undefined && entry.includes(`-${livePid}-`);
    if (!own) problems.push(`.tmp holds ${entry}`);
    else if (readdirSync(join(tmp, entry)).length > 0) problems.push(`.tmp/${entry} holds ${readdirSync(join(tmp, entry)).join(', ')}`);
  }
  return problems;
}

/**
 * Start-up serves at once and cleans dead processes' temporary directories in the background: the
 * root verifies clean once that is done (a deadline, not a moment).
 */
async function verifiesClean(root: string, livePid: number): Promise<void> {
  await until(() => verifyRoot(root, livePid).length === 0, 'a clean root after the restart', 20_000).catch(() => undefined);
  expect(verifyRoot(root, livePid)).toEqual([]);
}

/** Downloads `url` fully; resolves with the bytes, or undefined when the transfer broke. */
function download(url: string): Promise<Buffer | undefined> {
  return new Promise((done) => {
    const req = http.get(url, { agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => done(res.complete && res.statusCode === 200 ? Buffer.concat(chunks) : undefined));
      res.on('error', () => done(undefined));
    });
    req.on('error', () => done(undefined));
  });
}

describe('crash safety', () => {
  let upstream: FakeUpstream;
  let dir: string;
  let child: Replica | undefined;
  beforeEach(async () => {
    upstream = await startFakeUpstream();
    dir = await mkdtemp(join(tmpdir(), 'crash-'));
  });
  afterEach(async () => {
    await child?.kill();
    child = undefined;
    await upstream.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('SIGKILL at random points of a cold pull, four times: the cache verifies clean and the pull completes', async () => {
    const big = randomBytes(6 * 1024 * 1024);
    const img = seedImage(upstream, 'library/big', 'latest', [big, randomBytes(300_000)]);
    const root = join(dir, 'root');
    const config = join(dir, 'config.yml');
    await writeFile(
      config,
      [
        'version: 0.1',
        'log:',
        // info: the address the registry listens on is read from its log.
        '  level: info',
        'storage:',
        '  filesystem:',
        `    rootdirectory: ${root}`,
        '  delete:',
        '    enabled: true',
        'http:',
        // Port 0, read from each start's log: the same port again after a SIGKILL may be taken meanwhile.
        '  addr: 127.0.0.1:0',
        'proxy:',
        `  remoteurl: ${upstream.url}`,
        '',
      ].join('\n'),
    );
    const base = (): string => `${child!.url}/v2/library/big`;
    for (let round = 0; round < 4; round++) {
      // A slow upstream keeps the transfer in flight long enough to be interrupted mid-body.
      upstream.fault(/^GET \/v2\/library\/big\/blobs\//, { kind: 'slow', bytesPerTick: 512 * 1024, tickMs: 20 });
      child = await startRegistry(config);
      await verifiesClean(root, child.pid);
      const pulls = [
        download(`${base()}/manifests/latest`),
        ...img.layers.map((d) => download(`${base()}/blobs/${d}`)),
        download(`${base()}/blobs/${img.config}`),
      ];
      await new Promise((r) => setTimeout(r, randomInt(30, 300)));
      await child.kill();
      await Promise.all(pulls);
      // Only what was verified may be on disk; unfinished temporary files are cleaned at the next start.
      expect(verifyRoot(root).filter((p) => !p.startsWith('.tmp'))).toEqual([]);
      upstream.clearFaults();
    }
    child = await startRegistry(config);
    try {
      await verifiesClean(root, child.pid);
      const bytes = await download(`${base()}/blobs/${img.layers[0]}`);
      expect(bytes?.equals(big)).toBe(true);
      for (const d of [img.config, img.layers[1]!]) expect(await download(`${base()}/blobs/${d}`)).toBeDefined();
      expect(await download(`${base()}/manifests/${img.manifest}`)).toBeDefined();
      await verifiesClean(root, child.pid);
    } finally {
      await child.stop();
    }
  }, 180_000);
});
