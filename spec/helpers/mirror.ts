/**
 * Starts our registry in-process on 127.0.0.1 with a temporary storage root, from YAML as a user
 * would write it, so tests exercise the real configuration loader too.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { loadConfig } from '../../lib/config/load.js';
import { createLogger } from '../../lib/log/logger.js';
import { startRegistry, type RunningRegistry } from '../../lib/server.js';
import { registryYaml } from './registry-yaml.js';

export interface TestMirror {
  readonly url: string;
  readonly root: string;
  readonly registry: RunningRegistry;
  /** Everything the mirror logged. */
  logs(): string;
  /** Stops the mirror; removes the root unless `keepRoot`. */
  close(opts?: { keepRoot?: boolean }): Promise<void>;
}

/** Starts a mirror of `remoteurl`; `proxyYaml`/`httpYaml` are lines of those sections, `extraYaml` more top-level YAML. */
export async function startMirror(
  remoteurl: string,
  opts: { root?: string; storage?: readonly string[]; extraYaml?: string; proxyYaml?: string; httpYaml?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<TestMirror> {
  const root = opts.root ?? (await mkdtemp(join(tmpdir(), 'mirror-')));
  const text = registryYaml({
    root,
    storage: opts.storage,
    level: 'debug',
    http: (opts.httpYaml ?? 'addr: 127.0.0.1:0').split('\n'),
    proxy: [`remoteurl: ${remoteurl}`, ...(opts.proxyYaml ? opts.proxyYaml.split('\n') : [])],
    extra: opts.extraYaml ? [opts.extraYaml] : [],
  });
  const { config } = loadConfig({ text, env: opts.env ?? {} });
  const out = new PassThrough();
  let logs = '';
  out.on('data', (c: Buffer) => (logs += c.toString()));
  const logger = createLogger(config.log, out);
  const registry = await startRegistry(config, logger);
  return {
    url: `http://127.0.0.1:${registry.port}`,
    root,
    registry,
    logs: () => logs,
    close: async (o = {}) => {
      await registry.close();
      if (!o.keepRoot && !opts.root) await rm(root, { recursive: true, force: true });
    },
  };
}
