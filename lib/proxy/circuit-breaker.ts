/**
 * A circuit breaker for one upstream: after a run of failures that say the upstream is unreachable
 * or broken (connection errors, timeouts, 5xx), requests fail at once for a cool-down instead of
 * each waiting out a timeout, so cache hits stay fast while the upstream is down. After the
 * cool-down one trial request goes through: success closes the circuit, failure doubles the
 * cool-down (up to a cap).
 */

/** Tuning of the breaker. */
export interface CircuitBreakerOptions {
  /** Consecutive failures that open the circuit (default 3). */
  readonly threshold?: number;
  /** First cool-down in ms (default 5 s), doubled on each failed trial up to `maxCooldownMs` (default 60 s). */
  readonly cooldownMs?: number;
  readonly maxCooldownMs?: number;
  readonly now?: () => number;
  /** Called when the circuit opens or closes (logging). */
  readonly onChange?: (open: boolean, detail: string) => void;
}

/** The state of one upstream's circuit. */
export class CircuitBreaker {
  private failures = 0;
  private openUntil = 0;
  private cooldown: number;
  private trial = false;
  private readonly threshold: number;
  private readonly maxCooldown: number;
  private readonly now: () => number;

  constructor(private readonly o: CircuitBreakerOptions = {}) {
    this.threshold = o.threshold ?? 3;
    this.cooldown = o.cooldownMs ?? 5000;
    this.maxCooldown = o.maxCooldownMs ?? 60_000;
    this.now = o.now ?? Date.now;
  }

  /** True when a request may go to the upstream now (one trial at a time once the cool-down is over). */
  allow(): boolean {
    if (this.failures < this.threshold) return true;
    if (this.now() < this.openUntil || this.trial) return false;
    this.trial = true;
    return true;
  }

  /** True while requests are refused without being tried. */
  get open(): boolean {
    return this.failures >= this.threshold;
  }

  /** Milliseconds until the next trial (0 when closed). */
  get retryInMs(): number {
    return this.failures < this.threshold ? 0 : Math.max(0, this.openUntil - this.now());
  }

  /** The upstream answered (any status below 500). */
  success(): void {
    if (this.failures >= this.threshold) this.o.onChange?.(false, 'upstream answered again');
    this.failures = 0;
    this.trial = false;
    this.cooldown = this.o.cooldownMs ?? 5000;
  }

  /** The upstream was unreachable, timed out or answered 5xx. */
  failure(detail: string): void {
    const wasOpen = this.failures >= this.threshold;
    this.failures++;
    if (this.failures < this.threshold) return;
    if (wasOpen && this.trial) this.cooldown = Math.min(this.cooldown * 2, this.maxCooldown);
    this.trial = false;
    this.openUntil = this.now() + this.cooldown;
    if (!wasOpen || this.failures === this.threshold) this.o.onChange?.(true, `${detail}; requests fail at once for ${this.cooldown} ms`);
  }
}
