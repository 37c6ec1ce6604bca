/**
 * The thread that keeps the catalog index (lib/storage/repository-index.ts) up to date: each
 * request is one pass of lib/storage/repository-tree.ts over `repositories/`, off the registry's
 * event loop. The first pass posts every name (in pieces, so that no one message holds the event
 * loop long), the later ones only what appeared and went, and what each name this process
 * changed is now.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { monotonicMs, RepositoryTree } from './repository-tree.js';
import type { ProbeReply, ProbeRequest } from './repository-index.js';

/** Names per message of the first pass. */
const PIECE = 20_000;

const port = parentPort!;
const { dir } = workerData as { dir: string };
let tree = new RepositoryTree(dir);
let built = false;

port.on('message', (msg: ProbeRequest) => {
  const startedAt = monotonicMs();
  try {
    const changes = tree.pass();
    const ms = monotonicMs() - startedAt;
    if (!built) {
      built = true;
      const keys = tree.sorted();
      for (let i = 0; i < keys.length; i += PIECE) port.postMessage({ op: 'names', id: msg.id, keys: keys.slice(i, i + PIECE) } satisfies ProbeReply);
      port.postMessage({ op: 'built', id: msg.id, startedAt, ms, changes: [] } satisfies ProbeReply);
      return;
    }
    for (const name of msg.touched) if (!changes.has(name)) changes.set(name, tree.repositories.has(name));
    port.postMessage({ op: 'passed', id: msg.id, startedAt, ms, changes: [...changes] } satisfies ProbeReply);
  } catch (err) {
    // The next pass starts over with a full read; until then the registry walks the storage.
    tree = new RepositoryTree(dir);
    built = false;
    port.postMessage({ op: 'failed', id: msg.id, message: (err as Error).message } satisfies ProbeReply);
  }
});
