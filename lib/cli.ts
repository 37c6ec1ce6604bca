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
function version(): string {
  const require = createRequire(import.meta.url);
  return (require('../package.json') as { version: string }).version;
}

/**
 * How `bin/registry` hands over SIGTERM and SIGINT: it listens for them before anything is loaded
 * (a signal during the load must not end the process without saving), and `take` routes them,
 * those already received first, to `serve`.
 */
interface SignalHandover {
  take(handler: (signal: NodeJS.Signals) => void): void;
}

/**
 * After the drain (`http.draintimeout`), what a stop may spend on the rest (the background work's
 * end, the schedule's write, closing connections) before the process exits anyway: the stop is
 * bounded by `draintimeout + SAVE_MS` by construction (1.8 s with the default drain).
 */
const SAVE_MS = 800;

/** Runs the command line; resolves to the process exit code (serve resolves when the server stops). */
export async function main(argv: string[], env: NodeJS.ProcessEnv = process.env, signals?: SignalHandover): Promise<number> {
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
    if (command === 'serve') return await serve(rest, env, signals);
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

async function serve(args: string[], env: NodeJS.ProcessEnv, signals?: SignalHandover): Promise<number> {
  if (args.includes('-h') || args.includes('--help')) {
    process.stdout.write('Usage:\n  registry serve <config>\n');
    return 0;
  }
  const stop = new Stop(signals);
  try {
    const { logger, config } = load(args, env);
    stop.configured(logger, config.http.draintimeoutms);
    // OpenTelemetry, loaded only when OTEL_TRACES_EXPORTER asks for spans (distribution v3's variables).
    const stopTracing = await startTracing(env, version(), (msg) => logger.warn(`tracing: ${msg}`));
    if (stopTracing) logger.info('tracing: spans exported', { OTEL_TRACES_EXPORTER: env.OTEL_TRACES_EXPORTER });
    const registry = await Promise.race([startRegistry(config, logger), stop.exit.then(() => undefined)]).catch(async (err: unknown) => {
      await stopTracing?.();
      throw err;
    });
    // The deadline passed while starting: `exit` has settled, and the process ends with it.
    if (registry)
      stop.started(async () => {
        await registry.close();
        await stopTracing?.();
      });
    return await stop.exit;
  } finally {
    stop.dispose();
  }
}

/**
 * A stop of `serve` on SIGTERM or SIGINT, at any moment from the process's start: listened for
 * before the configuration is read; a signal while the registry starts stops it once started.
 * From the signal, a deadline (`draintimeout + SAVE_MS`) ends the process whatever is still
 * running, so the bound holds by construction; a second signal ends it at once.
 */
class Stop {
  /** Settles with the exit code: 0 once stopped in time, 1 if the stop failed or the deadline cut it. */
  readonly exit: Promise<number>;
  private resolve!: (code: number) => void;
  private signal?: { readonly name: NodeJS.Signals; readonly at: number };
  private logger?: Logger;
  private drainMs = 1000;
  private close?: () => Promise<void>;
  private deadline?: NodeJS.Timeout;
  private readonly listener = (name: NodeJS.Signals): void => this.received(name);

  constructor(handover: SignalHandover | undefined) {
    this.exit = new Promise((resolve) => (this.resolve = resolve));
    if (handover) handover.take(this.listener);
    else {
      process.on('SIGTERM', this.listener);
      process.on('SIGINT', this.listener);
    }
  }

  /** The configuration is read: where to log, and how long the drain is. */
  configured(logger: Logger, drainMs: number): void {
    this.logger = logger;
    this.drainMs = drainMs;
    if (this.signal) this.armDeadline();
  }

  /** The registry serves: a signal (already received, or to come) closes it. */
  started(close: () => Promise<void>): void {
    this.close = close;
    if (this.signal) this.begin();
  }

  dispose(): void {
    clearTimeout(this.deadline);
    process.off('SIGTERM', this.listener);
    process.off('SIGINT', this.listener);
  }

  private received(name: NodeJS.Signals): void {
    if (this.signal) {
      this.say('warn', `${name} received again: exiting now, without waiting for the stop to finish`);
      return this.resolve(1);
    }
    this.signal = { name, at: performance.now() };
    if (this.logger) this.armDeadline();
    if (this.close) return this.begin();
    this.say('info', `${name} received while starting: stopping once started (within ${this.bound} ms)`);
  }

  private get bound(): number {
    return this.drainMs + SAVE_MS;
  }

  private armDeadline(): void {
    if (this.deadline) return;
    const left = Math.max(0, this.bound - (performance.now() - this.signal!.at));
    this.deadline = setTimeout(() => {
      this.say(
        'error',
        `the stop did not finish within ${this.bound} ms of ${this.signal!.name} (http.draintimeout ${this.drainMs} ms + ${SAVE_MS} ms): exiting without waiting for it; the next start removes what it left unfinished`,
      );
      this.resolve(1);
    }, left);
  }

  private begin(): void {
    const { name, at } = this.signal!;
    this.say(
      'info',
      `${name} received: finishing in-flight requests (up to ${this.drainMs} ms, http.draintimeout), saving the schedule, then exiting (within ${this.bound} ms)`,
    );
    this.close!().then(
      () => {
        this.say('info', `stopped ${Math.round(performance.now() - at)} ms after ${name}`);
        this.resolve(0);
      },
      (err: unknown) => {
        this.say('error', `shutdown failed: ${err instanceof Error ? err.message : String(err)}`);
        this.resolve(1);
      },
    );
  }

  private say(level: 'info' | 'warn' | 'error', msg: string): void {
    if (this.logger) this.logger[level](msg);
    else process.stderr.write(`registry: ${msg}\n`);
  }
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
    out:
      args.includes('-q') || args.includes('--quiet')
        ? () => undefined
        : (line) => {
            pending += `${line}\n`;
            if (pending.length < 65536) return;
            process.stdout.write(pending);
            pending = '';
          },
  }).finally(() => process.stdout.write(pending));
  logger.debug('garbage-collect: done', { ...summary });
  return 0;
}
