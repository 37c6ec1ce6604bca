/**
 * Checks a cache's storage (distribution's filesystem layout, which both contenders use) file by
 * file: every blob's data hashes to the digest it is stored under, and every link file (layer,
 * manifest revision, tag) names a blob whose data is there.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';

/** What the check found. */
export interface StorageReport {
  readonly blobs: number;
  /** Blobs whose data does not hash to their name (`sha256:... (size)`). */
  readonly badBlobs: string[];
  readonly links: number;
  /** Links naming a digest with no data (`path -> digest`), or that are not a digest at all (links to bad data count as bad blobs). */
  readonly danglingLinks: string[];
}

async function entries(dir: string): Promise<string[]> {
  return readdir(dir).catch(() => []);
}

function hashFile(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    createReadStream(path)
      .on('data', (c) => hash.update(c))
      .once('end', () => resolve(hash.digest('hex')))
      .once('error', reject);
  });
}

/** Every `link` file under `dir`. */
async function linkFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true }).catch(() => [])) {
      const p = join(d, e.name);
      if (e.isDirectory()) {
        // Upload sessions hold no links to check.
        if (e.name !== '_uploads') await walk(p);
      } else if (e.name === 'link') out.push(p);
    }
  };
  await walk(dir);
  return out;
}

/** Checks the storage under `root` (the `rootdirectory`). */
export async function checkStorage(root: string): Promise<StorageReport> {
  const v2 = join(root, 'docker/registry/v2');
  const blobsDir = join(v2, 'blobs/sha256');
  const present = new Set<string>();
  const badBlobs: string[] = [];
  let blobs = 0;
  for (const prefix of await entries(blobsDir)) {
    for (const hex of await entries(join(blobsDir, prefix))) {
      const data = join(blobsDir, prefix, hex, 'data');
      const actual = await hashFile(data).catch(() => undefined);
      if (actual === undefined) continue;
      blobs++;
      present.add(`sha256:${hex}`);
      if (actual !== hex) badBlobs.push(`sha256:${hex}`);
    }
  }
  const danglingLinks: string[] = [];
  const links = await linkFiles(join(v2, 'repositories'));
  for (const link of links) {
    const digest = (await readFile(link, 'utf8').catch(() => '')).trim();
    if (!present.has(digest)) danglingLinks.push(`${link.slice(v2.length + 1)} -> ${digest || '(empty)'}`);
  }
  return { blobs, badBlobs, links: links.length, danglingLinks };
}
