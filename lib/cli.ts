/**
 * The `registry` command line, as distribution's: `serve`, `garbage-collect`, `--version`, `--help`;
 * and ours: `warm`.
 * The configuration path is the argument, else `REGISTRY_CONFIGURATION_PATH`, else
 * `/etc/distribution/config.yml` (registry:3's) when it exists, else `/etc/docker/registry/config.yml`.
 */
import { createRequire } from 'node:module';
import type { Logger } from 'winston';
import { loadConfig, resolveConfigPath } from './config/load.js';
import { createLogger } from './log/logger.js';
import { startRegistry } from './server.js';
import { startTracing } from './tracing/tracing.js';
import { UsageError } from './errors.js';

const USAGE = `Usage:
  registry [flags]
  registry [command]

Available Commands:
  serve            serve the registry (a pull-through cache of proxy.remoteurl)
  garbage-collect  delete blobs that no manifest references
  warm             pre-fetch images into the cache
  help             help about any command

Flags:
  -h, --help       help for registry
  -v, --version    show the version and exit

Each command takes the configuration file as its argument; without one,
REGISTRY_CONFIGURATION_PATH, then /etc/distribution/config.yml (when it
exists), then /etc/docker/registry/config.yml, is read.
`;

const GC_USAGE = `Usage:
  registry garbage-collect <config> [flags]

Flags:
  -d, --dry-run           do everything except remove the blobs
  -m, --delete-untagged   delete manifests that are not currently referenced via tag
  -q, --quiet             silence output
  -h, --help              help for garbage-collect
`;

/** The package version, from package.json. */
export function version(): string {
  const require = createRequire(import.meta.url);
  return (require('../package.json') as { version: string }).version;
}

/** Runs the command line; resolves to the process exit code (serve resolves when the server stops). */
export async function main(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === 'help' || command === '-h' || command === '--help') {
    process.stdout.write(USAGE);
    return command === undefined ? 1 : 0;
  }
  if (command === '-v' || command === '--version' || command === 'version') {
    process.stdout.write(`registry github.com/distribution/distribution-compatible ${version()}\n`);
    return 0;
  }
  try {
    if (command === 'serve') return await serve(rest, env);
    if (command === 'garbage-collect') return await garbageCollect(rest, env);
    if (command === 'warm') {
      const { warmCommand } = await import('./warm/command.js');
      return await warmCommand(rest, env, { out: process.stdout, err: process.stderr });
    }
  } catch (err) {
    process.stderr.write(`registry: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
  process.stderr.write(`registry: unknown command "${command}"\n\n${USAGE}`);
  return 1;
}

function load(args: string[], env: NodeJS.ProcessEnv): { logger: Logger; config: ReturnType<typeof loadConfig>['config'] } {
  const positional = args.filter((a) => !a.startsWith('-'));
  if (positional.length > 1) throw new UsageError(`expected one configuration path, got ${positional.join(' ')}`);
  const path = resolveConfigPath(positional[0], env);
  const { config, warnings } = loadConfig({ path, env });
  const logger = createLogger(config.log);
  for (const w of warnings) logger.warn(w);
  return { logger, config };
}

async function serve(args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  if (args.includes('-h') || args.includes('--help')) {
    process.stdout.write('Usage:\n  registry serve <config>\n');
    return 0;
  }
  const { logger, config } = load(args, env);
  // OpenTelemetry, loaded only when OTEL_TRACES_EXPORTER asks for spans (distribution v3's variables).
  const stopTracing = await startTracing(env, version(), (msg) => logger.warn(`tracing: ${msg}`));
  if (stopTracing) logger.info(`tracing: spans exported (OTEL_TRACES_EXPORTER=${env.OTEL_TRACES_EXPORTER})`);
  const registry = await startRegistry(config, logger).catch(async (err: unknown) => {
    await stopTracing?.();
    throw err;
  });
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: string): void => {
      if (stopping) return;
      stopping = true;
      logger.info(`${signal} received: finishing in-flight requests, then exiting`);
      registry
        .close()
        .then(() => stopTracing?.())
        .then(
          () => resolve(0),
          (err: unknown) => {
            logger.error(`shutdown failed: ${err instanceof Error ? err.message : String(err)}`);
            resolve(1);
          },
        );
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
}

async function garbageCollect(args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  if (args.includes('-h') || args.includes('--help')) {
    process.stdout.write(GC_USAGE);
    return 0;
  }
  const known = new Set(['-d', '--dry-run', '-m', '--delete-untagged', '-q', '--quiet']);
  const unknown = args.filter((a) => a.startsWith('-') && !known.has(a));
  if (unknown.length > 0) throw new UsageError(`unknown flag ${unknown[0]}\n${GC_USAGE}`);
  const { config, logger } = load(args, env);
  const { garbageCollect: run } = await import('./storage/garbage-collect.js');
  // A line per marked blob: written in 64 KiB pieces, not a system call each.
  let pending = '';
  const summary = await run(config, {
    dryRun: args.includes('-d') || args.includes('--dry-run'),
    removeUntagged: args.includes('-m') || args.includes('--delete-untagged'),
    out: args.includes('-q') || args.includes('--quiet')
      ? () => undefined
      : (line) => {
          pending += `${line}\n`;
          if (pending.length < 65536) return;
          process.stdout.write(pending);
          pending = '';
        },
  }).finally(() => process.stdout.write(pending));
  logger.debug(`garbage-collect: ${JSON.stringify(summary)}`);
  return 0;
}
