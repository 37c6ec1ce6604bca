/**
 * Every process a test starts goes through `spawnChild`: it is recorded for the check at the end of
 * the run (spec/global-teardown.js fails the run if one is still alive, and kills it), and killed
 * when the test worker exits, however the test ended. Tests still stop their processes themselves
 * (in `finally` or `afterEach`), with `stop` or `kill`, which wait for the exit.
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** A process a test started. */
export interface Child {
  readonly process: ChildProcess;
  readonly pid: number;
  /** Resolves with the exit code (null when ended by a signal) once the process has exited. */
  readonly exited: Promise<number | null>;
  /** True until the process exits. */
  alive(): boolean;
  /** SIGKILL (to its process group too when detached), and wait for the exit. */
  kill(): Promise<void>;
  /** SIGTERM, then SIGKILL after `graceMs`; waits for the exit. */
  stop(graceMs?: number): Promise<void>;
}

/** A process alive: what it runs, and how to SIGKILL it at once. */
interface Running {
  readonly command: string;
  readonly kill: () => void;
}

/**
 * The processes alive, on the spec file's global: spec/environment.cjs kills those still alive
 * when the file ends (a test that failed half-way may start one after its `afterEach` ran) and
 * fails the file, naming them, so that none is left to the next file of the worker.
 */
const running: Map<Child, Running> = ((globalThis as { __specChildren?: Map<Child, Running> }).__specChildren ??= new Map());
let hooked = false;

/** The start time of process `pid` (clock ticks since boot), which tells it from a later one with its pid. */
export function startTime(pid: number): string | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return text.slice(text.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

/** Where the run records the processes its tests start (set by spec/global-setup.js). */
function record(pid: number, command: string): void {
  const dir = process.env.REGISTRY_TEST_CHILDREN_DIR;
  if (!dir) return;
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, String(pid)), JSON.stringify({ pid, start: startTime(pid), command, worker: process.pid, test: testName() }));
}

function testName(): string | undefined {
  const state = (globalThis as { expect?: { getState?: () => { testPath?: string; currentTestName?: string } } }).expect?.getState?.();
  return state && `${state.testPath ?? ''} ${state.currentTestName ?? ''}`.trim();
}

/**
 * Lets process `pid` outlive the spec file that started it (a daemon shared by the run's files,
 * spec/helpers/ceph-shared.ts): not killed at the file's end, still killed when the worker exits.
 */
export function outliveFile(pid: number): void {
  for (const [child, entry] of running) {
    if (child.pid !== pid) continue;
    running.delete(child);
    process.once('exit', entry.kill);
  }
}

/** Starts `command` as `spawn` would, tracked (see the module comment). */
export function spawnChild(command: string, args: readonly string[], options: SpawnOptions = {}): Child {
  if (!hooked) {
    hooked = true;
    // The worker exiting (a test that timed out, a crash): nothing it started outlives it.
    process.once('exit', () => {
      for (const { kill } of running.values()) kill();
    });
  }
  const child = spawn(command, args, options);
  const detached = options.detached === true;
  let exitCode: number | null | undefined;
  const exited = new Promise<number | null>((resolve) => {
    child.once('exit', (code) => {
      exitCode = code;
      resolve(code);
    });
    // A command that cannot start: no exit follows.
    child.once('error', () => {
      if (child.pid === undefined) resolve(null);
    });
  });
  const alive = (): boolean => child.pid !== undefined && exitCode === undefined && child.exitCode === null && child.signalCode === null;
  const signal = (sig: NodeJS.Signals): void => {
    try {
      if (detached) process.kill(-child.pid!, sig);
      else child.kill(sig);
    } catch {
      // Already gone.
    }
  };
  const handle: Child = {
    process: child,
    pid: child.pid ?? -1,
    exited,
    alive,
    kill: async () => {
      if (alive()) signal('SIGKILL');
      await exited;
    },
    stop: async (graceMs = 5000) => {
      if (!alive()) return void (await exited);
      signal('SIGTERM');
      const timer = setTimeout(() => signal('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
  if (child.pid !== undefined) {
    const line = [command, ...args].join(' ').slice(0, 300);
    running.set(handle, { command: line, kill: () => signal('SIGKILL') });
    void exited.then(() => running.delete(handle));
    record(child.pid, line);
  }
  return handle;
}
