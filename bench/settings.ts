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
  /** Scenario 6: concurrent cold streams of different blobs, and slow readers of one cold blob. */
  readonly coldStreams: number;
  readonly coldStreamBytes: number;
  readonly slowClients: number;
  readonly slowSeconds: number;
  readonly slowBytesPerSec: number;
  /** Where the JSON results go. */
  readonly out: string;
}

/** Reads the settings from the environment. */
export function readSettings(env: NodeJS.ProcessEnv = process.env): Settings {
  const quick = env.BENCH_QUICK === '1';
  const rounds = Number(env.BENCH_ROUNDS ?? (quick ? 1 : 3));
  if (!Number.isInteger(rounds) || rounds < 1) throw new Error(`BENCH_ROUNDS must be a positive integer, not ${env.BENCH_ROUNDS}`);
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
    coldStreams: quick ? 5 : 20,
    coldStreamBytes: (quick ? 64 : 256) * MiB,
    slowClients: 200,
    slowSeconds: quick ? 3 : 8,
    slowBytesPerSec: 1 * MiB,
    out: env.BENCH_OUT ?? 'bench/results.json',
  };
}
