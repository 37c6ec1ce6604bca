/**
 * The cache page in a real browser (Debian's Chromium driven by playwright-core), after real pulls
 * (skopeo through the mirror from Debian's docker-registry), behind htpasswd client auth: what a
 * person would see, the login it needs, and distribution's empty 200 for everyone else.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import request from 'supertest';
import { formatBytes } from '../../lib/config/size.js';
import { describeInterop } from '../helpers/interop.js';
import { buildImage, buildIndex, type BuiltImage } from '../helpers/images.js';
import { startMirror, type TestMirror } from '../helpers/mirror.js';
import { pullImage, pushImage } from '../helpers/skopeo.js';
import { startDistribution, type DistributionProcess } from '../helpers/upstream-registry.js';

const CHROMIUM = process.env.CHROMIUM_BIN ?? '/usr/bin/chromium';
const imageBytes = (img: BuiltImage): number => img.config.size + img.layers.reduce((n, l) => n + l.size, 0);

describeInterop(
  'the cache page in a browser',
  () => {
    let dir: string;
    let upstream: DistributionProcess;
    let mirror: TestMirror;
    let browser: Browser;
    const alpine = buildImage({ layers: [300_000, 5_000], seed: 'page-alpine' });
    const app = buildIndex([
      buildImage({ layers: [120_000], seed: 'page-amd64' }),
      buildImage({ layers: [110_000], seed: 'page-arm64', platform: { os: 'linux', architecture: 'arm64' } }),
    ]);

    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), 'cache-page-'));
      upstream = await startDistribution();
      await pushImage(upstream.hostPort, 'library/alpine:3.19', alpine);
      await pushImage(upstream.hostPort, 'team/app:1.0', app, { all: true });
      const htpasswd = join(dir, 'htpasswd');
      await writeFile(htpasswd, execFileSync('htpasswd', ['-Bbn', 'ops', 'secret'], { encoding: 'utf8' }));
      mirror = await startMirror(upstream.url, { proxyYaml: 'ttl: 24h', extraYaml: `auth:\n  htpasswd:\n    realm: mirror\n    path: ${htpasswd}` });
      const hostPort = new URL(mirror.url).host;
      await pullImage(hostPort, 'library/alpine:3.19', { creds: 'ops:secret' });
      await pullImage(hostPort, 'library/alpine:3.19', { creds: 'ops:secret' });
      await pullImage(hostPort, 'team/app:1.0', { creds: 'ops:secret', all: true });
      browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
    }, 120_000);
    afterAll(async () => {
      await browser?.close();
      await mirror?.close();
      await upstream?.destroy();
      if (dir) await rm(dir, { recursive: true, force: true });
    });

    test('after pulls, a logged-in person sees the repositories, tags, sizes, hit ratio and upstream', async () => {
      const context = await browser.newContext({ httpCredentials: { username: 'ops', password: 'secret' } });
      try {
        const page = await context.newPage();
        const res = await page.goto(`${mirror.url}/`);
        expect(res?.status()).toBe(200);
        expect(await page.title()).toBe('Registry mirror cache');

        const rows = page.locator('#images tbody tr');
        const alpineRow = rows.filter({ hasText: 'library/alpine' });
        await expect(alpineRow.locator('td').allInnerTexts()).resolves.toEqual([
          'library/alpine',
          '3.19',
          'image',
          formatBytes(imageBytes(alpine)),
          alpine.manifest.digest.slice(0, 19),
          expect.stringMatching(/ago|now/),
          expect.stringMatching(/^in (23|24) hours$/),
        ]);
        const appCells = await rows.filter({ hasText: 'team/app' }).locator('td').allInnerTexts();
        expect(appCells.slice(0, 4)).toEqual(['team/app', '1.0', 'index (2 platforms)', formatBytes(app.images.reduce((n, i) => n + imageBytes(i), 0))]);

        const summary = page.getByRole('region', { name: 'Summary' });
        // The second pull of alpine was served from the cache: some hits, fewer than the requests.
        await expect(summary.innerText()).resolves.toMatch(/Hit ratio\s+\d+\.\d %/);
        await expect(summary.innerText()).resolves.toMatch(/Bytes saved\s+\d/);
        const upstreamRow = page.locator('#upstreams tbody tr').first();
        await expect(upstreamRow.innerText()).resolves.toContain('reachable');
        await expect(upstreamRow.innerText()).resolves.toContain(upstream.url);

        await page.getByLabel('Filter').fill('alpine');
        expect(await rows.filter({ hasText: 'team/app' }).isHidden()).toBe(true);
        expect(await alpineRow.isVisible()).toBe(true);
      } finally {
        await context.close();
      }
    });

    test('without or with wrong credentials the browser gets the Basic challenge; probes without Accept: text/html get the empty 200', async () => {
      const anonymous = await browser.newContext();
      try {
        // Headless Chromium cannot show the login prompt a Basic challenge asks for: it fails the navigation.
        await expect((await anonymous.newPage()).goto(`${mirror.url}/`)).rejects.toThrow(/ERR_INVALID_AUTH_CREDENTIALS/);
      } finally {
        await anonymous.close();
      }
      const wrong = await browser.newContext({ httpCredentials: { username: 'ops', password: 'wrong' } });
      try {
        const page = await wrong.newPage();
        const res = await page.goto(`${mirror.url}/`);
        expect(res?.status()).toBe(401);
        expect(res?.headers()['www-authenticate']).toBe('Basic realm="mirror"');
        expect(await page.locator('#images').count()).toBe(0);
      } finally {
        await wrong.close();
      }
      const challenge = await request(mirror.url).get('/').set('Accept', 'text/html,application/xhtml+xml');
      expect(challenge.status).toBe(401);
      expect(challenge.headers['www-authenticate']).toBe('Basic realm="mirror"');
      const probe = await request(mirror.url).get('/');
      expect(probe.status).toBe(200);
      expect(probe.text).toBe('');
    });

    test('http.cachepage: false gives browsers the empty 200 too', async () => {
      const plain = await startMirror(upstream.url, { httpYaml: 'addr: 127.0.0.1:0\ncachepage: false' });
      const context = await browser.newContext();
      try {
        const page = await context.newPage();
        const res = await page.goto(`${plain.url}/`);
        expect(res?.status()).toBe(200);
        expect(await res?.text()).toBe('');
      } finally {
        await context.close();
        await plain.close();
      }
    });
  },
  { what: 'chromium (Debian package)', available: () => existsSync(CHROMIUM) },
);
