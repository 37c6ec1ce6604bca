/**
 * An in-process Docker Hub for what the real one cannot be made to do on demand: a charged-pull
 * limit per window. As Docker Hub, it charges a `GET` of a manifest (never a `HEAD`, never a
 * blob), names the budget on every manifest answer (`RateLimit-Limit: 100;w=21600`,
 * `RateLimit-Remaining: 76;w=21600`), and answers a charged request beyond the limit `429
 * TOOMANYREQUESTS` with `Retry-After`, charging nothing. The window reopens when the test says so
 * (`resetWindow`), so no test waits for a clock.
 */
import { startFakeUpstream, type FakeUpstream } from './fake-upstream.js';

/** A fake Docker Hub: a fake upstream with a rate limit. */
export interface FakeHub extends FakeUpstream {
  /** Charged pulls (manifest `GET`s let through) since the start. */
  readonly charged: number;
  /** Charged requests answered 429 since the start. */
  readonly limited: number;
  /** Charged pulls left in the current window. */
  readonly remaining: number;
  /** Opens a new window: the full limit again. */
  resetWindow(): void;
}

/** What the fake hub enforces. */
export interface FakeHubOptions {
  /** Charged pulls allowed per window. */
  readonly limit: number;
  /** The window named in the headers, in seconds (Docker Hub: 21600). */
  readonly windowSeconds?: number;
  /** `Retry-After` of a 429, in seconds. */
  readonly retryAfterSeconds?: number;
}

/** Starts a fake Docker Hub. */
export async function startFakeHub(options: FakeHubOptions): Promise<FakeHub> {
  const w = options.windowSeconds ?? 21600;
  let used = 0;
  let charged = 0;
  let limited = 0;
  const upstream = await startFakeUpstream({
    intercept: (req, res, key) => {
      if (!/^(GET|HEAD) \/v2\/.+\/manifests\/[^/]+$/.test(key)) return false;
      const limitHeaders = (left: number): Record<string, string> => ({
        'ratelimit-limit': `${options.limit};w=${w}`,
        'ratelimit-remaining': `${left};w=${w}`,
      });
      if (req.method === 'GET') {
        if (used >= options.limit) {
          limited++;
          res.writeHead(429, { 'content-type': 'application/json', 'retry-after': String(options.retryAfterSeconds ?? 60), ...limitHeaders(0) });
          res.end(JSON.stringify({ errors: [{ code: 'TOOMANYREQUESTS', message: 'You have reached your pull rate limit.' }] }));
          return true;
        }
        used++;
        charged++;
      }
      for (const [name, value] of Object.entries(limitHeaders(options.limit - used))) res.setHeader(name, value);
      return false;
    },
  });
  // The fake upstream's own members (its `connections` getter too) through the prototype.
  return Object.defineProperties(Object.create(upstream) as FakeHub, {
    charged: { get: () => charged },
    limited: { get: () => limited },
    remaining: { get: () => options.limit - used },
    resetWindow: { value: () => void (used = 0) },
  });
}
