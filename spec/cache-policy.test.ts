/**
 * The cache's policies, decided once (lib/cache-policy.ts) and acted on by the expiry schedule: the
 * TTL of each stored name, hosted names excluded everywhere (a hit on one extends nothing), and
 * "deletes disabled" meaning no expiry and no cap, said once each.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { decideCachePolicy } from '../lib/cache-policy.js';
import { loadConfig } from '../lib/config/load.js';
import { createLogger } from '../lib/log/logger.js';
import { CacheLifetime } from '../lib/expiry/cache-lifetime.js';
import { BlobStore } from '../lib/storage/blob-store.js';
import { FilesystemDriver } from '../lib/storage/filesystem.js';
import { RepositoryStore } from '../lib/storage/repository-store.js';

const proxyOf = (yaml: string) => loadConfig({ text: `proxy:\n  remoteurl: https://registry-1.docker.io\n${yaml}`, env: {} }).config.proxy!;
const H = (c: string): string => `sha256:${c.repeat(64)}`;

describe('cache policy', () => {
  test("the TTL of a stored name is its upstream's; hosted names never expire", () => {
    const warnings: string[] = [];
    const p = decideCachePolicy(
      proxyOf(
        '  ttl: 2h\n  hosted: [internal/]\n  upstreams:\n    ghcr.io:\n      remoteurl: https://ghcr.io\n      ttl: 1h\n    quay.io:\n      remoteurl: https://quay.io\n      ttl: 0\n',
      ),
      true,
      (w) => warnings.push(w),
    );
    expect(p.ttlFor('library/busybox')).toBe(2 * 3600_000);
    expect(p.ttlFor('ghcr.io/org/app')).toBe(3600_000);
    expect(p.ttlFor('quay.io/org/app')).toBe(0);
    expect(p.ttlFor('internal/app')).toBe(0);
    expect(p.ttlFor('internal')).toBe(0);
    expect([p.expires, p.touchOnHit, p.isHosted('internal/app'), p.isHosted('internals/app')]).toEqual([true, true, true, false]);
    expect(warnings).toEqual([]);
  });

  test('deletes disabled: nothing expires and no cap is kept, each said once', () => {
    const warnings: string[] = [];
    const p = decideCachePolicy(proxyOf('  ttl: 1h\n  maxsize: 1GB\n'), false, (w) => warnings.push(w));
    expect([p.expires, p.maxBytes]).toEqual([false, undefined]);
    expect(warnings).toEqual([
      'proxy.ttl is set but storage.delete.enabled is false: cached content will never expire',
      'proxy.maxsize is set but storage.delete.enabled is false: the cache will not be kept under its size cap',
    ]);
    expect(decideCachePolicy(proxyOf('  ttl: 0\n  maxsize: 1GB\n'), true, () => undefined)).toMatchObject({ expires: false, maxBytes: 1e9 });
  });

  test('a hit on a hosted name extends nothing, even an entry the state file holds for it; other hits extend', async () => {
    const root = await mkdtemp(join(tmpdir(), 'policy-'));
    const statePath = join(root, 'scheduler-state.json');
    const soon = new Date(Date.now() + 3600_000).toISOString();
    const entry = (key: string) => ({ Key: key, ExpiryData: soon, EntryType: 1 });
    await writeFile(
      statePath,
      JSON.stringify({ [`internal/app@${H('a')}`]: entry(`internal/app@${H('a')}`), [`library/x@${H('b')}`]: entry(`library/x@${H('b')}`) }),
    );
    const policy = decideCachePolicy(proxyOf('  ttl: 168h\n  hosted: [internal/]\n'), true, () => undefined);
    const driver = new FilesystemDriver(root);
    const lifetime = new CacheLifetime({
      driver,
      blobs: new BlobStore(driver),
      repository: (name) => new RepositoryStore(driver, name),
      logger: createLogger({ level: 'error', formatter: 'text', fields: {}, accesslog: { disabled: true } }, new PassThrough()),
      statePath,
      expires: policy.expires,
      ttlFor: policy.ttlFor,
      touchOnHit: policy.touchOnHit,
      exclude: policy.isHosted,
    });
    try {
      await lifetime.start();
      lifetime.touch('manifest', 'internal/app', H('a'));
      lifetime.touch('manifest', 'library/x', H('b'));
      lifetime.schedule('manifest', 'internal/other', H('c'));
      expect(lifetime.expiryOf('internal/app', H('a'))!.toISOString()).toBe(soon);
      expect(lifetime.expiryOf('library/x', H('b'))!.getTime()).toBeGreaterThan(Date.now() + 100 * 3600_000);
      expect(lifetime.expiryOf('internal/other', H('c'))).toBeUndefined();
    } finally {
      await lifetime.stop();
      await rm(root, { recursive: true, force: true });
    }
  });
});
