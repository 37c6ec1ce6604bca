/**
 * The `registry warm` command line: `registry warm <config> [flags] <image>...`.
 */
import { readFile } from 'node:fs/promises';
import { loadConfig, resolveConfigPath } from '../config/load.js';
import { formatBytes } from '../config/size.js';
import { createLogger } from '../log/logger.js';
import { createServices } from '../services/registry-services.js';
import { UnsupportedConfigError, UsageError } from '../errors.js';
import { progressFor, type ProgressStream } from './progress.js';
import { parsePlatform, referencesIn, type Platform } from './references.js';
import { warmAll } from './warm.js';

/** The help text of `registry warm`. */
const WARM_USAGE = `Usage:
  registry warm <config> [flags] <image>...

Pre-fetches images into the cache, as pulls through the mirror would: busybox,
library/busybox:1.36, docker.io/library/alpine:3.19, ghcr.io/org/app@sha256:...
(a registry other than docker.io must be one of proxy.upstreams; the tag defaults to latest).

Flags:
  -f, --file <path>                  also warm the references in this file, one per line (# comments)
  -p, --platform <os/arch[/variant]> only this platform of multi-platform images (default: all)
  -c, --concurrency <n>              blobs fetched at once (default 4)
  -h, --help                         help for warm
`;

/** Where the command writes: progress and errors to `err`, the summary to `out`. */
export interface WarmStreams {
  readonly out: NodeJS.WritableStream;
  /** Progress bars when it is a terminal (`isTTY`), plain lines otherwise. */
  readonly err: ProgressStream;
}

/** Runs `registry warm`; resolves to the exit code (1 when any reference failed). */
export async function warmCommand(args: string[], env: NodeJS.ProcessEnv, streams: WarmStreams): Promise<number> {
  if (args.includes('-h') || args.includes('--help')) {
    streams.out.write(WARM_USAGE);
    return 0;
  }
  const { positional, file, platform, concurrency } = parseArgs(args);
  const [configArg, ...images] = positional;
  if (!configArg) throw new UsageError(`a configuration file is required\n${WARM_USAGE}`);
  const refs = [...images, ...(file ? referencesIn(await readFile(file, 'utf8')) : [])];
  if (refs.length === 0) throw new UsageError(`no image to warm\n${WARM_USAGE}`);
  const { config, warnings } = loadConfig({ path: resolveConfigPath(configArg, env), env });
  const logger = createLogger({ ...config.log, level: config.log.level === 'debug' ? 'debug' : 'warn' }, streams.err);
  for (const w of warnings) logger.warn(w);
  if (!config.proxy) throw new UnsupportedConfigError('proxy.remoteurl is required to warm a cache');

  // The registry's services as `serve` builds them, without a listener: the same stores, upstream
  // clients, cache events and expiry schedule as a pull (nothing fetched ahead: warm fetches all).
  const services = await createServices(config, logger, { fetchAhead: false });
  const progress = progressFor(streams.err);
  const started = Date.now();
  try {
    const totals = await warmAll(refs, { services, platform, concurrency, progress });
    progress.close();
    const seconds = ((Date.now() - started) / 1000).toFixed(1);
    const plural = (n: number, word: string): string => `${n} ${word}${n === 1 ? '' : 's'}`;
    streams.out.write(
      `warmed ${plural(totals.images, 'image')} (${plural(totals.platforms, 'platform')}): ` +
        `${plural(totals.blobsFetched, 'blob')} fetched (${formatBytes(totals.bytesFetched)}), ${totals.blobsCached} already cached, in ${seconds}s\n`,
    );
    if (totals.failed.length > 0) {
      streams.err.write(`${totals.failed.length} of ${refs.length} references failed: ${totals.failed.map((f) => f.ref).join(', ')}\n`);
    }
    return totals.failed.length > 0 ? 1 : 0;
  } finally {
    progress.close();
    // Writes the expiry entries of what was fetched into scheduler-state.json.
    await services.close();
  }
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
      if (v === undefined) throw new UsageError(`${flag} needs a value\n${WARM_USAGE}`);
      return v;
    };
    if (flag === '-f' || flag === '--file') file = value();
    else if (flag === '-p' || flag === '--platform') {
      const text = value();
      platform = parsePlatform(text);
      if (!platform) throw new UsageError(`--platform ${text}: expected os/architecture[/variant], like linux/arm64`);
    } else if (flag === '-c' || flag === '--concurrency') {
      concurrency = Number(value());
      if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 64) throw new UsageError('--concurrency: a number from 1 to 64');
    } else if (a.startsWith('-')) throw new UsageError(`unknown flag ${a}\n${WARM_USAGE}`);
    else positional.push(a);
  }
  return { positional, file, platform, concurrency };
}
