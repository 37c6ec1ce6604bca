/** What every scenario shares: settings, the seeded upstream, the samples, a scratch directory. */
import { existsSync } from 'node:fs';
import { rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { DistributionProcess } from '../spec/helpers/upstream-registry.js';
import type { BuiltImage } from '../spec/helpers/images.js';
import type { Results } from './results.js';
import type { Settings } from './settings.js';
import type { BlobRef } from './seed.js';
import { startContender, type Contender } from './servers.js';
import type { ServerProcess } from './proc.js';
import { onCleanup } from './cleanup.js';

/** The shared state of a run. */
export interface BenchContext {
  readonly settings: Settings;
  readonly upstream: DistributionProcess;
  readonly workDir: string;
  readonly results: Results;
  /** `bench/app:latest`: the multi-layer image of scenarios 2 to 5. */
  readonly app: BuiltImage;
  /** In `bench/big`: the blob of scenarios 1/7, and the cold blobs of scenario 6. */
  readonly warmBlob: BlobRef;
  readonly coldBlobs: BlobRef[];
  log(line: string): void;
}

/** The repositories the upstream is seeded with. */
export const APP_REPO = 'bench/app';
export const BIG_REPO = 'bench/big';

/** A contender started with an empty cache for one measurement; `done` stops it and deletes its data. */
export async function freshContender(
  ctx: BenchContext,
  who: Contender,
  label: string,
  remoteurl = ctx.upstream.url,
): Promise<ServerProcess & { root: string; done(): Promise<void> }> {
  const dir = join(ctx.workDir, `${label}-${who}`);
  const removeDir = onCleanup(() => rm(dir, { recursive: true, force: true }));
  const server = await startContender(who, remoteurl, dir);
  return {
    ...server,
    done: async () => {
      await server.stop();
      await removeDir();
    },
  };
}

/** Where distribution's layout (both contenders use it) keeps a blob's bytes under `root`. */
export function blobDataPath(root: string, digest: string): string {
  const hex = digest.slice('sha256:'.length);
  return join(root, 'docker/registry/v2/blobs/sha256', hex.slice(0, 2), hex, 'data');
}

/** Waits until `blob` is committed under `root` (distribution 2.8 stores proxied blobs in the background). */
export async function waitForBlobOnDisk(root: string, blob: BlobRef, timeoutMs = 120_000): Promise<void> {
  const path = blobDataPath(root, blob.digest);
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (existsSync(path) && (await stat(path)).size === blob.size) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${blob.digest} was not stored under ${root} within ${timeoutMs} ms`);
}

/** Seconds since `start` (from `process.hrtime.bigint()`). */
export function secondsSince(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1e9;
}
