/** Buffer memory a test process holds, read after full collections. */
import v8 from 'node:v8';
import vm from 'node:vm';

v8.setFlagsFromString('--expose-gc');
/** A full collection, so that Buffer memory counts what is held, not garbage not yet collected. */
const gc = vm.runInNewContext('gc') as () => void;

/**
 * Buffer memory held after full collections. V8 frees the memory of collected buffers after the
 * collection, partly in tasks of its own: one `gc()` and an immediate reading counted garbage of
 * the moment (tens of MiB either way in a run), so collect until two readings agree.
 */
export async function heldBuffers(): Promise<number> {
  let last = Number.NaN;
  for (let i = 0; i < 10; i++) {
    gc();
    await new Promise((r) => setTimeout(r, 20));
    const now = process.memoryUsage().arrayBuffers;
    if (Math.abs(now - last) < 256 * 1024) return now;
    last = now;
  }
  return last;
}
