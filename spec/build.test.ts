/**
 * The build (`npm run build`): `bin/registry` runs the bundle (dist/registry.js), whose
 * configuration validator was compiled ahead of time (build/bundle.mjs). The bundle must answer as
 * the modules do: the same validation messages, the same defaults, the lazily loaded parts there.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { loadConfig } from '../lib/config/load.js';

const dist = (file: string): string => resolve('dist', file);

describe('the bundled registry', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'build-test-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test('is built, and not older than the modules it was built from (npm run build)', () => {
    expect(statSync(dist('registry.js')).mtimeMs).toBeGreaterThanOrEqual(statSync(dist('cli.js')).mtimeMs);
  });

  const invalid = [
    ['proxy:\n  remoteurl: http://u\n  ttl: 7 days'],
    ['proxy:\n  remoteurl: http://u\n  maxsize: lots'],
    ['proxy:\n  remoteurl: http://u\n  hosted: ["Not/A/Name"]'],
    ['proxy:\n  remoteurl: http://u\n  immutabletags:\n    exclude: ["(unclosed"]'],
    ['proxy:\n  remoteurl: http://u\n  upstreams:\n    "bad host!":\n      remoteurl: http://x'],
    ['storage:\n  filesystem:\n    rootdirectory: ""\nproxy:\n  remoteurl: http://u'],
    ['log:\n  level: loud\nproxy:\n  remoteurl: http://u'],
    ['auth:\n  htpasswd:\n    realm: r\n  silly:\n    realm: r\n    service: s\nproxy:\n  remoteurl: http://u'],
  ];
  test.each(invalid)('rejects %j with the message the modules give', (text) => {
    const file = join(dir, 'config.yml');
    writeFileSync(file, `version: 0.1\n${text}\n`);
    let expected = '';
    try {
      loadConfig({ path: file });
    } catch (err) {
      expected = (err as Error).message;
    }
    expect(expected).not.toBe('');
    // Run the bundle itself (bin/registry would fall back to dist/cli.js if it were stale).
    const run = spawnSync(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `import(${JSON.stringify(dist('registry.js'))}).then((m) => m.main(['serve', ${JSON.stringify(file)}])).then((c) => process.exit(c))`,
      ],
      { encoding: 'utf8' },
    );
    expect(run.status).toBe(1);
    expect(run.stderr).toBe(`registry: ${expected}\n`);
  });

  test('the precompiled validator fills the same defaults as the compiled one', async () => {
    const { validateConfig: precompiled } = (await import(dist('config/config-validator.standalone.js'))) as { validateConfig: (t: unknown) => boolean };
    const { validateConfig: compiled } = await import('../lib/config/config-validator.js');
    const tree = (): Record<string, unknown> => ({
      version: 0.1,
      proxy: { remoteurl: 'http://u', upstreams: { 'ghcr.io': { remoteurl: 'https://ghcr.io' } } },
      health: { http: [{ uri: 'http://h' }] },
    });
    const a = tree();
    const b = tree();
    expect(precompiled(a)).toBe(true);
    expect(compiled(b)).toBe(true);
    expect(a).toEqual(b);
    expect(a).toMatchObject({ storage: { delete: { enabled: false } }, proxy: { ttl: '168h', dockerhub: 'auto' } });
  });

  test('bin/registry runs it: --version answers', () => {
    expect(execFileSync(process.execPath, ['bin/registry', '--version'], { encoding: 'utf8' })).toMatch(/\d+\.\d+\.\d+/);
  });
});
