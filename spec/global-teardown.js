// jest global teardown: kills the shared Ceph gateway if a suite started one (SIGKILL: its data is
// in RAM) and removes its directories; then fails the run if a process a test started
// (spec/helpers/children.ts) is still alive, after killing it.
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';

export default async function globalTeardown() {
  stopCeph();
  const left = await leftAlive();
  if (left.length > 0) throw new Error(`processes started by tests outlived the run (now killed):\n${left.join('\n')}`);
}

function stopCeph() {
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

/** The state and start time of process `pid`, undefined when there is none. */
function stat(pid) {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return { state: fields[0], start: fields[19] };
  } catch {
    return undefined;
  }
}

/**
 * The recorded processes still alive (the same pid and start time, not a zombie) a few seconds
 * after the workers exited (their exit kills what they started), killed.
 */
async function leftAlive() {
  const dir = process.env.REGISTRY_TEST_CHILDREN_DIR;
  if (!dir || !existsSync(dir)) return [];
  const records = readdirSync(dir).map((n) => JSON.parse(readFileSync(join(dir, n), 'utf8')));
  const alive = (r) => {
    const s = stat(r.pid);
    return s !== undefined && s.start === r.start && s.state !== 'Z' && s.state !== 'X';
  };
  let left = records.filter(alive);
  for (let i = 0; i < 50 && left.length > 0; i++) {
    await new Promise((r) => setTimeout(r, 100));
    left = left.filter(alive);
  }
  for (const r of left) {
    try {
      process.kill(r.pid, 'SIGKILL');
    } catch {
      // Gone meanwhile.
    }
  }
  rmSync(dir, { recursive: true, force: true });
  return left.map((r) => `pid ${r.pid} (${r.test ?? 'outside a test'}): ${r.command}`);
}
