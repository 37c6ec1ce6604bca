/**
 * One upstream download of a blob, written to the store and followed by any number of readers.
 * The upstream is read at the local disk's pace, not at the slowest client's. Each chunk is hashed
 * once as it arrives and kept in memory until it is written and, within `TEE_WINDOW` of the newest
 * byte, until the readers keeping up have taken it: those are served the upstream's very buffers
 * (a tee, as distribution's), never a read back. A client that falls further behind reads the
 * growing local file (the filesystem driver's temporary file, or a local spool in front of an
 * object store: `spooledWrite` in storage/blob-store.ts) at its own pace, so a slow client costs
 * no memory. A reader holds back the last byte until the digest and size are verified and the
 * blob is committed (synced, renamed into place and linked; on an object store, verified is
 * enough: its upload ends behind the readers), so wrong or truncated content always ends in an
 * aborted transfer, never in a clean end, and a client that got a blob finds it cached.
 *
 * When the disk refuses the write (ENOSPC, EDQUOT, EIO, a failed commit), the cache write is
 * abandoned and reported, but the clients' downloads go on: the bytes already on disk are read from
 * the (unlinked) temporary file, the rest is handed over from memory, and the upstream is then read
 * at the pace of the slowest client, holding at most `PASSTHROUGH_WINDOW` bytes.
 *
 * The bytes come in order from the fetch's upstream connections (blob-connections.ts: a fetch that
 * crawls is raced by a second connection), so the hash sees each byte once and the blob is verified
 * before its end is served and committed once. A crawling fetch that no client reads any more, and
 * that racing did not speed up, stops: it would hold the blob's lock and an upstream connection
 * for nothing.
 */
import { EventEmitter } from 'node:events';
import { Readable } from 'node:stream';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { MirrorError } from '../errors.js';
import { hasherFor, type Digest } from '../distribution/digest.js';
import { BlobVerificationError, UpstreamConnections, type RaceOptions } from './blob-connections.js';
import { chunkFor, type FileWriter, type PositionalReader } from '../storage/driver.js';
import type { SpooledWrite } from '../storage/blob-store.js';

/** Raised to a reader whose bytes are gone (dropped from memory, or the temporary file lost). */
export class BlobUnreadableError extends MirrorError {
  constructor(message: string) {
    super('ERR_BLOB_UNREADABLE', message);
  }
}

/** Raised to the readers of a crawling fetch that was stopped because no client read it any more. */
export class BlobFetchStoppedError extends MirrorError {
  constructor(message: string) {
    super('ERR_BLOB_FETCH_STOPPED', message);
  }
}

export type { RaceEvent } from './overtake.js';
export { BlobVerificationError } from './blob-connections.js';

/** Bytes received but not yet written before the upstream is paused for the disk. */
const WRITE_AHEAD = 1024 * 1024;

/** Written bytes kept in memory behind the newest byte for the readers keeping up (the tee). */
const TEE_WINDOW = 1024 * 1024;

/** Bytes a reader takes from the file at a time, at first and while it is slow. */
const READ_CHUNK = 64 * 1024;

/**
 * ... and once it has shown it keeps up (`chunkFor`): a fast client behind the tee (on a fast
 * upstream, most of a large blob's bytes) then costs a quarter of the reads, pushes and socket
 * writes. A cold 0.5 GiB image pulled on the loopback took a fifth less time and CPU with it, at
 * the same peak RSS; 1 MiB chunks saved little more and added 30 MiB (docs/performance.md).
 */
const READ_CHUNK_MAX = 256 * 1024;

/** Bytes held in memory, ahead of the slowest client, once the disk has failed. */
const PASSTHROUGH_WINDOW = 4 * 1024 * 1024;

/**
 * The young generation is collected after every `COLLECT_EVERY` bytes of buffers the cold fetches
 * allocate (the upstream's reads, each a new buffer of Node's HTTP client; the reads back from the
 * growing file of the readers that keep up). They die young, hashed, written and sent within a
 * few MiB, but V8 collects on its own only once external memory has grown by 64 MiB since its last
 * collection: that was most of a cold pull's peak RSS. Collected every 4 MiB, a cold 0.5 GiB image's peak went from 126-128 to
 * 101-103 MiB and five cold streams' from 132-142 to 102-107, with less CPU (fresh pages are
 * faulted in less); every 1 or 2 MiB kept more (buffers still in the windows survive two
 * collections and are promoted), every 8 or 16 MiB freed less (docs/performance.md).
 */
const COLLECT_EVERY = 4 * 1024 * 1024;
let allocatedSinceCollection = 0;
const collectYoung = youngCollector();

/** Counts `bytes` of buffers allocated for a fetch; collects the young generation every `COLLECT_EVERY`. */
function allocated(bytes: number): void {
  allocatedSinceCollection += bytes;
  if (allocatedSinceCollection < COLLECT_EVERY || !collectYoung) return;
  allocatedSinceCollection = 0;
  collectYoung();
}

/**
 * V8's `gc` function, asking for a young-generation collection (a scavenge of this small heap,
 * well under a millisecond). Exposed at run time, so that the process needs no flag however it is
 * started; the flag makes `gc` a global of contexts made after it, hence the new one. Undefined if
 * V8 refuses it: the buffers are then collected as before.
 */
function youngCollector(): (() => void) | undefined {
  try {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as (options: { type: 'minor' }) => void;
    return () => gc({ type: 'minor' });
  } catch {
    return undefined;
  }
}

/**
 * `streaming`: being written to disk; `passthrough`: the disk failed, handed over from memory;
 * `committed`: verified and stored; `uncached`: verified, not stored; `failed`: no good end.
 */
type State = 'streaming' | 'passthrough' | 'committed' | 'uncached' | 'failed';

/** How a fetch is started (`reopen`, `overtake`, `onRace`: how it is raced when it crawls). */
export interface BlobFetchOptions extends RaceOptions {
  readonly digest: Digest;
  /** The size the upstream announced (`Content-Length`), if it did. */
  readonly size: number | undefined;
  /** The write to the store and its read-back, or undefined when none could start (the fetch starts uncached). */
  readonly write: SpooledWrite | undefined;
  readonly body: Readable;
  /** Moves the verified file into the store and links it. */
  commit(writer: FileWriter): Promise<void>;
  /** The cache write was abandoned (the clients' downloads continue). */
  cacheWriteFailed?(err: Error): void;
  /**
   * `proxy.cachewritetimeout`: once its last client has left, the fetch goes on filling the cache
   * this long at most, then stops (a new client starts a fresh one). Undefined: no limit.
   */
  readonly cacheWriteTimeoutMs?: number;
}

/** A blob being fetched. Create with `BlobFetch.start`. */
export class BlobFetch {
  readonly digest: Digest;
  readonly size: number | undefined;
  private state: State = 'streaming';
  private error?: Error;
  /** Bytes received from the upstream. */
  private received = 0;
  /** Bytes on disk (readable through the shared descriptor). */
  private written = 0;
  /**
   * Chunks received, in order: those not yet written, and those within `TEE_WINDOW` of the newest
   * byte that a reader keeping up still needs; past the disk, every chunk a reader still needs (so
   * that the bytes from `written` on are here when the disk fails).
   */
  private tail: { offset: number; bytes: Buffer }[] = [];
  private tailBytes = 0;
  /** Tail bytes below this offset were dropped. */
  private trimmedTo = 0;
  private readonly positions = new Set<{ position: number }>();
  private readonly events = new EventEmitter();
  private readonly writer: FileWriter | undefined;
  private readonly spool: PositionalReader | undefined;
  private fdClosed = false;
  /**
   * Verified, its commit still under way, and the store's commit is remote (`SpooledWrite.remote`):
   * readers get the last byte now instead of after the upload's end and its round trips.
   */
  private released = false;

  /** Settles when the blob is verified (resolves) or abandoned (rejects). */
  readonly done: Promise<void>;
  private readonly hash: ReturnType<typeof hasherFor>;
  /** Chunks received and not yet handed to the writer (one gathered write per batch, not one per network chunk). */
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private writing: Promise<void> | undefined;
  /** The upstream connections bringing the bytes. */
  private readonly connections: UpstreamConnections;
  private stoppedSlow = false;
  /** Set while nobody reads the fetch: it stops when this fires (`cacheWriteTimeoutMs`). */
  private unreadTimer?: NodeJS.Timeout;

  private constructor(private readonly options: BlobFetchOptions) {
    this.digest = options.digest;
    this.size = options.size;
    this.events.setMaxListeners(0);
    // One shared reader of the local bytes, opened when the write started: positional reads keep
    // working through the commit, and through the cancel when the disk fails.
    this.writer = options.write?.writer;
    this.spool = options.write?.reader;
    if (!this.writer) this.state = 'passthrough';
    this.hash = hasherFor(this.digest);
    const fetch = this;
    this.connections = new UpstreamConnections(
      {
        digest: this.digest,
        size: this.size,
        get received() {
          return fetch.received;
        },
        get readers() {
          return fetch.positions.size;
        },
        get failed() {
          return fetch.state === 'failed';
        },
        take: (chunk) => this.take(chunk),
        backpressure: () => this.backpressure(),
        stopSlow: (rate) => {
          this.stoppedSlow = true;
          this.connections.abort(
            new BlobFetchStoppedError(`the fetch of ${this.digest.value} was stopped: no client reads it and it crawls at ${Math.round(rate)} bytes/s`),
          );
        },
      },
      options,
      () => {
        clearTimeout(this.unreadTimer);
      },
    );
    this.done = this.pump();
    // `done` is awaited by whoever cares; an unobserved failure must not crash the process.
    this.done.catch(() => undefined);
  }

  /** Starts copying the upstream body into the writer. */
  static start(options: BlobFetchOptions): BlobFetch {
    return new BlobFetch(options);
  }

  /** Bytes on disk so far. */
  get bytesWritten(): number {
    return this.written;
  }

  /** True while the blob is being written to disk; new clients join such a fetch. */
  get streaming(): boolean {
    return this.state === 'streaming';
  }

  /**
   * Verified and being committed with its last byte released to readers: a new client waits for
   * the commit (`done`) and is then served from the store, as it would be a moment later.
   */
  get committing(): boolean {
    return this.released && this.state === 'streaming';
  }

  get committed(): boolean {
    return this.state === 'committed';
  }

  get failed(): boolean {
    return this.state === 'failed';
  }

  /** True when the fetch was stopped for crawling with nobody reading it (a new client starts a fresh one). */
  get stopped(): boolean {
    return this.stoppedSlow;
  }

  /** Whether a reader starting at `start` can still be served every byte from here to the end. */
  canRead(start: number): boolean {
    if (this.state === 'streaming') return true;
    if (this.state !== 'passthrough' && this.state !== 'uncached') return false;
    const nothingDropped = this.trimmedTo <= this.written;
    if (start >= this.written) return nothingDropped || start >= this.trimmedTo;
    return nothingDropped && !this.fdClosed;
  }

  private async pump(): Promise<void> {
    const writer = this.writer;
    try {
      this.connections.start(this.options.body);
      await this.connections.arrived;
      if (this.size !== undefined && this.received !== this.size) {
        throw new BlobVerificationError(`upstream sent ${this.received} bytes for ${this.digest.value}, announced ${this.size}`);
      }
      const actual = `${this.digest.algorithm}:${this.hash.digest('hex')}`;
      if (actual !== this.digest.value) {
        throw new BlobVerificationError(`upstream bytes hash to ${actual}, not ${this.digest.value}`);
      }
      // Verified, before an object store's upload ends: its readers need not wait for it.
      if (this.options.write?.remote) {
        this.released = true;
        this.events.emit('change');
      }
      await this.writing;
      if (this.pending.length > 0) await this.drain();
      if (this.state === 'streaming') {
        try {
          await this.options.commit(writer!);
          this.state = 'committed';
          // Everything is in the file now.
          this.tail = [];
          this.tailBytes = 0;
        } catch (err) {
          this.abandonCache(err);
        }
      }
      if (this.state === 'passthrough') this.state = 'uncached';
    } catch (err) {
      this.state = 'failed';
      this.error = err instanceof Error ? err : new Error(String(err));
      this.connections.cancel();
      await this.writing;
      await writer?.cancel().catch(() => undefined);
      throw this.error;
    } finally {
      this.connections.dispose();
      this.events.emit('change');
      if (this.positions.size === 0) await this.closeFd();
    }
  }

  /** The next bytes of the blob, in order: hashed, kept until written, queued for the writer. */
  private take(chunk: Buffer): void {
    this.hash.update(chunk);
    allocated(chunk.length);
    // Kept until written (past the disk, until every reader has it).
    this.tail.push({ offset: this.received, bytes: chunk });
    this.tailBytes += chunk.length;
    this.received += chunk.length;
    this.events.emit('change');
    if (this.state === 'streaming') {
      this.pending.push(chunk);
      this.pendingBytes += chunk.length;
      this.writing ??= this.drain().finally(() => (this.writing = undefined));
    }
  }

  /**
   * The upstream is read at the disk's pace; past the disk, no faster than the slowest client.
   * True when it waited (time that is not the upstream's slowness).
   */
  private async backpressure(): Promise<boolean> {
    let waited = false;
    if (this.state === 'streaming' && this.pendingBytes > WRITE_AHEAD && this.writing) {
      waited = true;
      await this.writing;
    }
    while (this.state === 'passthrough' && this.received - this.lowWater() > PASSTHROUGH_WINDOW) {
      waited = true;
      await new Promise<void>((resolve) => this.events.once('progress', resolve));
    }
    return waited;
  }

  /** Chunks arriving while a write is under way are written together by the next one, gathered (no copy). */
  private async drain(): Promise<void> {
    while (this.pending.length > 0 && this.state === 'streaming') {
      const batch = this.pending;
      const bytes = this.pendingBytes;
      this.pending = [];
      this.pendingBytes = 0;
      try {
        const writer = this.writer!;
        if (batch.length === 1) await writer.write(batch[0]!);
        else if (writer.writev) await writer.writev(batch);
        else await writer.write(Buffer.concat(batch, bytes));
        this.written += bytes;
        this.trim();
      } catch (err) {
        this.abandonCache(err);
      }
    }
    this.pending = [];
    this.pendingBytes = 0;
  }

  /** Nobody reads the fetch any more: it may fill the cache for `cacheWriteTimeoutMs`, no longer. */
  private stopWhenUnread(): void {
    const ms = this.options.cacheWriteTimeoutMs;
    if (ms === undefined || this.connections.settled || this.unreadTimer) return;
    this.unreadTimer = setTimeout(() => {
      this.unreadTimer = undefined;
      if (this.positions.size > 0 || this.connections.settled) return;
      this.stoppedSlow = true;
      const err = new BlobFetchStoppedError(`the fetch of ${this.digest.value} was stopped: no client has read it for proxy.cachewritetimeout (${ms} ms)`);
      this.options.cacheWriteFailed?.(err);
      this.connections.abort(err);
    }, ms);
    // The fetch's own connection keeps the process busy; this timer alone must not.
    this.unreadTimer.unref();
  }

  /** The disk failed: stop writing, drop the temporary file, keep serving the readers. */
  private abandonCache(err: unknown): void {
    // A write finishing after the fetch failed changes nothing.
    if (this.state !== 'streaming') return;
    this.state = 'passthrough';
    this.trimmedTo = this.written;
    void this.writer?.cancel().catch(() => undefined);
    this.options.cacheWriteFailed?.(err instanceof Error ? err : new Error(String(err)));
  }

  /** The lowest offset a reader reading from memory (at or past the tail's first byte) still needs; `received` when none does. */
  private memoryLowWater(): number {
    const first = this.tail[0]?.offset ?? this.received;
    let low = this.received;
    for (const p of this.positions) if (p.position >= first && p.position < low) low = p.position;
    return low;
  }

  /** The lowest offset a reader still needs. */
  private lowWater(): number {
    if (this.positions.size === 0) return this.trimmedTo;
    let low = Number.MAX_SAFE_INTEGER;
    for (const p of this.positions) low = Math.min(low, p.position);
    return low;
  }

  /**
   * Drops tail bytes nobody needs from memory: while the disk works, those written that no reader
   * keeping up needs, and those written more than `TEE_WINDOW` behind the newest byte (a reader
   * that far behind reads the file); past the disk, those every reader has passed.
   */
  private trim(): void {
    if (this.state === 'streaming' || this.state === 'committed') {
      const keepFrom = Math.min(this.written, Math.max(this.memoryLowWater(), this.received - TEE_WINDOW));
      while (this.tail.length > 0 && this.tail[0]!.offset + this.tail[0]!.bytes.length <= keepFrom) {
        this.tailBytes -= this.tail.shift()!.bytes.length;
      }
      return;
    }
    if (this.positions.size === 0) return;
    const low = this.lowWater();
    while (this.tail.length > 0 && this.tail[0]!.offset + this.tail[0]!.bytes.length <= low) this.tailBytes -= this.tail.shift()!.bytes.length;
    this.trimmedTo = Math.max(this.trimmedTo, this.tail[0]?.offset ?? Math.min(low, this.received));
  }

  /**
   * A stream of bytes `[start, end]` of the blob (inclusive; `end` defaults to the last byte). It
   * errors if the fetch fails, and ends only after the blob was verified. Check `canRead` first.
   */
  createReader(start = 0, end?: number): Readable {
    const cursor = { position: start };
    const began = performance.now();
    this.positions.add(cursor);
    clearTimeout(this.unreadTimer);
    this.unreadTimer = undefined;
    const last = end ?? (this.size !== undefined ? this.size - 1 : Number.MAX_SAFE_INTEGER);
    let finished = false;
    const release = async (): Promise<void> => {
      if (finished) return;
      finished = true;
      this.positions.delete(cursor);
      this.trim();
      this.events.emit('progress');
      // Nobody is left to hand the bytes to, and they cannot be cached: stop downloading.
      if (this.positions.size === 0 && this.state === 'passthrough') this.connections.abort(new Error('every client left an uncached fetch'));
      if (this.positions.size === 0 && this.state === 'streaming') this.stopWhenUnread();
      if (this.positions.size === 0 && this.state !== 'streaming') await this.closeFd();
    };
    const fetch = this;
    return new Readable({
      // Small: a slow client holds this much here and as much in its socket's buffer, times the
      // number of slow clients (200 slow readers held 600 MiB with 1 MiB; 177 MiB peak RSS in all with this).
      highWaterMark: READ_CHUNK,
      read() {
        fetch.readChunk(cursor.position, last, chunkFor(cursor.position - start, performance.now() - began, READ_CHUNK, READ_CHUNK_MAX)).then(
          (chunk) => {
            if (chunk === null) {
              void release();
              this.push(null);
            } else {
              cursor.position += chunk.length;
              fetch.trim();
              fetch.events.emit('progress');
              this.push(chunk);
            }
          },
          (err: Error) => {
            void release();
            this.destroy(err);
          },
        );
      },
      destroy(err, callback) {
        void release().finally(() => callback(err));
      },
    });
  }

  /** The next chunk at `position`, at most `chunk` bytes, waiting for the upstream when needed; null at the end. */
  private async readChunk(position: number, last: number, chunk: number): Promise<Buffer | null> {
    for (;;) {
      if (this.state === 'failed') throw this.error!;
      const verified = this.released || this.state === 'committed' || this.state === 'uncached';
      // Every byte received is in memory (the tail) or in the file; once committed, all in the file.
      const known = this.state === 'committed' ? this.written : this.received;
      // Until verified, the blob's last byte is held back: the last byte announced, or with no size
      // announced the last byte received. (Holding back the last byte received whatever the size
      // split every chunk's socket write in two, its last byte going out with the next chunk.)
      const held = this.size !== undefined ? this.size - 1 : known - 1;
      const end = Math.min(last + 1, verified ? known : Math.min(known, held));
      if (position >= end) {
        if (verified) return null;
        await new Promise<void>((resolve) => this.events.once('change', resolve));
        continue;
      }
      // A reader keeping up takes the upstream's buffers themselves; one further behind, the file.
      if (this.tail.length > 0 && position >= this.tail[0]!.offset) return this.fromTail(position, end, chunk);
      if (position >= this.written) throw new BlobUnreadableError(`bytes at ${position} of ${this.digest.value} were dropped`);
      const length = Math.min(Math.min(end, this.written) - position, chunk);
      if (!this.spool || this.fdClosed) throw new BlobUnreadableError(`the temporary file of ${this.digest.value} is gone`);
      const buffer = Buffer.allocUnsafe(length);
      // Counted for a reader that keeps up (its chunks grown, `chunkFor`): its buffers are sent
      // at once. A slow one's wait in its socket's queue, and collecting them young only promotes
      // them (200 slow clients peaked at up to 207 MiB counting them, at most 176 without).
      if (chunk > READ_CHUNK) allocated(length);
      const bytesRead = await this.spool.read(buffer, 0, length, position);
      if (bytesRead === 0) throw new BlobUnreadableError(`the temporary file of ${this.digest.value} is shorter than written`);
      return buffer.subarray(0, bytesRead);
    }
  }

  private fromTail(position: number, end: number, chunk: number): Buffer {
    const held = this.tail.find((c) => c.offset <= position && position < c.offset + c.bytes.length);
    if (!held) throw new BlobUnreadableError(`bytes at ${position} of ${this.digest.value} were dropped`);
    const from = position - held.offset;
    const to = Math.min(held.bytes.length, end - held.offset, from + chunk);
    return held.bytes.subarray(from, to);
  }

  private async closeFd(): Promise<void> {
    if (this.fdClosed) return;
    this.fdClosed = true;
    await this.spool?.close().catch(() => undefined);
  }
}
