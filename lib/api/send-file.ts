/**
 * Sends part of a stored file to a response through two buffers that are reused for the whole
 * transfer: one is read from the disk while the other is being written to the socket. A stream
 * would allocate a fresh buffer per read, and at gigabytes per second freeing those buffers keeps
 * V8's garbage collector busy (see docs/performance.md). Backpressure is built in: a buffer is
 * refilled only after the socket has taken its previous contents.
 */
import type { ServerResponse } from 'node:http';
import type { FileHandle } from 'node:fs/promises';

/** Bytes per read and per write: large enough for few system calls, small enough for many clients. */
export const SEND_CHUNK = 256 * 1024;

/**
 * Writes bytes `[start, end]` (inclusive) of `file` to `res` and ends it; closes `file`. Rejects
 * when the client goes away or the file is shorter than `end`; the caller then destroys `res`.
 * `sent.bytes` counts what was handed to the socket.
 */
export async function sendFileRange(res: ServerResponse, file: FileHandle, start: number, end: number, sent: { bytes: number }): Promise<void> {
  const buffers = [Buffer.allocUnsafe(SEND_CHUNK), Buffer.allocUnsafe(SEND_CHUNK)];
  const writing: Array<Promise<void> | undefined> = [undefined, undefined];
  // A destroyed socket may never call a write's callback: the close event ends the wait instead.
  let gone: (err: Error) => void = () => undefined;
  const closed = new Promise<never>((_resolve, reject) => (gone = reject));
  closed.catch(() => undefined);
  const onClose = (): void => gone(new Error('the client went away'));
  res.once('close', onClose);
  try {
    let position = start;
    for (let slot = 0; position <= end; slot ^= 1) {
      if (writing[slot]) await Promise.race([writing[slot], closed]);
      const buffer = buffers[slot]!;
      const { bytesRead } = await file.read(buffer, 0, Math.min(SEND_CHUNK, end - position + 1), position);
      if (bytesRead === 0) throw new Error(`the stored file ends at byte ${position}, before ${end + 1}`);
      position += bytesRead;
      const chunk = bytesRead === buffer.length ? buffer : buffer.subarray(0, bytesRead);
      writing[slot] = new Promise<void>((resolve, reject) => res.write(chunk, (err) => (err ? reject(err) : resolve())));
      writing[slot]!.catch(() => undefined);
      sent.bytes += bytesRead;
    }
    await Promise.race([Promise.all(writing.filter((w) => w !== undefined)), closed]);
    await Promise.race([new Promise<void>((resolve) => res.end(resolve)), closed]);
  } finally {
    res.off('close', onClose);
    await file.close().catch(() => undefined);
  }
}
