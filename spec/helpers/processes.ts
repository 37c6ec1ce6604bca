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
  // The shell may reap its background child before its `exec` (then there is no zombie, and no
  // `/proc` entry to read): such a try is ended and made again.
  for (let attempt = 0; attempt < 5; attempt++) {
    const parent = spawnChild('sh', ['-c', 'sleep 0 & echo $!; exec sleep 60'], { stdio: ['ignore', 'pipe', 'ignore'] });
    const pid = await new Promise<number>((resolve) => parent.process.stdout!.once('data', (c: Buffer) => resolve(Number(c.toString().trim()))));
    const start = await zombieStart(pid);
    // `stop` resolves once the parent is gone: a test awaits it, so that nothing it started is
    // still running when its file ends.
    if (start !== undefined) return { pid, start, stop: () => parent.kill() };
    await parent.kill();
  }
  throw new Error('no zombie in 5 tries');
}

/** The start time of `pid` once it is a zombie; undefined if it is gone (reaped) or never becomes one. */
async function zombieStart(pid: number): Promise<string | undefined> {
  for (let i = 0; i < 100; i++) {
    let fields: string[];
    try {
      fields = statFields(pid);
    } catch {
      return undefined;
    }
    if (fields[0] === 'Z') return fields[19]!;
    await new Promise((r) => setTimeout(r, 20));
  }
  return undefined;
}
