/**
 * How much of a stored file a client is handed at a time: small chunks at first and for slow
 * clients, so that many slow clients hold little memory, and large ones once a client has shown it
 * keeps up. Most of what a chunk costs besides copying its bytes is fixed (a thread-pool round trip
 * for the read, a socket write, an event-loop turn), so a fast client is served with a fraction of
 * the chunks. Used by the sender of cached blobs (`api/send-file.ts`) and by the readers of a blob
 * being fetched that are too far behind the download to be handed its bytes from memory
 * (`proxy/blob-fetch.ts`).
 */

/**
 * Bytes a client takes before its rate decides: the kernel's socket buffers take several MiB from
 * any client at once, so the first few MiB say nothing of its speed.
 */
export const GROW_AFTER = 16 * 1024 * 1024;

/** Bytes per second from which a client gets large chunks (a 1 Gbit/s client does; a few dozen such fill a 10 Gbit/s link). */
export const FAST_CLIENT = 32 * 1024 * 1024;

/**
 * The chunk size for a client that has taken `taken` bytes in `elapsedMs`: `large` once it has
 * taken `GROW_AFTER` at `FAST_CLIENT` or more on average, `small` before and whenever its average
 * falls below.
 */
export function chunkFor(taken: number, elapsedMs: number, small: number, large: number): number {
  if (taken < GROW_AFTER) return small;
  return taken >= (elapsedMs / 1000) * FAST_CLIENT ? large : small;
}
