/**
 * What an upstream's answers say about asking it again, read from every exchange by
 * lib/proxy/upstream.ts: its health (the circuit breaker) and its rate limit (the budget).
 *
 * The circuit breaker (`CircuitBreaker`), one per upstream: after a run of failures that say the
 * upstream is unreachable or broken (connection errors, timeouts, 5xx), requests fail at once for
 * a cool-down instead of each waiting out a timeout, so cache hits stay fast while the upstream is
 * down. After the cool-down one trial request goes through: success closes the circuit, failure
 * doubles the cool-down (up to a cap).
 *
 * The budget (`RateBudget`): an upstream's rate limit as a budget the mirror manages. Docker Hub
 * answers every manifest request with `RateLimit-Limit: 100;w=21600` and `RateLimit-Remaining:
 * 76;w=21600` and charges a manifest `GET` (never a `HEAD`, never a blob); beyond the limit it
 * answers `429` with `Retry-After`. The budget reads those answers (one budget per upstream, that
 * is per credential) and tells the stores what to spend it on:
 *
 * - `low` (remaining at or below `reserve`, or exhausted): cached tags are served without a check,
 *   so what is left goes to content the cache does not hold;
 * - `exhausted` (remaining 0, or a 429 until its `Retry-After`): a charged request is answered
 *   `429` with the time left, without being sent (it would only be refused, and counted).
 *
 * A reading is trusted for `recheckMs`; after that the next request goes upstream and its answer
 * is the new reading, so the mirror resumes on its own.
 */
import type http from 'node:http';
import { UpstreamError } from './upstream-error.js';

/** What the budget says of spending. `unknown`: no recent reading (the upstream sends none, or it is stale). */
type BudgetState = 'unknown' | 'ok' | 'low' | 'exhausted';

/** What a budget is built with. */
export interface BudgetOptions {
  /** `proxy.budget.reserve`: at or below this many remaining pulls, cached tags are no longer revalidated. */
  readonly reserve: number;
  /** `proxy.budget.recheck`: how long a reading (or a 429 without `Retry-After`) is trusted. */
  readonly recheckMs: number;
  /** Told once each time the state changes between ok, low and exhausted (for one log line). */
  readonly onChange?: (state: BudgetState, detail: string) => void;
  readonly now?: () => number;
}

/** The figures the cache page and the metrics show. */
export interface BudgetSnapshot {
  readonly state: BudgetState;
  readonly limit?: number;
  readonly remaining?: number;
  /** The window `w=` the upstream named, in seconds. */
  readonly windowSeconds?: number;
  /** Manifest `GET`s answered by the upstream: what it charges. */
  readonly charged: number;
  /** Every other upstream answer (`HEAD`s, blobs, tag lists): free. */
  readonly free: number;
  /** Charged requests answered 429 here without being sent. */
  readonly refused: number;
  /** Client manifest requests answered from the cache: pulls the clients would have been charged for. */
  readonly saved: number;
}

/** True for a request the upstream counts as a pull: a `GET` of a manifest. */
export function isCharged(method: string, path: string): boolean {
  return method === 'GET' && /\/manifests\/[^/]+$/.test(path);
}

/** The number before `;` in `76;w=21600` (Docker Hub's `RateLimit-*`), and the window after `w=`; undefined when malformed or empty. */
export function parseRateHeader(value: string | string[] | undefined): { n: number; window?: number } | undefined {
  const text = Array.isArray(value) ? value[0] : value;
  if (text === undefined) return undefined;
  const [count, ...params] = text.split(';');
  const n = Number(count!.trim());
  if (!Number.isFinite(n) || count!.trim() === '') return undefined;
  const w = params.map((p) => /^\s*w=(\d+)\s*$/.exec(p)?.[1]).find((x) => x !== undefined);
  return { n, window: w === undefined ? undefined : Number(w) };
}

/** `Retry-After` in ms: seconds, or an HTTP date. */
function retryAfterMs(value: string | string[] | undefined, now: number): number | undefined {
  const text = Array.isArray(value) ? value[0] : value;
  if (text === undefined) return undefined;
  if (/^\d+$/.test(text.trim())) return Number(text.trim()) * 1000;
  const at = Date.parse(text);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/** One upstream's rate-limit budget. */
export class RateBudget {
  private limit?: number;
  private remaining?: number;
  private windowSeconds?: number;
  private readAt = 0;
  private blockedUntil = 0;
  private reported: BudgetState = 'unknown';
  private charged = 0;
  private free = 0;
  private refused = 0;
  private saved = 0;
  private readonly now: () => number;

  constructor(private readonly options: BudgetOptions) {
    this.now = options.now ?? Date.now;
  }

  /** Reads an upstream answer: its rate-limit headers, a 429's `Retry-After`, whether it was charged. */
  observe(method: string, path: string, status: number, headers: http.IncomingHttpHeaders): void {
    const now = this.now();
    if (isCharged(method, path) && status >= 200 && status < 300) this.charged++;
    else this.free++;
    const limit = parseRateHeader(headers['ratelimit-limit']);
    const remaining = parseRateHeader(headers['ratelimit-remaining']);
    if (limit) this.limit = limit.n;
    if (remaining) {
      this.remaining = remaining.n;
      this.windowSeconds = remaining.window ?? limit?.window ?? this.windowSeconds;
      this.readAt = now;
    }
    if (status === 429) {
      // The Retry-After, not the reading, says when to ask again.
      this.remaining = undefined;
      this.blockedUntil = now + (retryAfterMs(headers['retry-after'], now) ?? this.options.recheckMs);
    }
    this.report();
  }

  /** A client's manifest request answered from the cache (a pull not charged). */
  savedPull(): void {
    this.saved++;
  }

  /** The state now. */
  get state(): BudgetState {
    const now = this.now();
    if (now < this.blockedUntil) return 'exhausted';
    if (this.remaining === undefined || now - this.readAt >= this.options.recheckMs) return 'unknown';
    if (this.remaining <= 0) return 'exhausted';
    return this.remaining <= this.options.reserve ? 'low' : 'ok';
  }

  /** True when cached tags are to be served rather than revalidated: low or exhausted. */
  get low(): boolean {
    const state = this.state;
    this.report(state);
    return state === 'low' || state === 'exhausted';
  }

  /**
   * Called before a request is sent: a charged one while the budget is exhausted is refused with a
   * `429` and the seconds until the budget may have reopened, as the upstream would answer it.
   */
  admit(method: string, path: string): void {
    if (!isCharged(method, path)) return;
    const state = this.state;
    this.report(state);
    if (state !== 'exhausted') return;
    this.refused++;
    const now = this.now();
    const until = Math.max(this.blockedUntil, this.readAt + this.options.recheckMs);
    const seconds = String(Math.max(1, Math.ceil((until - now) / 1000)));
    throw new UpstreamError('ERR_UPSTREAM_STATUS', `upstream ${method} ${path} not sent: the upstream's rate limit is spent, retry in ${seconds} s`, {
      status: 429,
      headers: { 'retry-after': seconds },
      registryCode: 'TOOMANYREQUESTS',
    });
  }

  /** The figures as they stand. */
  snapshot(): BudgetSnapshot {
    return {
      state: this.state,
      limit: this.limit,
      remaining: this.remaining,
      windowSeconds: this.windowSeconds,
      charged: this.charged,
      free: this.free,
      refused: this.refused,
      saved: this.saved,
    };
  }

  /** Tells `onChange` once per change between ok, low and exhausted (an unknown reading changes nothing). */
  private report(state: BudgetState = this.state): void {
    if (state === 'unknown' || state === this.reported) return;
    const was = this.reported;
    this.reported = state;
    if (was === 'unknown' && state === 'ok') return;
    const detail =
      state === 'ok'
        ? `${this.remaining} pulls left: cached tags are checked again`
        : state === 'low'
          ? `${this.remaining} pulls left (reserve ${this.options.reserve}): cached tags are served without a check`
          : `no pulls left: cached tags are served without a check, other manifest requests are answered 429 until it reopens`;
    this.options.onChange?.(state, detail);
  }
}

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
