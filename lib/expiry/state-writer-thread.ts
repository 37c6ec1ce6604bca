/**
 * The worker thread that rewrites `scheduler-state.json` (lib/expiry/state-store.ts): the
 * changes arrive in batches, then a write request; the merge (a streaming read and write of the
 * whole file) runs here, off the registry's event loop.
 */
import { parentPort } from 'node:worker_threads';
import { mergeState, StateBaseError } from './state-file.js';
import type { EntryType } from './expiry-index.js';
import type { WriterMessage, WriterReply } from './state-store.js';

const pending = new Map<number, Map<string, { expiry: number; type: EntryType } | null>>();
const port = parentPort!;

port.on('message', (msg: WriterMessage) => {
  if (msg.op === 'changes') {
    let changes = pending.get(msg.id);
    if (!changes) pending.set(msg.id, (changes = new Map()));
    for (let i = 0; i < msg.keys.length; i++) {
      const expiry = msg.expiries[i]!;
      changes.set(msg.keys[i]!, Number.isNaN(expiry) ? null : { expiry, type: msg.types[i] === 0 ? 'blob' : 'manifest' });
    }
    return;
  }
  const changes = pending.get(msg.id) ?? new Map();
  pending.delete(msg.id);
  const started = performance.now();
  mergeState(msg.path, changes, { replace: msg.replace }).then(
    (r) => port.postMessage({ id: msg.id, entries: r.entries, bytes: r.bytes, ms: performance.now() - started } satisfies WriterReply),
    (err: Error) => port.postMessage({ id: msg.id, error: err.message, base: err instanceof StateBaseError } satisfies WriterReply),
  );
});
