/**
 * containerd as Kubernetes nodes run it, for the interop tier: a private daemon (root, state and
 * sockets under a temporary folder, the `native` snapshotter, no CRI) and `ctr` pulling through
 * registry mirrors configured in a `hosts.toml` directory, as containerd's `config_path` does.
 * The same private daemon serves the Docker engine tests (spec/helpers/dockerd.ts) as dockerd's
 * containerd, so that nothing of it lives outside the test's folder.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnChild } from './children.js';

export const CONTAINERD_BIN = '/usr/bin/containerd';
export const CTR_BIN = '/usr/bin/ctr';

/** True when containerd and ctr are installed and we are root (containerd needs it). */
export function containerdAvailable(): boolean {
  return existsSync(CONTAINERD_BIN) && existsSync(CTR_BIN) && process.getuid?.() === 0;
}

/** A private containerd daemon: every file it writes is under `dir`. */
export interface PrivateContainerd {
  /** Its gRPC socket. */
  readonly socket: string;
  /** Runs `ctr` against it in `namespace`; resolves with the exit code and output. */
  ctr(args: string[], opts?: { namespace?: string; timeoutMs?: number }): Promise<{ code: number; output: string }>;
  logs(): string;
  /** Stops the daemon (SIGTERM, SIGKILL after 5 s); `dir` stays. */
  stop(): Promise<void>;
}

/**
 * Starts containerd with root, state, sockets and the `opt` plugin's folder under `dir` (keep it
 * short: socket paths are limited to 108 bytes), CRI and the snapshotters that need kernel support
 * disabled; resolves once it answers `ctr version`.
 */
export async function startPrivateContainerd(dir: string): Promise<PrivateContainerd> {
  await mkdir(dir, { recursive: true });
  const socket = join(dir, 'c.sock');
  const config = [
    'version = 2',
    `root = "${dir}/root"`,
    `state = "${dir}/state"`,
    'disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.overlayfs"]',
    '[grpc]',
    `  address = "${socket}"`,
    '[ttrpc]',
    `  address = "${dir}/t.sock"`,
    '[debug]',
    '  address = ""',
    // Without this, containerd creates /opt/containerd on the host.
    '[plugins."io.containerd.internal.v1.opt"]',
    `  path = "${dir}/opt"`,
  ].join('\n');
  await writeFile(join(dir, 'config.toml'), `${config}\n`);
  let logs = '';
  // Tracked (spec/helpers/children.ts): killed with the test worker however the test ends.
  const daemon = spawnChild(CONTAINERD_BIN, ['--config', join(dir, 'config.toml')], { stdio: ['ignore', 'pipe', 'pipe'] });
  const child = daemon.process;
  child.stdout!.on('data', (c: Buffer) => (logs += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (logs += c.toString()));
  const ctr: PrivateContainerd['ctr'] = (args, opts = {}) =>
    new Promise((resolve) => {
      execFile(
        CTR_BIN,
        ['--address', socket, '--namespace', opts.namespace ?? 'mirror-test', ...args],
        { timeout: opts.timeoutMs ?? 120_000 },
        (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, output: stdout + stderr }),
      );
    });
  const stop = (): Promise<void> => daemon.stop();
  const deadline = Date.now() + 20_000;
  while ((await ctr(['version'], { timeoutMs: 5000 })).code !== 0) {
    if (Date.now() > deadline || !daemon.alive()) {
      await stop();
      throw new Error(`containerd did not start:\n${logs}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return { socket, ctr, logs: () => logs, stop };
}

/** A running private containerd with `ctr` as the client. */
export interface Containerd {
  /**
   * Pulls `ref` (`ghcr.io/org/app:v1`) with every registry in `mirrors` (registry host → mirror
   * URL) configured as its mirror; resolves with ctr's exit code and output.
   */
  pull(ref: string, mirrors: Record<string, string>): Promise<{ code: number; output: string }>;
  stop(): Promise<void>;
}

/** Starts a private containerd. */
export async function startContainerd(): Promise<Containerd> {
  const dir = await mkdtemp(join(tmpdir(), 'ctd-'));
  let daemon: PrivateContainerd;
  try {
    daemon = await startPrivateContainerd(dir);
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  let pulls = 0;
  return {
    pull: async (ref, mirrors) => {
      const hostsDir = join(dir, `hosts-${pulls++}`);
      for (const [registry, mirror] of Object.entries(mirrors)) {
        await mkdir(join(hostsDir, registry), { recursive: true });
        const hosts = [`server = "https://${registry}"`, `[host."${mirror}"]`, '  capabilities = ["pull", "resolve"]'].join('\n');
        await writeFile(join(hostsDir, registry, 'hosts.toml'), `${hosts}\n`);
      }
      return daemon.ctr(['images', 'pull', '--snapshotter', 'native', '--hosts-dir', hostsDir, ref]);
    },
    stop: async () => {
      await daemon.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
