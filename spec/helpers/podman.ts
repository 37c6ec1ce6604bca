/**
 * podman (Debian's 4.3) for the interop tier with no host state: its storage root, run root and
 * temporary folders, `vfs` storage, `registries.conf` (CONTAINERS_REGISTRIES_CONF), `storage.conf`,
 * `containers.conf` (no events log, cgroupfs), a signature policy, an auth file and HOME, all in one
 * temporary folder that `remove()` deletes.
 *
 * Three paths of containers/image cannot be moved by a flag or a variable: the blob-info cache
 * (`/var/lib/containers/cache`), the short-name alias cache (`/var/cache/containers`) and the
 * drop-in folder `/etc/containers/registries.conf.d`, read even with CONTAINERS_REGISTRIES_CONF
 * (a drop-in there could send docker.io elsewhere). So podman runs in a private mount namespace
 * (`unshare --mount`) where folders of the test are bind-mounted over them.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const PODMAN_BIN = '/usr/bin/podman';

const UNSHARE_BIN = '/usr/bin/unshare';

/** True when podman and unshare are installed and we are root (rootless podman needs subuid set-up). */
export function podmanAvailable(): boolean {
  return existsSync(PODMAN_BIN) && existsSync(UNSHARE_BIN) && process.getuid?.() === 0;
}

/** Host folders podman writes, covered in its mount namespace by folders of the test. */
const WRITTEN = ['/var/lib/containers', '/var/cache/containers'];
/** Host configuration podman reads whatever the variables say, covered by an empty folder when present. */
const READ = ['/etc/containers/registries.conf.d'];

/** Mounts each `source target` pair given before `--`, then runs the rest. */
const MOUNT_AND_RUN = 'set -e; while [ "$1" != "--" ]; do mount --bind "$1" "$2"; shift 2; done; shift; exec "$@"';

/** A private podman. */
export interface Podman {
  readonly dir: string;
  /** Replaces the `registries.conf` podman reads. */
  setRegistriesConf(text: string): Promise<void>;
  /** Runs podman; resolves with its exit code and output. */
  podman(args: string[], opts?: { timeoutMs?: number }): Promise<{ code: number; stdout: string; stderr: string }>;
  /** Like `podman`, but throws with the output unless it exits 0. */
  ok(args: string[]): Promise<string>;
  /** Removes every file of this podman. */
  remove(): Promise<void>;
}

/** Prepares a private podman in a temporary folder. */
export async function makePodman(): Promise<Podman> {
  const dir = await mkdtemp(join(tmpdir(), 'podman-'));
  const root = join(dir, 'root');
  const runroot = join(dir, 'runroot');
  const registriesConf = join(dir, 'registries.conf');
  await writeFile(registriesConf, 'unqualified-search-registries = []\n');
  await writeFile(join(dir, 'storage.conf'), ['[storage]', 'driver = "vfs"', `graphroot = "${root}"`, `runroot = "${runroot}"`, ''].join('\n'));
  await writeFile(
    join(dir, 'containers.conf'),
    [
      '[engine]',
      'events_logger = "none"',
      'cgroup_manager = "cgroupfs"',
      `tmp_dir = "${dir}/tmp"`,
      `image_copy_tmp_dir = "${dir}/tmp"`,
      `volume_path = "${dir}/volumes"`,
      `static_dir = "${root}/libpod"`,
      '[network]',
      `network_config_dir = "${dir}/networks"`,
      '',
    ].join('\n'),
  );
  await writeFile(join(dir, 'auth.json'), JSON.stringify({ auths: {} }));
  // A mount point must exist: the missing ones are made (empty, as podman itself would) and left in
  // place: another run on this machine may be using one as its mount point right now (removing it
  // at the end of one run broke an overlapping one; two runs making it at once must both succeed).
  const binds: string[] = [];
  for (const target of [...WRITTEN, ...READ.filter((p) => existsSync(p))]) {
    await mkdir(target, { recursive: true });
    const source = join(dir, 'covered', target.replace(/\//g, '_'));
    await mkdir(source, { recursive: true });
    binds.push(source, target);
  }
  await mkdir(join(dir, 'tmp'), { recursive: true });
  await mkdir(join(dir, 'home'), { recursive: true });
  await writeFile(join(dir, 'policy.json'), JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }));
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    CONTAINERS_REGISTRIES_CONF: registriesConf,
    CONTAINERS_STORAGE_CONF: join(dir, 'storage.conf'),
    CONTAINERS_CONF: join(dir, 'containers.conf'),
    REGISTRY_AUTH_FILE: join(dir, 'auth.json'),
    // Temporary files of containers/storage and containers/image (else /var/tmp); per-user config.
    TMPDIR: join(dir, 'tmp'),
    HOME: join(dir, 'home'),
    XDG_CONFIG_HOME: join(dir, 'home/.config'),
  };
  const podman: Podman['podman'] = (args, o = {}) =>
    new Promise((resolve) => {
      const global = ['--root', root, '--runroot', runroot, '--storage-driver', 'vfs', '--tmpdir', join(dir, 'tmp')];
      // `--signature-policy` belongs to the subcommands that fetch images.
      const withPolicy = ['pull', 'push'].includes(args[0]!) ? [args[0]!, '--signature-policy', join(dir, 'policy.json'), ...args.slice(1)] : args;
      const argv = ['--mount', '--propagation', 'private', '--', '/bin/sh', '-c', MOUNT_AND_RUN, 'sh', ...binds, '--', PODMAN_BIN, ...global, ...withPolicy];
      execFile(UNSHARE_BIN, argv, { env, timeout: o.timeoutMs ?? 120_000, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
      );
    });
  return {
    dir,
    setRegistriesConf: (text) => writeFile(registriesConf, text),
    podman,
    ok: async (args) => {
      const r = await podman(args);
      if (r.code !== 0) throw new Error(`podman ${args.join(' ')} exited ${r.code}:\n${r.stdout}${r.stderr}`);
      return r.stdout;
    },
    remove: async () => {
      await podman(['rmi', '--all', '--force']);
      await rm(dir, { recursive: true, force: true });
    },
  };
}
