/**
 * The registered health checks of one process, polled in the background as distribution does
 * (`health/health.go`): each runs every `interval`, and turns unhealthy after `threshold`
 * consecutive failures (0: at the first). Requests read the last known status and never wait for a
 * check; while any check is unhealthy the registry answers every request with 503 UNAVAILABLE.
 */
import type { HealthConfig } from '../config/types.js';
import type { StorageDriver } from '../storage/driver.js';
import { fileCheck, httpCheck, tcpCheck, type HealthCheck } from './probes.js';

interface Entry {
  readonly check: HealthCheck;
  readonly intervalMs: number;
  readonly threshold: number;
  failures: number;
  error?: string;
  running: boolean;
  timer?: NodeJS.Timeout;
}

/** A set of polled checks by name. */
export class HealthChecks {
  private readonly entries = new Map<string, Entry>();

  /** Adds a check; it first runs one interval after `start`, as distribution's ticker. */
  register(name: string, check: HealthCheck, intervalMs: number, threshold = 0): void {
    this.entries.set(name, { check, intervalMs, threshold, failures: 0, running: false });
  }

  /** The checks distribution registers for `health` (names as in its `/debug/health`). */
  static fromConfig(config: HealthConfig, driver: StorageDriver): HealthChecks {
    const checks = new HealthChecks();
    const sd = config.storagedriver;
    if (sd.enabled) checks.register(`storagedriver_${driver.name}`, () => driver.healthCheck(), sd.intervalms, sd.threshold);
    for (const f of config.file) checks.register(f.file, fileCheck(f.file), f.intervalms);
    for (const h of config.http) checks.register(h.uri, httpCheck(h.uri, h.statuscode, h.timeoutms, h.headers), h.intervalms, h.threshold);
    for (const t of config.tcp) checks.register(t.addr, tcpCheck(t.addr, t.timeoutms), t.intervalms, t.threshold);
    return checks;
  }

  get size(): number {
    return this.entries.size;
  }

  /** Starts polling. */
  start(): void {
    for (const entry of this.entries.values()) {
      entry.timer = setInterval(() => void this.poll(entry), entry.intervalMs);
      entry.timer.unref();
    }
  }

  /** Stops polling. */
  stop(): void {
    for (const entry of this.entries.values()) clearInterval(entry.timer);
  }

  /** Runs every check once now (for tests and start-up diagnostics). */
  async pollAll(): Promise<void> {
    await Promise.all([...this.entries.values()].map((e) => this.poll(e)));
  }

  /** `{name: reason}` of the unhealthy checks; empty when healthy. */
  failures(): Record<string, string> {
    const out: Record<string, string> = {};
    for (const [name, e] of this.entries) {
      if (e.error !== undefined && e.failures >= Math.max(1, e.threshold)) out[name] = e.error;
    }
    return out;
  }

  private async poll(entry: Entry): Promise<void> {
    // A check slower than its interval is not stacked up.
    if (entry.running) return;
    entry.running = true;
    try {
      await entry.check();
      entry.failures = 0;
      entry.error = undefined;
    } catch (err) {
      entry.failures = Math.min(entry.failures + 1, Math.max(1, entry.threshold));
      entry.error = err instanceof Error ? err.message : String(err);
    } finally {
      entry.running = false;
    }
  }
}
