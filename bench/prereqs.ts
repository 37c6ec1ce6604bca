/**
 * The bench's external tools (Debian packages): installed with apt-get when missing and we are
 * root, otherwise the exact command to run is printed. An official registry named in
 * `BENCH_OFFICIAL_BIN` other than Debian's is built by hand (docs/performance.md): only checked.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { DISTRIBUTION_BIN, SKOPEO_BIN } from '../spec/helpers/interop.js';
import { DEFAULT_OFFICIAL_PACKAGE, officials } from './officials.js';
import { NGINX_BIN } from './servers.js';

/** The wrk binary (Debian's package). */
export const WRK_BIN = '/usr/bin/wrk';

const TOOLS: Array<{ bin: string; pkg: string }> = [
  // The upstream every contender caches is Debian's docker-registry, whichever officials are compared.
  { bin: DISTRIBUTION_BIN, pkg: DEFAULT_OFFICIAL_PACKAGE },
  { bin: SKOPEO_BIN, pkg: 'skopeo' },
  { bin: WRK_BIN, pkg: 'wrk' },
  { bin: NGINX_BIN, pkg: 'nginx' },
];

function aptInstall(pkgs: string[]): boolean {
  const run = (args: string[]): boolean =>
    spawnSync('apt-get', args, { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } }).status === 0;
  const install = ['install', '-y', '--no-install-recommends', ...pkgs];
  if (run(install)) return true;
  process.stderr.write('bench: apt-get install failed, running apt-get update and retrying\n');
  return run(['update']) && run(install);
}

/** A tool is missing and could not be installed; the message says what to run. */
export class PrerequisiteError extends Error {}

/** Makes sure every tool is installed; throws with the command to run when that is not possible. */
export function ensurePrerequisites(): void {
  const unbuilt = officials().filter((o) => o.bin !== DISTRIBUTION_BIN && !existsSync(o.bin));
  if (unbuilt.length > 0) {
    throw new PrerequisiteError(
      `BENCH_OFFICIAL_BIN names ${unbuilt.map((o) => o.bin).join(', ')}, which does not exist (build it as docs/performance.md says, or leave the setting out for Debian's docker-registry)`,
    );
  }
  const missing = () => TOOLS.filter((t) => !existsSync(t.bin));
  let todo = missing();
  if (todo.length === 0) return;
  const pkgs = todo.map((t) => t.pkg);
  const command = `apt-get install -y --no-install-recommends ${pkgs.join(' ')}`;
  if (process.getuid?.() === 0) {
    process.stderr.write(`bench: installing ${pkgs.join(', ')}\n`);
    aptInstall(pkgs);
    todo = missing();
  }
  if (todo.length > 0) {
    throw new PrerequisiteError(`missing ${todo.map((t) => t.bin).join(', ')}; install them with:\n  sudo ${command}`);
  }
}
