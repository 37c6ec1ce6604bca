/**
 * Concurrent requests for one key share one promise (zot's on-demand sync, distribution's
 * `inflight` map): the first caller starts the work, later callers join it until it settles.
 */
export class Inflight<T> {
  private readonly running = new Map<string, Promise<T>>();

  /** Runs `work` for `key` unless a run for `key` is already under way, whose promise is returned. */
  run(key: string, work: () => Promise<T>): Promise<T> {
    const existing = this.running.get(key);
    if (existing) return existing;
    const promise = (async () => {
      try {
        return await work();
      } finally {
        this.running.delete(key);
      }
    })();
    this.running.set(key, promise);
    return promise;
  }
}
