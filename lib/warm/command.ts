/**
 * The `registry warm` command line: `registry warm <config> [flags] <image>...`.
 */
import { readFile } from 'node:fs/promises';
import { loadConfig, resolveConfigPath } from '../config/load.js';
import { formatBytes } from '../config/size.js';
import type { Config } from '../config/types.js';
import { registryHostOf } from '../distribution/registry-host.js';
import { createLogger } from '../log/logger.js';
import { startRegistry } from '../server.js';
import { MirrorError } from '../errors.js';
import { lineProgress, terminalProgress } from './progress.js';
import { parsePlatform, warmAll, type Platform } from './warm.js';

export const WARM_USAGE = `Usage:
  registry warm <config> [flags] <image>...

Pre-fetches images into the cache, as pulls through the mirror would.

Flags:
  -f, --file <path>         also warm the references in this file, one per line (# comments)
  -p, --platform <os/arch>  only this platform of multi-platform images (default: all)
  -c, --concurrency <n>     blobs fetched at once (default 4)
  -h, --help                help for warm
`;

/** Where the command writes: progress and errors to `err`, the summary to `out`. */
export interface WarmStreams {
  readonly out: NodeJS.WritableStream;
  readonly err: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
}

/** Runs `registry warm`; resolves to the exit code (1 when any reference failed). */
export async function warmCommand(args: string[], env: NodeJS.ProcessEnv, streams: WarmStreams): Promise<number> {
  if (args.includes('-h') || args.includes('--help')) {
    streams.out.write(WARM_USAGE);
    return 0;
  }
  const { positional, file, platform, concurrency } = parseArgs(args);
  const [configArg, ...images] = positional;
  if (!configArg) throw new MirrorError('ERR_USAGE', `a configuration file is required\n${WARM_USAGE}`);
  const refs = [...images, ...(file ? referencesIn(await readFile(file, 'utf8')) : [])];
  if (refs.length === 0) throw new MirrorError('ERR_USAGE', `no image to warm\n${WARM_USAGE}`);
  const { config, warnings } = loadConfig({ path: resolveConfigPath(configArg, env), env });
  const logger = createLogger({ ...config.log, level: config.log.level === 'debug' ? 'debug' : 'warn' }, streams.err);
  for (const w of warnings) logger.warn(w);
  if (!config.proxy) throw new MirrorError('ERR_CONFIG_UNSUPPORTED', 'proxy.remoteurl is required to warm a cache');

  const registry = await startRegistry(internalConfig(config), logger, { internal: true });
  const progress = streams.err.isTTY ? terminalProgress(streams.err) : lineProgress(streams.err);
  const started = Date.now();
  try {
    const hosts = new Map<string, 'default' | 'prefix'>(Object.keys(config.proxy.upstreams).map((h) => [h, 'prefix']));
    hosts.set(registryHostOf(config.proxy.remoteurl), 'default');
    if (!hosts.has('docker.io')) hosts.set('docker.io', 'default');
    const totals = await warmAll(refs, {
      base: `http://127.0.0.1:${registry.port}${config.http.prefix.replace(/\/$/, '')}`,
      root: config.storage.filesystem.rootdirectory,
      hosts,
      platform,
      concurrency,
      progress,
    });
    progress.close();
    const seconds = ((Date.now() - started) / 1000).toFixed(1);
    streams.out.write(
      `warmed ${totals.images} image${totals.images === 1 ? '' : 's'} (${totals.platforms} platform${totals.platforms === 1 ? '' : 's'}): ` +
        `${totals.blobsFetched} blobs fetched (${formatBytes(totals.bytesFetched)}), ${totals.blobsCached} already cached, in ${seconds}s\n`,
    );
    if (totals.failed.length > 0) streams.err.write(`${totals.failed.length} of ${refs.length} references failed: ${totals.failed.join(', ')}\n`);
    return totals.failed.length > 0 ? 1 : 0;
  } finally {
    progress.close();
    await registry.close();
  }
}

/** The configuration of the loopback registry the warm-up pulls through: no client auth, TLS or health gate. */
function internalConfig(config: Config): Config {
  return {
    ...config,
    http: { ...config.http, addr: '127.0.0.1:0', net: 'tcp', tls: undefined, debug: undefined, host: undefined, cachepage: false },
    auth: undefined,
    health: { storagedriver: { enabled: false, intervalms: 10_000, threshold: 0 }, file: [], http: [], tcp: [] },
    log: { ...config.log, accesslog: { disabled: true } },
  };
}

function parseArgs(args: string[]): { positional: string[]; file?: string; platform?: Platform; concurrency: number } {
  const positional: string[] = [];
  let file: string | undefined;
  let platform: Platform | undefined;
  let concurrency = 4;
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    const [flag, inline] = a.startsWith('--') && a.includes('=') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a, undefined];
    const value = (): string => {
      const v = inline ?? args[++i];
      if (v === undefined) throw new MirrorError('ERR_USAGE', `${flag} needs a value\n${WARM_USAGE}`);
      return v;
    };
    if (flag === '-f' || flag === '--file') file = value();
    else if (flag === '-p' || flag === '--platform') {
      const text = value();
      platform = parsePlatform(text);
      if (!platform) throw new MirrorError('ERR_USAGE', `--platform ${text}: expected os/architecture[/variant], like linux/arm64`);
    } else if (flag === '-c' || flag === '--concurrency') {
      concurrency = Number(value());
      if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 64) throw new MirrorError('ERR_USAGE', '--concurrency: a number from 1 to 64');
    } else if (a.startsWith('-')) throw new MirrorError('ERR_USAGE', `unknown flag ${a}\n${WARM_USAGE}`);
    else positional.push(a);
  }
  return { positional, file, platform, concurrency };
}

/** The references in a file: one per line, blank lines and `#` comments ignored. */
export function referencesIn(text: string): string[] {
  return text
    .split('\n')
    .map((l) => l.replace(/#.*/, '').trim())
    .filter(Boolean);
}
