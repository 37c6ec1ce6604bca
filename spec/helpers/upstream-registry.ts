/**
 * Debian's docker-registry (distribution 2.8) started for a test on 127.0.0.1, as a plain registry
 * (the upstream) or as the official pull-through cache (for side-by-side runs).
 */
import { spawnChild, type Child } from './children.js';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DISTRIBUTION_BIN } from './interop.js';
import { freePort, waitForHttp } from './ports.js';
import { registryYaml } from './registry-yaml.js';

/** A running docker-registry. */
export interface DistributionProcess {
  readonly url: string;
  readonly hostPort: string;
  readonly port: number;
  readonly rootDir: string;
  /** Stops the process; the data stays for `restart`. */
  stop(): Promise<void>;
  restart(): Promise<void>;
  /** Stops the process and removes its temporary files. */
  destroy(): Promise<void>;
  logs(): string;
}

/** Starts docker-registry; with `proxy`, as the official pull-through cache of `proxy.remoteurl`. */
export async function startDistribution(
  opts: {
    proxy?: { remoteurl: string; username?: string; password?: string; ttl?: string };
    rootDir?: string;
    /** Lines of a storage driver under `storage:` instead of `filesystem` at `rootDir` (S3 on the Ceph gateway). */
    storage?: readonly string[];
    htpasswd?: { realm: string; path: string };
    secret?: string;
    /** More top-level YAML lines (`notifications:`, ...). */
    extra?: readonly string[];
  } = {},
): Promise<DistributionProcess> {
  const dir = await mkdtemp(join(tmpdir(), 'distribution-'));
  const rootDir = opts.rootDir ?? join(dir, 'root');
  const port = await freePort();
  const proxy = opts.proxy
    ? [
        `remoteurl: ${opts.proxy.remoteurl}`,
        ...(opts.proxy.username ? [`username: ${opts.proxy.username}`, `password: ${opts.proxy.password ?? ''}`] : []),
        ...(opts.proxy.ttl ? [`ttl: ${opts.proxy.ttl}`] : []),
      ]
    : undefined;
  const auth = opts.htpasswd ? ['auth:', '  htpasswd:', `    realm: ${opts.htpasswd.realm}`, `    path: ${opts.htpasswd.path}`] : [];
  const config = join(dir, 'config.yml');
  await writeFile(
    config,
    registryYaml({
      root: rootDir,
      storage: opts.storage,
      http: [`addr: 127.0.0.1:${port}`, ...(opts.secret ? [`secret: ${opts.secret}`] : [])],
      proxy,
      extra: [...auth, ...(opts.extra ?? [])],
    }),
  );
  let logs = '';
  let child: Child | undefined;
  const url = `http://127.0.0.1:${port}`;
  const start = async (): Promise<void> => {
    // aws-sdk-go v1 panics at start when AWS_CA_BUNDLE is set (LoadCustomCABundleError), even for a plain-HTTP endpoint.
    const { AWS_CA_BUNDLE: _bundle, ...env } = process.env;
    const started = spawnChild(DISTRIBUTION_BIN, ['serve', config], { stdio: ['ignore', 'pipe', 'pipe'], env });
    child = started;
    started.process.stdout!.on('data', (c: Buffer) => (logs += c.toString()));
    started.process.stderr!.on('data', (c: Buffer) => (logs += c.toString()));
    try {
      await waitForHttp(`${url}/v2/`, 20_000);
    } catch (err) {
      await started.kill();
      throw new Error(`${(err as Error).message}\n${logs}`);
    }
  };
  const stopChild = async (): Promise<void> => child?.stop();
  await start();
  return {
    url,
    hostPort: `127.0.0.1:${port}`,
    port,
    rootDir,
    logs: () => logs,
    restart: async () => {
      await stopChild();
      await start();
    },
    stop: stopChild,
    destroy: async () => {
      await stopChild();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
