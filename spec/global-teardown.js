// jest global teardown: kills the shared Ceph gateway if a suite started one (SIGKILL: its data is
// in RAM) and removes its directories.
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';

export default function globalTeardown() {
  const shared = process.env.REGISTRY_TEST_CEPH_DIR;
  if (!shared) return;
  const published = join(shared, 'cluster.json');
  if (existsSync(published)) {
    const cluster = JSON.parse(readFileSync(published, 'utf8'));
    for (const pgid of cluster.pgids) {
      try {
        process.kill(-pgid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
    rmSync(cluster.dir, { recursive: true, force: true });
  }
  rmSync(shared, { recursive: true, force: true });
}
