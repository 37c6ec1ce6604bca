/** The temporary files under a storage root's `.tmp` (in every process's directory), for leftover checks. */
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';

/** Paths of files (not directories) under `<root>/.tmp`, relative to it. */
export async function temporaryFiles(root: string): Promise<string[]> {
  const found: string[] = [];
  const walk = async (dir: string, rel: string): Promise<void> => {
    const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
    for (const e of entries) {
      if (e.isDirectory()) await walk(join(dir, e.name), `${rel}${e.name}/`);
      else found.push(`${rel}${e.name}`);
    }
  };
  await walk(join(root, '.tmp'), '');
  return found;
}
