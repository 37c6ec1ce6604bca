/** Stopping a daemon a test started. */
import type { ChildProcess } from 'node:child_process';

/** SIGTERM, then SIGKILL after `graceMs`; resolves once it exited (at once if it already has). */
export async function stopProcess(child: ChildProcess | undefined, graceMs = 5000): Promise<void> {
  // A process ended by a signal has a null exitCode but a signalCode.
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}
