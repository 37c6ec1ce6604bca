/**
 * One Ceph gateway for a whole test run: the first suite that asks starts it, the others (in any
 * jest worker) reuse it, each with buckets of its own. jest's global set-up (spec/global-setup.js)
 * names a directory in `REGISTRY_TEST_CEPH_DIR` where the gateway's address is published, and its
 * teardown kills the daemons; a watchdog kills them too if the run dies without teardown. Outside
 * such a run (one suite under another runner) the suite starts a gateway of its own.
 */
import { spawn } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { open, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { killGroup, startCeph, type CephEndpoint } from './ceph.js';
import { outliveFile } from './children.js';

let mine: Promise<CephEndpoint> | undefined;

/** The run's gateway, started on first use. */
export function sharedCeph(): Promise<CephEndpoint> {
  return (mine ??= acquire());
}

async function acquire(): Promise<CephEndpoint> {
  const shared = process.env.REGISTRY_TEST_CEPH_DIR;
  if (!shared) {
    const cluster = await startCeph();
    for (const pid of cluster.pgids) outliveFile(pid);
    watchdog(process.pid, cluster);
    process.once('exit', () => {
      for (const g of cluster.pgids) killGroup(g);
      rmSync(cluster.dir, { recursive: true, force: true });
    });
    return cluster;
  }
  const published = join(shared, 'cluster.json');
  const failed = join(shared, 'failed');
  const deadline = Date.now() + 120_000;
  for (;;) {
    if (existsSync(published)) return JSON.parse(await readFile(published, 'utf8')) as CephEndpoint;
    if (existsSync(failed)) throw new Error(await readFile(failed, 'utf8'));
    const claim = await open(join(shared, 'starting'), 'wx').catch(() => undefined);
    if (claim) {
      await claim.close();
      try {
        const { stop: _stop, ...endpoint } = await startCeph();
        // The run's files share it: the file that happened to start it does not end it.
        for (const pid of endpoint.pgids) outliveFile(pid);
        watchdog(Number(process.env.REGISTRY_TEST_JEST_PID) || process.pid, endpoint);
        await writeFile(`${published}.tmp`, JSON.stringify(endpoint));
        await rename(`${published}.tmp`, published);
        return endpoint;
      } catch (err) {
        await writeFile(failed, (err as Error).message);
        throw err;
      }
    }
    if (Date.now() > deadline) throw new Error('timed out waiting for another test worker to start the Ceph gateway');
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Kills the daemons and removes their directory once process `pid` is gone, however it ended. */
function watchdog(pid: number, cluster: CephEndpoint): void {
  const groups = cluster.pgids.map((g) => `-${g}`).join(' ');
  const script = `while kill -0 ${pid} 2>/dev/null; do sleep 2; done; kill -9 -- ${groups} 2>/dev/null; rm -rf '${cluster.dir}'`;
  spawn('sh', ['-c', script], { detached: true, stdio: 'ignore' }).unref();
}
