/**
 * The Docker engine (Debian's docker.io 20.10) for the interop tier, started by the tests with
 * nothing shared with the host: a `daemon.json` with the mirror settings under test, `vfs` storage,
 * no iptables, no IP masquerading or forwarding, no bridge, its own data-root, exec-root, pidfile,
 * trust key and socket in a temporary folder, and a private containerd (spec/helpers/containerd.ts)
 * with its own namespaces, so that dockerd starts none of its own. The Debian client
 * `/usr/bin/docker` talks to it with `-H unix://...` and its own `DOCKER_CONFIG` (logins stay in
 * the folder). Everything is stopped and removed by `stop()`.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, rmdir, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnChild, type Child } from './children.js';
import { containerdAvailable, startPrivateContainerd, type PrivateContainerd } from './containerd.js';

export const DOCKERD_BIN = '/usr/sbin/dockerd';
/** Debian's client (another `docker` may come first on PATH). */
export const DOCKER_BIN = '/usr/bin/docker';
/** dockerd creates its plugin socket folder here whatever exec-root says. */
const PLUGIN_SOCKETS = '/run/docker/plugins';

/** True when dockerd, its client and containerd are installed and we are root. */
export function dockerAvailable(): boolean {
  return existsSync(DOCKERD_BIN) && existsSync(DOCKER_BIN) && containerdAvailable();
}

/** What `docker` printed and how it ended. */
export interface DockerResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** A running private dockerd. */
export interface Dockerd {
  /** The temporary folder holding everything of this daemon. */
  readonly dir: string;
  /** The `daemon.json` it was started with. */
  readonly daemonJson: Readonly<Record<string, unknown>>;
  /** Runs the Debian client against this daemon (classic builder); `input` goes to its stdin. */
  docker(args: string[], opts?: { input?: string; cwd?: string; timeoutMs?: number }): Promise<DockerResult>;
  /** Like `docker`, but throws with the output unless it exits 0. */
  ok(args: string[], opts?: { input?: string; cwd?: string; timeoutMs?: number }): Promise<string>;
  /** The repository digests (`host/repo@sha256:...`) dockerd recorded for a local image. */
  repoDigests(ref: string): Promise<string[]>;
  logs(): string;
  /** Stops dockerd and containerd, unmounts what is left, removes the folder. */
  stop(): Promise<void>;
}

/** dockerd's settings under test. */
export interface DockerdOptions {
  /** `registry-mirrors`: URLs (`http://127.0.0.1:5000`). */
  readonly registryMirrors?: readonly string[];
  /** `insecure-registries`: `host:port` or CIDR entries. */
  readonly insecureRegistries?: readonly string[];
}

/** Starts a private dockerd. */
export async function startDockerd(opts: DockerdOptions = {}): Promise<Dockerd> {
  // Short: containerd's and dockerd's socket paths are limited to 108 bytes.
  const dir = await mkdtemp(join(tmpdir(), 'dkd-'));
  const createdRunDocker = !existsSync('/run/docker');
  const socket = join(dir, 'docker.sock');
  let containerd: PrivateContainerd | undefined;
  let child: Child | undefined;
  let logs = '';
  const daemonJson = {
    'registry-mirrors': opts.registryMirrors ?? [],
    'insecure-registries': opts.insecureRegistries ?? [],
    'storage-driver': 'vfs',
    iptables: false,
    'ip-masq': false,
    'ip-forward': false,
    bridge: 'none',
    'data-root': join(dir, 'data'),
    'exec-root': join(dir, 'exec'),
    pidfile: join(dir, 'docker.pid'),
    // Else dockerd writes /etc/docker/key.json.
    'deprecated-key-path': join(dir, 'key.json'),
    hosts: [`unix://${socket}`],
  };

  const stop = async (): Promise<void> => {
    await child?.stop(20_000);
    await containerd?.stop();
    // A dockerd that was killed leaves its data-root bind mount (and any other) behind.
    for (const mountPoint of await mountsUnder(dir)) await run('umount', ['-l', mountPoint]);
    await rm(dir, { recursive: true, force: true });
    if (createdRunDocker) {
      // Only empty folders, only ours: never anything another daemon put there.
      await rmdir(PLUGIN_SOCKETS).catch(() => undefined);
      await rmdir('/run/docker').catch(() => undefined);
    }
  };

  try {
    containerd = await startPrivateContainerd(join(dir, 'ctd'));
    const config = join(dir, 'daemon.json');
    await writeFile(config, JSON.stringify({ ...daemonJson, containerd: containerd.socket }, null, 2));
    const namespace = `mirror-test-${process.pid}`;
    // Tracked (spec/helpers/children.ts): killed with the test worker however the test ends.
    child = spawnChild(DOCKERD_BIN, ['--config-file', config, '--containerd-namespace', namespace, '--containerd-plugins-namespace', `${namespace}-plugins`], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.process.stdout!.on('data', (c: Buffer) => (logs += c.toString()));
    child.process.stderr!.on('data', (c: Buffer) => (logs += c.toString()));
    const deadline = Date.now() + 30_000;
    while (!(await ping(socket))) {
      if (Date.now() > deadline || !child.alive()) throw new Error(`dockerd did not start:\n${logs}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  } catch (err) {
    await stop();
    throw err;
  }

  const env: NodeJS.ProcessEnv = { ...process.env, DOCKER_CONFIG: join(dir, 'client'), DOCKER_BUILDKIT: '0' };
  for (const k of ['DOCKER_HOST', 'DOCKER_CONTEXT', 'DOCKER_TLS_VERIFY', 'DOCKER_CERT_PATH']) delete env[k];
  const docker: Dockerd['docker'] = (args, o = {}) =>
    new Promise((resolve) => {
      const c = execFile(
        DOCKER_BIN,
        ['-H', `unix://${socket}`, ...args],
        { env, cwd: o.cwd, timeout: o.timeoutMs ?? 120_000, maxBuffer: 16 * 1024 * 1024 },
        (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
      );
      c.stdin!.end(o.input ?? '');
    });
  const ok: Dockerd['ok'] = async (args, o) => {
    const r = await docker(args, o);
    if (r.code !== 0) throw new Error(`docker ${args.join(' ')} exited ${r.code}:\n${r.stdout}${r.stderr}`);
    return r.stdout;
  };
  return {
    dir,
    daemonJson,
    docker,
    ok,
    repoDigests: async (ref) => JSON.parse(await ok(['image', 'inspect', '--format', '{{json .RepoDigests}}', ref])) as string[],
    logs: () => logs,
    stop,
  };
}

/** True when the daemon answers `GET /_ping` on its socket. */
function ping(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.get({ socketPath, path: '/_ping' }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('error', () => resolve(false));
    req.setTimeout(2000, () => req.destroy());
  });
}

/** Mount points at or under `dir`, deepest first. */
async function mountsUnder(dir: string): Promise<string[]> {
  const table = await readFile('/proc/self/mountinfo', 'utf8');
  // The 5th field is the mount point, with spaces and the like octal-escaped.
  const points = table
    .split('\n')
    .map((line) => line.split(' ')[4])
    .filter((p): p is string => p !== undefined)
    .map((p) => p.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))))
    .filter((p) => p === dir || p.startsWith(`${dir}/`));
  return points.sort((a, b) => b.length - a.length);
}

function run(cmd: string, args: string[]): Promise<void> {
  return new Promise((resolve) => execFile(cmd, args, () => resolve()));
}
