/**
 * A real, small filesystem for full-disk tests: a tmpfs of a few MiB mounted on a temporary
 * directory (root only). Writes past its size fail with the kernel's own ENOSPC.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A mounted small disk. */
export interface SmallDisk {
  readonly path: string;
  /** Remounts it read-only (writes fail with EROFS) or read-write again. */
  setReadOnly(readOnly: boolean): Promise<void>;
  unmount(): void;
}

/** Mounts a tmpfs of `bytes`; undefined when this process may not mount (not root, no CAP_SYS_ADMIN). */
export function mountSmallDisk(bytes: number): SmallDisk | undefined {
  const path = mkdtempSync(join(tmpdir(), 'small-disk-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${bytes}`, 'tmpfs', path], { stdio: 'ignore' });
  } catch {
    rmSync(path, { recursive: true, force: true });
    return undefined;
  }
  return {
    path,
    setReadOnly: async (readOnly) => {
      // A remount read-only is refused ("busy") while a file is open for writing (the registry's
      // start-up writes its schedule and lock files): tried again for up to 5 s, as an operator would.
      for (let attempt = 0; ; attempt++) {
        try {
          execFileSync('mount', ['-o', `remount,${readOnly ? 'ro' : 'rw'}`, path], { stdio: 'ignore' });
          return;
        } catch (err) {
          if (attempt >= 50) throw err;
          await new Promise((r) => setTimeout(r, 100));
        }
      }
    },
    unmount: () => {
      execFileSync('umount', ['-l', path], { stdio: 'ignore' });
      rmSync(path, { recursive: true, force: true });
    },
  };
}

/** True when tmpfs can be mounted here. */
export function canMountSmallDisk(): boolean {
  const disk = mountSmallDisk(64 * 1024);
  disk?.unmount();
  return disk !== undefined;
}

/**
 * `describe` for full-disk suites: skipped where mounting is not allowed, failing in CI (which runs
 * as root) so that the tier never silently disappears there.
 */
export function describeSmallDisk(name: string, fn: () => void): void {
  if (canMountSmallDisk()) describe(name, fn);
  else if (process.env.CI)
    describe(name, () =>
      test('mount a tmpfs', () => {
        throw new Error('full-disk tests need root to mount a tmpfs');
      }),
    );
  else describe.skip(name, fn);
}
