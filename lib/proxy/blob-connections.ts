/**
 * The upstream connections feeding one blob fetch (blob-fetch.ts): the first one, and, while a
 * crawling fetch is raced (`proxy.overtake`, decided in overtake.ts), a second one: a Range request
 * from the bytes already received, hashed in order, onward (or the whole blob again from an
 * upstream that ignores ranges). Every connection feeds one frontier: a byte is taken from
 * whichever connection brings it first, in order, so the fetch hashes each byte once. After the
 * race's comparison the slower connection is cancelled; one that fails leaves the fetch to the other.
 */
import type { Readable } from 'node:stream';
import { DigestMismatchError } from '../errors.js';
import type { Digest } from '../distribution/digest.js';
import { Overtaker, type OvertakePolicy, type RaceEvent } from './overtake.js';

/** Raised to readers when the fetched bytes do not hash to the digest or have the wrong length. */
export class BlobVerificationError extends DigestMismatchError {}

/** What the connections feed: the fetch's frontier. */
interface Frontier {
  readonly digest: Digest;
  /** The size the upstream announced, if it did. */
  readonly size: number | undefined;
  /** Bytes of the blob taken, in order, so far. */
  readonly received: number;
  /** Clients reading the fetch. */
  readonly readers: number;
  /** The fetch failed: no connection is needed any more. */
  readonly failed: boolean;
  /** Takes the next bytes of the blob, in order. */
  take(chunk: Buffer): void;
  /** Waits while the fetch cannot take more (the disk's pace, or the slowest client's); true when it waited. */
  backpressure(): Promise<boolean>;
  /** The fetch crawls at `rate` and nobody reads it: it is to stop. */
  stopSlow(rate: number): void;
}

/** How a fetch is raced when it crawls; without `overtake` and `reopen`, never. */
export interface RaceOptions {
  readonly overtake?: OvertakePolicy;
  /**
   * Opens another upstream connection for the bytes from `offset` on: the body and the offset of
   * its first byte (0 when the upstream sent the whole blob).
   */
  reopen?(offset: number): Promise<{ body: Readable; start: number }>;
  onRace?(event: RaceEvent): void;
}

/** One upstream connection feeding the fetch. */
interface Source {
  readonly body: Readable;
  /** The blob offset of its next byte. */
  position: number;
  /** Bytes it brought, those another connection brought first included. */
  raw: number;
  cancelled: boolean;
}

/** The connections of one fetch. */
export class UpstreamConnections {
  /** The connections under way: one, or two while racing. */
  private readonly sources = new Set<Source>();
  /** Races the fetch when it crawls (`proxy.overtake`). */
  private overtaker?: Overtaker<Source>;
  private done = false;
  private resolve!: () => void;
  private reject!: (err: unknown) => void;
  /** Every byte has arrived (resolves), or no connection can bring the rest (rejects). */
  readonly arrived: Promise<void>;

  constructor(
    private readonly frontier: Frontier,
    private readonly race: RaceOptions,
    /** Told once when `arrived` settles. */
    private readonly onSettled: () => void = () => undefined,
  ) {
    this.arrived = new Promise<void>((res, rej) => ((this.resolve = res), (this.reject = rej)));
  }

  /** Reads `body`, the first connection, and watches the fetch's pace (racing it when it crawls). */
  start(body: Readable): void {
    this.add(body, 0);
    this.watch();
  }

  /** True once every byte has arrived or the fetch was ended. */
  get settled(): boolean {
    return this.done;
  }

  /** Ends the fetch with `err`: every connection is cancelled. */
  abort(err: Error): void {
    this.settle(err);
    this.cancel();
  }

  /** Cancels every connection but `except`. */
  cancel(except?: Source): void {
    for (const s of this.sources) {
      if (s === except) continue;
      s.cancelled = true;
      this.sources.delete(s);
      s.body.destroy();
    }
  }

  /** The fetch ended: no more racing, no connection left. */
  dispose(): void {
    this.overtaker?.dispose();
    this.cancel();
  }

  private add(body: Readable, start: number): Source {
    const source: Source = { body, position: start, raw: 0, cancelled: false };
    this.sources.add(source);
    void this.consume(source);
    return source;
  }

  /** Reads one connection into the frontier: only bytes no other connection brought yet are taken. */
  private async consume(source: Source): Promise<void> {
    const f = this.frontier;
    try {
      for await (const chunk of source.body as AsyncIterable<Buffer>) {
        source.raw += chunk.length;
        const from = source.position;
        source.position += chunk.length;
        if (source.position <= f.received) continue;
        if (f.size !== undefined && source.position > f.size) {
          throw new BlobVerificationError(`upstream sent more than the announced ${f.size} bytes for ${f.digest.value}`);
        }
        f.take(from < f.received ? chunk.subarray(f.received - from) : chunk);
        // Every byte is here: another connection has nothing left to bring.
        if (f.received === f.size) this.cancel(source);
        // Time spent waiting here is not the upstream's slowness.
        if (await f.backpressure()) this.overtaker?.waited();
      }
      if (source.cancelled) return;
      if (source.position < f.received || (f.size !== undefined && source.position < f.size)) {
        throw new BlobVerificationError(`upstream sent ${source.position} bytes for ${f.digest.value}, announced ${f.size ?? f.received}`);
      }
      this.sources.delete(source);
      this.cancel();
      this.overtaker?.finished(source);
      this.settle();
    } catch (err) {
      if (source.cancelled) return;
      this.lose(source, err);
    }
  }

  private settle(err?: unknown): void {
    if (this.done) return;
    this.done = true;
    this.onSettled();
    if (err === undefined) this.resolve();
    else this.reject(err);
  }

  /** A connection failed: the fetch goes on with the other one, if it races. */
  private lose(source: Source, err: unknown): void {
    this.sources.delete(source);
    this.overtaker?.lost(source, err instanceof Error ? err : new Error(String(err)));
    if (this.sources.size === 0) this.settle(err);
  }

  /** Races the fetch when it crawls, if overtaking is on. */
  private watch(): void {
    const { overtake, reopen } = this.race;
    if (!overtake || overtake.minBytesPerSecond <= 0 || !reopen) return;
    const f = this.frontier;
    // The getters below belong to the object literal, so they read this instance's state through a closure.
    const isDone = (): boolean => this.done;
    this.overtaker = new Overtaker<Source>(overtake, reopen, this.race.onRace, {
      get received() {
        return f.received;
      },
      get readers() {
        return f.readers;
      },
      get settled() {
        return isDone() || f.failed;
      },
      connections: () => [...this.sources],
      add: (body, start) => this.add(body, start),
      keepOnly: (source) => this.cancel(source),
      stop: (rate) => f.stopSlow(rate),
    });
  }
}
