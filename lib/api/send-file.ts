/**
 * Sends part of a stored file to a response through two buffers that are reused for the whole
 * transfer: one is read from the disk while the other is being written to the socket. A stream
 * would allocate a fresh buffer per read, and at gigabytes per second freeing those buffers keeps
 * V8's garbage collector busy (see docs/performance.md). Backpressure is built in: a buffer is
 * refilled only after the socket has taken its previous contents.
 *
 * The buffers are `SEND_CHUNK` long at first, and `SEND_CHUNK_MAX` once the client has shown it
 * keeps up (`chunkFor`, storage/driver.ts): a fast reader is served with a quarter of the
 * chunks, while a slow one never holds more than two small buffers. The loop is plain callbacks:
 * no promise per chunk.
 */
import { read } from 'node:fs';
import type { ServerResponse } from 'node:http';
import type { FileHandle } from 'node:fs/promises';
import { chunkFor } from '../storage/driver.js';

/** Bytes per read and per write at the start of a transfer: small enough for many slow clients. */
export const SEND_CHUNK = 256 * 1024;
/** The largest chunk a transfer grows to while its client keeps up: few system calls per GiB. */
export const SEND_CHUNK_MAX = 1024 * 1024;

/**
 * Writes bytes `[start, end]` (inclusive) of `file` to `res` and ends it; closes `file`. Rejects
 * when the client goes away or the file is shorter than `end`; the caller then destroys `res`.
 * `sent.bytes` counts what was handed to the socket.
 */
export function sendFileRange(res: ServerResponse, file: FileHandle, start: number, end: number, sent: { bytes: number }): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let position = start;
    let chunk = SEND_CHUNK;
    const began = performance.now();
    /** Buffers the socket has taken back, and how many exist (at most two). */
    const free: Buffer[] = [];
    let buffers = 0;
    let reading = false;
    /** Chunks handed to the socket that it has not taken yet. */
    let writing = 0;
    let ending = false;
    let failure: Error | undefined;
    let settled = false;

    // The descriptor is closed only once no read uses it (a closed number may be reused at once).
    const settle = (): void => {
      if (settled || reading) return;
      settled = true;
      res.off('close', onClose);
      void file
        .close()
        .catch(() => undefined)
        .then(() => (failure ? reject(failure) : resolve()));
    };
    const fail = (err: Error): void => {
      failure ??= err;
      settle();
    };
    // A destroyed socket may never call a write's callback: the close event ends the wait instead.
    // Once `end()` has been called every byte is with the socket, and a close before its callback
    // is the connection's normal end (a client that read it all and hung up, `Connection: close`).
    const onClose = (): void => (ending ? settle() : fail(new Error('the client went away')));
    res.once('close', onClose);

    /** A buffer for the next read of `want` bytes: a free one of the right size, or a new one while fewer than two exist. */
    const take = (want: number): Buffer | undefined => {
      const b = free.pop();
      if (b && b.length >= want && b.length <= chunk) return b;
      if (!b && buffers === 2) return undefined;
      if (!b) buffers++;
      return Buffer.allocUnsafe(want);
    };

    const pump = (): void => {
      if (failure || reading || ending) return;
      if (position > end) {
        if (writing > 0) return;
        ending = true;
        res.end(() => settle());
        return;
      }
      const want = Math.min(chunk, end - position + 1);
      const buffer = take(want);
      if (!buffer) return;
      reading = true;
      read(file.fd, buffer, 0, want, position, (err, bytesRead) => {
        reading = false;
        if (failure) return settle();
        if (err) return fail(err);
        if (bytesRead === 0) return fail(new Error(`the stored file ends at byte ${position}, before ${end + 1}`));
        position += bytesRead;
        chunk = chunkFor(position - start, performance.now() - began, SEND_CHUNK, SEND_CHUNK_MAX);
        writing++;
        sent.bytes += bytesRead;
        res.write(bytesRead === buffer.length ? buffer : buffer.subarray(0, bytesRead), (werr) => {
          writing--;
          if (werr) return fail(werr);
          free.push(buffer);
          pump();
        });
        pump();
      });
    };
    pump();
  });
}
