/**
 * skopeo, the real client of the interop tier: pushes images the tests build and pulls them
 * through registries into OCI layouts whose digests the tests compare.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SKOPEO_BIN } from './interop.js';
import { writeDirLayout, writeOciLayout, type BuiltImage, type BuiltIndex } from './images.js';

/**
 * Host paths containers/image uses whatever the flags say: the blob-info cache it writes as root
 * (`/var/lib/containers/cache`, which would let one run's pushes change what another run's skopeo
 * skips), the short-name alias cache, and the `registries.conf.d` drop-ins it reads. As root,
 * skopeo runs in a private mount namespace with folders of its own over them (as podman does,
 * spec/helpers/podman.ts); mount points missing on the host are made and left in place.
 */
const COVERED = ['/var/lib/containers/cache', '/var/cache/containers'];
const COVERED_IF_PRESENT = ['/etc/containers/registries.conf.d'];
const UNSHARE_BIN = '/usr/bin/unshare';
/** Mounts each `source target` pair given before `--`, then runs the rest. */
const MOUNT_AND_RUN = 'set -e; while [ "$1" != "--" ]; do mount --bind "$1" "$2"; shift 2; done; shift; exec "$@"';

/**
 * Runs skopeo with nothing of the host's containers state: an empty private registries.conf (or
 * `registriesConf`), its own auth file, temporary folder and (as root) caches, all in a folder
 * removed afterwards.
 */
export async function skopeo(
  args: string[],
  opts: { registriesConf?: string; timeoutMs?: number } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'skopeo-'));
  try {
    const conf = opts.registriesConf ?? join(dir, 'registries.conf');
    if (!opts.registriesConf) await writeFile(conf, '');
    await writeFile(join(dir, 'auth.json'), JSON.stringify({ auths: {} }));
    await mkdir(join(dir, 'tmp'));
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      REGISTRY_AUTH_FILE: join(dir, 'auth.json'),
      TMPDIR: join(dir, 'tmp'),
      HOME: dir,
      XDG_CONFIG_HOME: join(dir, '.config'),
    };
    const argv = [SKOPEO_BIN, '--insecure-policy', '--registries-conf', conf, ...args];
    let command = argv;
    if (process.getuid?.() === 0 && existsSync(UNSHARE_BIN)) {
      const binds: string[] = [];
      for (const target of [...COVERED, ...COVERED_IF_PRESENT.filter((p) => existsSync(p))]) {
        await mkdir(target, { recursive: true });
        const source = join(dir, 'covered', target.replace(/\//g, '_'));
        await mkdir(source, { recursive: true });
        binds.push(source, target);
      }
      command = [UNSHARE_BIN, '--mount', '--propagation', 'private', '--', '/bin/sh', '-c', MOUNT_AND_RUN, 'sh', ...binds, '--', ...argv];
    }
    return await new Promise((resolve) => {
      execFile(command[0]!, command.slice(1), { env, timeout: opts.timeoutMs ?? 120_000, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
      );
    });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Pushes a built image or index to `hostPort/ref` (`repo:tag`). */
export async function pushImage(hostPort: string, ref: string, built: BuiltImage | BuiltIndex, opts: { all?: boolean; creds?: string } = {}): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'push-'));
  try {
    const oci = built.manifest.mediaType.startsWith('application/vnd.oci.');
    if (oci) await writeOciLayout(dir, built, 'push');
    else if ('images' in built) throw new Error('Docker manifest lists are not supported by this helper');
    else await writeDirLayout(dir, built);
    const args = ['copy', '--preserve-digests', '--dest-tls-verify=false'];
    if (opts.all) args.push('--all');
    if (opts.creds) args.push('--dest-creds', opts.creds);
    const r = await skopeo([...args, oci ? `oci:${dir}:push` : `dir:${dir}`, `docker://${hostPort}/${ref}`]);
    if (r.code !== 0) throw new Error(`skopeo push of ${ref} failed: ${r.stderr}`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * Pulls `hostPort/ref` (`repo:tag` or `repo@digest`) into a fresh OCI layout with digests preserved;
 * returns the top manifest's digest and every blob digest it holds.
 */
export async function pullImage(
  hostPort: string,
  ref: string,
  opts: { all?: boolean; creds?: string; registriesConf?: string; source?: string } = {},
): Promise<{ manifestDigest: string; blobs: string[] }> {
  const dir = await mkdtemp(join(tmpdir(), 'pull-'));
  try {
    const args = ['copy', '--preserve-digests', '--src-tls-verify=false'];
    if (opts.all) args.push('--all');
    if (opts.creds) args.push('--src-creds', opts.creds);
    const r = await skopeo([...args, opts.source ?? `docker://${hostPort}/${ref}`, `oci:${dir}:pulled`], { registriesConf: opts.registriesConf });
    if (r.code !== 0) throw new Error(`skopeo pull of ${ref} failed: ${r.stderr}`);
    const index = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> };
    const blobs = (await readdir(join(dir, 'blobs/sha256'))).map((h) => `sha256:${h}`);
    return { manifestDigest: index.manifests[0]!.digest, blobs };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
