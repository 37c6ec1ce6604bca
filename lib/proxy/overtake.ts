/**
 * When a blob fetch is raced by a second upstream connection (the extension `proxy.overtake`): a
 * fetch that moved fewer than `minBytesPerSecond` over `afterMs` (not counting time it waited for
 * the disk or for clients) is slow. Docker Hub's CDN, like any, now and then hands out a connection
 * that trickles while a new one would be fast; the idle timeout never fires on a trickle.
 *
 * `Overtaker` holds the decisions; the fetch (blob-fetch.ts) holds the connections and the bytes.
 * A slow fetch gets a second connection from the bytes it has (a race); after `comparisonMs` the
 * connection that brought less is cancelled (the racer must be `WIN_FACTOR` faster to win). A
 * fetch races `MAX_RACES` times at most. A slow fetch that no client reads, and that a race did not
 * speed up (or that raced its last), is stopped.
 */
import type { Readable } from 'node:stream';

/** The floor and how long a fetch may stay under it. */
export interface OvertakePolicy {
  /** Bytes per second; 0 turns overtaking off. */
  readonly minBytesPerSecond: number;
  readonly afterMs: number;
}

/** Races a fetch may start: a link that is slow for every connection costs at most this many comparisons. */
const MAX_RACES = 3;

/** A racer must beat the connection it races by this factor to win. */
const WIN_FACTOR = 1.25;

/** How long two connections run side by side before the slower is cancelled. */
function comparisonMs(policy: OvertakePolicy): number {
  return Math.min(3000, Math.max(500, policy.afterMs / 2));
}

/** How often a fetch looks at its throughput. */
export function tickMs(policy: OvertakePolicy): number {
  return Math.min(1000, Math.max(50, policy.afterMs / 4));
}

/** A tumbling window over the bytes a fetch has moved. */
class ThroughputWindow {
  private startedAt: number;
  private startBytes: number;

  constructor(
    private readonly policy: OvertakePolicy,
    now: number,
    bytes: number,
  ) {
    this.startedAt = now;
    this.startBytes = bytes;
  }

  /** Starts over (the fetch waited for the disk or its clients, or a race just ended). */
  reset(now: number, bytes: number): void {
    this.startedAt = now;
    this.startBytes = bytes;
  }

  /**
   * The rate over the window once it is `afterMs` long (and a new window begins), else undefined.
   */
  close(now: number, bytes: number): number | undefined {
    const elapsed = now - this.startedAt;
    if (elapsed < this.policy.afterMs) return undefined;
    const rate = ((bytes - this.startBytes) * 1000) / elapsed;
    this.reset(now, bytes);
    return rate;
  }
}

/** `1.5 MiB/s`, for log lines. */
export function formatRate(bytesPerSecond: number): string {
  if (bytesPerSecond >= 1024 * 1024) return `${(bytesPerSecond / 1024 / 1024).toFixed(1)} MiB/s`;
  if (bytesPerSecond >= 1024) return `${(bytesPerSecond / 1024).toFixed(1)} KiB/s`;
  return `${Math.round(bytesPerSecond)} B/s`;
}

/** What racing a slow fetch did (for logs and metrics); rates in bytes per second. */
export type RaceEvent =
  | { readonly kind: 'started'; readonly offset: number; readonly rate: number }
  | { readonly kind: 'won' | 'lost'; readonly racerRate: number; readonly rate: number }
  | { readonly kind: 'failed'; readonly error: Error }
  | { readonly kind: 'stopped'; readonly rate: number };

/** A connection as the race sees it. */
export interface RaceConnection {
  /** Bytes it brought so far. */
  readonly raw: number;
}

/** What the race needs of the fetch. */
export interface RaceTarget<C extends RaceConnection> {
  /** Bytes of the blob received in order. */
  readonly received: number;
  /** Clients reading the fetch. */
  readonly readers: number;
  /** Every byte arrived, or the fetch failed. */
  readonly settled: boolean;
  connections(): readonly C[];
  /** Feeds another connection, whose first byte is at `start`. */
  add(body: Readable, start: number): C;
  /** Cancels every connection but `keep`. */
  keepOnly(keep: C): void;
  /** Ends the fetch: it crawls at `rate` and nobody reads it. */
  stop(rate: number): void;
}

/** Watches one fetch's throughput and races it when it crawls. */
export class Overtaker<C extends RaceConnection> {
  private readonly window: ThroughputWindow;
  private readonly timer: NodeJS.Timeout;
  private race?: { readonly racer: C; readonly rival: C; readonly rivalRaw: number; readonly startedAt: number };
  /** A second connection is being opened. */
  private opening = false;
  private races = 0;
  /** The last race did not make the fetch faster. */
  private lastRaceLost = false;

  constructor(
    private readonly policy: OvertakePolicy,
    /** Opens a connection for the bytes from `offset` on: its body and the offset of its first byte. */
    private readonly reopen: (offset: number) => Promise<{ body: Readable; start: number }>,
    private readonly onRace: ((event: RaceEvent) => void) | undefined,
    private readonly fetch: RaceTarget<C>,
  ) {
    this.window = new ThroughputWindow(policy, Date.now(), fetch.received);
    this.timer = setInterval(() => this.tick(), tickMs(policy));
    this.timer.unref();
  }

  dispose(): void {
    clearInterval(this.timer);
  }

  /** The fetch waited for the disk or its clients: that time is not the upstream's. */
  waited(): void {
    this.window.reset(Date.now(), this.fetch.received);
  }

  /** `connection` brought the last byte: a race under way is decided by it. */
  finished(connection: C): void {
    if (!this.race) return;
    const { racer, rival, rivalRaw, startedAt } = this.race;
    this.race = undefined;
    const seconds = Math.max(0.001, (Date.now() - startedAt) / 1000);
    this.onRace?.({ kind: connection === racer ? 'won' : 'lost', racerRate: racer.raw / seconds, rate: (rival.raw - rivalRaw) / seconds });
  }

  /** A connection failed; the fetch goes on with the other if there is one. */
  lost(connection: C, error: Error): void {
    if (!this.race) return;
    const { racer, rival, startedAt } = this.race;
    if (connection !== racer && connection !== rival) return;
    this.race = undefined;
    const now = Date.now();
    this.window.reset(now, this.fetch.received);
    if (connection === racer) {
      this.lastRaceLost = true;
      this.onRace?.({ kind: 'failed', error });
    } else {
      // The connection raced failed: the racer carries on alone.
      this.onRace?.({ kind: 'won', racerRate: (racer.raw * 1000) / Math.max(1, now - startedAt), rate: 0 });
    }
  }

  private tick(): void {
    if (this.fetch.settled || this.opening) return;
    const now = Date.now();
    if (this.race) {
      if (now - this.race.startedAt >= comparisonMs(this.policy)) this.judge(now);
      return;
    }
    const rate = this.window.close(now, this.fetch.received);
    if (rate === undefined || rate >= this.policy.minBytesPerSecond) return;
    // Nobody reads it, and a race did not help (or none is left): it cannot be cached in time.
    if (this.fetch.readers === 0 && (this.lastRaceLost || this.races >= MAX_RACES)) {
      this.onRace?.({ kind: 'stopped', rate });
      this.fetch.stop(rate);
      return;
    }
    if (this.races < MAX_RACES) this.start(rate);
  }

  private start(rate: number): void {
    this.races++;
    this.opening = true;
    const offset = this.fetch.received;
    // Both connections are measured from now: the racer's time to connect counts against it, and
    // the bytes it brought while connecting do not count as arriving in no time.
    const rival = this.fetch.connections()[0];
    const rivalRaw = rival?.raw ?? 0;
    const startedAt = Date.now();
    this.onRace?.({ kind: 'started', offset, rate });
    this.reopen(offset).then(
      ({ body, start }) => {
        this.opening = false;
        if (this.fetch.settled || !rival || this.fetch.connections()[0] !== rival || start > this.fetch.received) {
          body.destroy();
          if (start > this.fetch.received) this.failed(new Error(`the upstream answered a range from byte ${offset} with bytes from ${start}`));
          return;
        }
        this.race = { racer: this.fetch.add(body, start), rival, rivalRaw, startedAt };
      },
      (err: Error) => {
        this.opening = false;
        this.failed(err);
      },
    );
  }

  private failed(error: Error): void {
    this.lastRaceLost = true;
    this.window.reset(Date.now(), this.fetch.received);
    this.onRace?.({ kind: 'failed', error });
  }

  /** The connection that brought less over the comparison is cancelled. */
  private judge(now: number): void {
    const { racer, rival, rivalRaw, startedAt } = this.race!;
    this.race = undefined;
    const seconds = Math.max(0.001, (now - startedAt) / 1000);
    const racerRate = racer.raw / seconds;
    const rate = (rival.raw - rivalRaw) / seconds;
    const won = racerRate > rate * WIN_FACTOR;
    this.fetch.keepOnly(won ? racer : rival);
    this.lastRaceLost = !won;
    this.window.reset(now, this.fetch.received);
    this.onRace?.({ kind: won ? 'won' : 'lost', racerRate, rate });
  }
}
