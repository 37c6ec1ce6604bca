/**
 * The error of every failed exchange with an upstream registry: unreachable (or refused by the
 * circuit breaker), an unexpected status, refused credentials, or an answer that is not what it
 * claims to be. lib/api/error-handler.ts turns it into what a client understands.
 */
import type http from 'node:http';
import { MirrorError } from '../errors.js';

/** The kinds of upstream failure. */
export type UpstreamErrorCode = 'ERR_UPSTREAM_UNREACHABLE' | 'ERR_UPSTREAM_STATUS' | 'ERR_UPSTREAM_AUTH_FAILED' | 'ERR_UPSTREAM_INVALID';

/** A failure talking to the upstream. `status` is set when the upstream answered. */
export class UpstreamError extends MirrorError {
  readonly status?: number;
  readonly headers?: http.IncomingHttpHeaders;
  /** The upstream's first registry error code (`MANIFEST_UNKNOWN`, `TOOMANYREQUESTS`, ...), if it sent one. */
  readonly registryCode?: string;

  declare readonly code: UpstreamErrorCode;

  constructor(
    code: UpstreamErrorCode,
    message: string,
    options: { cause?: unknown; status?: number; headers?: http.IncomingHttpHeaders; registryCode?: string } = {},
  ) {
    super(code, message, { cause: options.cause });
    this.status = options.status;
    this.headers = options.headers;
    this.registryCode = options.registryCode;
  }

  /**
   * True when the upstream is unavailable: down (`upstreamDown`), or rate-limiting (429), which is
   * no fault of the upstream's but leaves the content as unreachable. The cache may answer instead.
   */
  get isUnavailable(): boolean {
    return upstreamDown(this) || this.status === 429;
  }
}

/** The upstream could not be asked at all: no connection, a timeout, no credentials, or refused by the circuit breaker. */
export class UpstreamUnreachableError extends UpstreamError {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super('ERR_UPSTREAM_UNREACHABLE', message, options);
  }
}

/**
 * The upstream is down: unreachable, or it failed (5xx); so is any failure that is not an upstream
 * error at all. What the circuit breaker counts; `isUnavailable` adds rate limiting to it.
 */
export function upstreamDown(err: unknown): boolean {
  return !(err instanceof UpstreamError) || err instanceof UpstreamUnreachableError || (err.status !== undefined && err.status >= 500);
}
