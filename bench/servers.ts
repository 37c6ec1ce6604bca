/**
 * The servers compared: our mirror (`node bin/registry serve`), the official ones in proxy mode
 * (Debian's docker-registry by default; `BENCH_OFFICIAL_BIN`, bench/officials.ts) and nginx
 * serving one file with sendfile (the ceiling). Each gets its own configuration under `dir`, listens on 127.0.0.1 and logs at warn level without access log.
 */
import { readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '../spec/helpers/ports.js';
import { official, officials, type OfficialId } from './officials.js';
import { startServer, type ServerProcess } from './proc.js';
import { registryYaml } from '../spec/helpers/registry-yaml.js';

/** Our command line (this file is compiled to build-bench/bench/). */
const REGISTRY_BIN = fileURLToPath(new URL('../../bin/registry', import.meta.url));

/**
 * The environment the image sets for ours (the Dockerfile's `ENV` lines, e.g. `GLIBC_TUNABLES`),
 * so that the bench measures the mirror as it is shipped; the officials run with the bench's own.
 */
export function imageEnvironment(dockerfile = fileURLToPath(new URL('../../Dockerfile', import.meta.url))): Record<string, string> {
  const env: Record<string, string> = {};
  for (const m of readFileSync(dockerfile, 'utf8').matchAll(/^ENV\s+([A-Za-z_][A-Za-z0-9_]*)=(\S*)\s*$/gm)) env[m[1]!] = m[2]!;
  return env;
}

/** The environment `who` runs with: the bench's (less `AWS_CA_BUNDLE`), and for ours the image's `ENV`. */
export function contenderEnv(who: Contender): NodeJS.ProcessEnv {
  // aws-sdk-go v1 (docker-registry on S3) panics at start when AWS_CA_BUNDLE is set.
  const { AWS_CA_BUNDLE: _bundle, ...env } = process.env;
  return who === 'ours' ? { ...env, ...imageEnvironment() } : env;
}

/** Which pull-through cache: ours or one of the official ones. */
export type Contender = 'ours' | OfficialId;

/** Every contender, in the order a round runs them (rotated by one each round, so each goes first in turn). */
export function contenders(round: number): Contender[] {
  const all: Contender[] = ['ours', ...officials().map((o) => o.id)];
  const k = round % all.length;
  return [...all.slice(k), ...all.slice(0, k)];
}

/** The registry configuration every contender reads (the same keys; ours accepts registry:2's file, and v3 reads 2.8's). */
function registryConfig(root: string, port: number, remoteurl: string, storage?: readonly string[]): string {
  return registryYaml({ root, storage, http: [`addr: 127.0.0.1:${port}`], proxy: [`remoteurl: ${remoteurl}`] });
}

/**
 * How to run `who` as a pull-through cache of `remoteurl` on `port`: writes `dir/config.yml`, storage
 * under `dir/root` (or on the driver of `storage`, lines under `storage:`).
 */
export async function contenderCommand(
  who: Contender,
  remoteurl: string,
  dir: string,
  port: number,
  nodeArgs: string[] = [],
  storage?: readonly string[],
): Promise<{ cmd: string; args: string[]; root: string; env: NodeJS.ProcessEnv }> {
  await mkdir(dir, { recursive: true });
  const root = join(dir, 'root');
  const config = join(dir, 'config.yml');
  await writeFile(config, registryConfig(root, port, remoteurl, storage));
  const env = contenderEnv(who);
  return who === 'ours'
    ? { cmd: process.execPath, args: [...nodeArgs, REGISTRY_BIN, 'serve', config], root, env }
    : { cmd: official(who).bin, args: ['serve', config], root, env };
}

/** Starts `who` as a pull-through cache of `remoteurl`, storing under `dir/root` or on `storage`; `nodeArgs` go to ours' node (e.g. `--cpu-prof`). */
export async function startContender(
  who: Contender,
  remoteurl: string,
  dir: string,
  nodeArgs: string[] = [],
  storage?: readonly string[],
): Promise<ServerProcess & { root: string }> {
  const port = await freePort();
  const { cmd, args, root, env } = await contenderCommand(who, remoteurl, dir, port, nodeArgs, storage);
  const server = await startServer({ name: who, cmd, args, env, hostPort: `127.0.0.1:${port}`, readyPath: '/v2/' });
  return { ...server, root };
}

/** The nginx binary (Debian's package). */
export const NGINX_BIN = '/usr/sbin/nginx';

/** Starts nginx serving `file` at `/blob` with sendfile, one worker, prefix and temp paths under `dir`. */
export async function startNginx(file: string, dir: string): Promise<ServerProcess> {
  await mkdir(join(dir, 'logs'), { recursive: true });
  await mkdir(join(dir, 'tmp'), { recursive: true });
  const port = await freePort();
  const tmp = join(dir, 'tmp');
  const conf = join(dir, 'nginx.conf');
  await writeFile(
    conf,
    [
      'daemon off;',
      'master_process off;',
      'worker_processes 1;',
      `pid ${join(dir, 'nginx.pid')};`,
      `error_log ${join(dir, 'logs/error.log')} warn;`,
      'events { worker_connections 1024; }',
      'http {',
      '  access_log off;',
      '  sendfile on;',
      '  tcp_nopush on;',
      '  keepalive_requests 1000000;',
      '  default_type application/octet-stream;',
      ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((t) => `  ${t}_temp_path ${tmp};`),
      `  server { listen 127.0.0.1:${port}; location = /blob { alias ${file}; } location = /v2/ { return 200 '{}'; } }`,
      '}',
      '',
    ].join('\n'),
  );
  return startServer({
    name: 'nginx',
    cmd: NGINX_BIN,
    args: ['-p', dir, '-c', conf, '-e', join(dir, 'logs/error.log')],
    hostPort: `127.0.0.1:${port}`,
    readyPath: '/v2/',
  });
}

/** The compiled ceiling server (bench/ceiling-server.ts). */
const CEILING_BIN = fileURLToPath(new URL('./ceiling-server.js', import.meta.url));

/** Starts a bare `express` or `node:http` server answering every GET with `payload` (the manifest scenario's ceilings). */
export async function startCeiling(mode: 'express' | 'http', payloadFile: string, mediaType: string, digest: string): Promise<ServerProcess> {
  const port = await freePort();
  return startServer({
    name: `bare ${mode}`,
    cmd: process.execPath,
    args: [CEILING_BIN, mode, String(port), payloadFile, mediaType, digest],
    hostPort: `127.0.0.1:${port}`,
    readyPath: '/v2/',
  });
}
