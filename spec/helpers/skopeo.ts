/**
 * skopeo, the real client of the interop tier: pushes images the tests build and pulls them
 * through registries into OCI layouts whose digests the tests compare.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SKOPEO_BIN } from './interop.js';
import { writeDirLayout, writeOciLayout, type BuiltImage, type BuiltIndex } from './images.js';

/** Runs skopeo with an empty private registries.conf, so the machine's configuration does not matter. */
export async function skopeo(args: string[], opts: { registriesConf?: string; timeoutMs?: number } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  let conf = opts.registriesConf;
  let confDir: string | undefined;
  if (!conf) {
    confDir = await mkdtemp(join(tmpdir(), 'skopeo-conf-'));
    conf = join(confDir, 'registries.conf');
    await writeFile(conf, '');
  }
  try {
    return await new Promise((resolve) => {
      execFile(
        SKOPEO_BIN,
        ['--insecure-policy', '--registries-conf', conf!, ...args],
        { timeout: opts.timeoutMs ?? 120_000, maxBuffer: 16 * 1024 * 1024 },
        (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
      );
    });
  } finally {
    if (confDir) await rm(confDir, { recursive: true, force: true });
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
