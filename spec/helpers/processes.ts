/**
 * Processes in states a lock or a temporary directory must be judged in: a zombie, and the start
 * time of a live one (as `/proc/<pid>/stat` tells it), for tests of owner-aware clean-up and locks.
 */
import { readFileSync } from 'node:fs';
import { spawnChild } from './children.js';

function statFields(pid: number): string[] {
  const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return text.slice(text.lastIndexOf(')') + 2).split(' ');
}

/** The start time (clock ticks since boot) of process `pid`. */
export function procStart(pid: number): string {
  return statFields(pid)[19]!;
}

/**
 * A zombie: a child of `sh` that exits while its parent (now `sleep`, which never waits) lives on.
 * Its pid and start time are those a temporary directory or lock of it would carry.
 */
export async function startZombie(): Promise<{ pid: number; start: string; stop(): Promise<void> }> {
  const parent = spawnChild('sh', ['-c', 'sleep 0 & echo $!; exec sleep 60'], { stdio: ['ignore', 'pipe', 'ignore'] });
  const pid = await new Promise<number>((resolve) => parent.process.stdout!.once('data', (c: Buffer) => resolve(Number(c.toString().trim()))));
  for (let i = 0; i < 100; i++) {
    const fields = statFields(pid);
    // `stop` resolves once the parent is gone: a test awaits it, so that nothing it started is
    // still running when its file ends.
    if (fields[0] === 'Z') return { pid, start: fields[19]!, stop: () => parent.kill() };
    await new Promise((r) => setTimeout(r, 20));
  }
  await parent.kill();
  throw new Error(`process ${pid} did not become a zombie`);
}
