/** The bench's parameters: full run by default, `BENCH_QUICK=1` for a short one, `BENCH_ROUNDS=n`. */

const MiB = 1024 * 1024;

/** Sizes, counts and durations of every scenario. */
export interface Settings {
  readonly quick: boolean;
  readonly rounds: number;
  /** Scenario 1/7: the cached blob, its concurrent readers and how long they read. */
  readonly warmBlobBytes: number;
  readonly blobReaders: number;
  readonly blobSeconds: number;
  /** Scenarios 2/3: wrk connections and duration. */
  readonly manifestClients: number;
  readonly wrkSeconds: number;
  /** Scenarios 4/5: layer sizes of the pulled image, concurrent pulls in scenario 5. */
  readonly imageLayers: number[];
  /** Scenario 4: cold pulls per contender and round (the round's sample is their median). */
  readonly coldPullReps: number;
  readonly concurrentPulls: number;
  /**
   * Scenario 6: concurrent cold streams of different blobs (`BENCH_COLD_STREAMS`, default 20, quick
   * 5; `BENCH_COLD_STREAM_MIB`, default 256, quick 64), and slow readers of one cold blob.
   */
  readonly coldStreams: number;
  readonly coldStreamBytes: number;
  readonly slowClients: number;
  readonly slowSeconds: number;
  readonly slowBytesPerSec: number;
  /** The WAN scenario: link profiles, rounds (default 1), fleet size, warm pulls, the big layer. */
  readonly wanProfiles: WanProfile[];
  readonly wanRounds: number;
  readonly wanFleet: number;
  readonly wanWarmPulls: number;
  readonly wanLayerBytes: number;
  /** The large-image scenario: the image's layer bytes in all (`BENCH_LARGE_MIB`), and the rounds it runs in (`BENCH_LARGE_ROUNDS`, default 1). */
  readonly largeImageBytes: number;
  readonly largeRounds: number;
  /** The chaos scenario: seconds of pulling per contender, clients, share of upstream requests broken. */
  readonly chaosSeconds: number;
  readonly chaosClients: number;
  readonly chaosFaultRate: number;
  /**
   * The S3 scenario's cold pull through the official contenders too, on the same gateway and on
   * the filesystem (`BENCH_S3_OFFICIALS=0` leaves them out): their own S3/filesystem ratio is what
   * the gateway costs on this machine.
   */
  readonly s3Officials: boolean;
  /** Where the JSON results go. */
  readonly out: string;
}

/** An internet-like link: round-trip time and bandwidth (shared by all connections, each way). */
export interface WanProfile {
  /** `40ms-25MBps`: the profile's name in metric ids. */
  readonly key: string;
  readonly rttMs: number;
  /** Decimal megabytes per second (25 MB/s = 25,000,000 bytes/s). */
  readonly mbPerSec: number;
}

/** `BENCH_WAN_PROFILES=40:25,150:5`: round-trip ms and MB/s per profile. */
export function parseWanProfiles(text: string): WanProfile[] {
  return text.split(',').map((part) => {
    const m = /^\s*(\d+(?:\.\d+)?)\s*:\s*(\d+(?:\.\d+)?)\s*$/.exec(part);
    if (!m) throw new Error(`BENCH_WAN_PROFILES: "${part}" is not <round-trip ms>:<MB/s>`);
    const rttMs = Number(m[1]);
    const mbPerSec = Number(m[2]);
    return { key: `${rttMs}ms-${mbPerSec}MBps`, rttMs, mbPerSec };
  });
}

function positive(raw: string | undefined, fallback: number, name: string): number {
  const n = Number(raw ?? fallback);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name} must be a positive integer, not ${raw}`);
  return n;
}

function rate(raw: string | undefined, fallback: number): number {
  const n = Number(raw ?? fallback);
  if (!(n >= 0 && n <= 1)) throw new Error(`BENCH_CHAOS_FAULT_RATE must be between 0 and 1, not ${raw}`);
  return n;
}

/** Reads the settings from the environment. */
export function readSettings(env: NodeJS.ProcessEnv = process.env): Settings {
  const quick = env.BENCH_QUICK === '1';
  const rounds = positive(env.BENCH_ROUNDS, quick ? 1 : 3, 'BENCH_ROUNDS');
  return {
    quick,
    rounds,
    warmBlobBytes: 256 * MiB,
    blobReaders: 4,
    blobSeconds: quick ? 2 : 4,
    manifestClients: 16,
    wrkSeconds: quick ? 2 : 5,
    imageLayers: [24 * MiB, 16 * MiB, 12 * MiB, 8 * MiB, 2 * MiB],
    coldPullReps: quick ? 1 : 3,
    concurrentPulls: 10,
    coldStreams: positive(env.BENCH_COLD_STREAMS, quick ? 5 : 20, 'BENCH_COLD_STREAMS'),
    coldStreamBytes: positive(env.BENCH_COLD_STREAM_MIB, quick ? 64 : 256, 'BENCH_COLD_STREAM_MIB') * MiB,
    slowClients: 200,
    slowSeconds: quick ? 3 : 8,
    slowBytesPerSec: 1 * MiB,
    wanProfiles: parseWanProfiles(env.BENCH_WAN_PROFILES ?? (quick ? '40:25' : '40:25,150:5')),
    wanRounds: positive(env.BENCH_WAN_ROUNDS, 1, 'BENCH_WAN_ROUNDS'),
    wanFleet: 10,
    wanWarmPulls: 10,
    wanLayerBytes: 64 * MiB,
    largeImageBytes: positive(env.BENCH_LARGE_MIB, quick ? 512 : 4096, 'BENCH_LARGE_MIB') * MiB,
    largeRounds: positive(env.BENCH_LARGE_ROUNDS, 1, 'BENCH_LARGE_ROUNDS'),
    chaosSeconds: positive(env.BENCH_CHAOS_SECONDS, quick ? 40 : 90, 'BENCH_CHAOS_SECONDS'),
    chaosClients: positive(env.BENCH_CHAOS_CLIENTS, 6, 'BENCH_CHAOS_CLIENTS'),
    chaosFaultRate: rate(env.BENCH_CHAOS_FAULT_RATE, 0.15),
    s3Officials: env.BENCH_S3_OFFICIALS !== '0',
    out: env.BENCH_OUT ?? 'bench/results.json',
  };
}
