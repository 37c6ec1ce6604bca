/**
 * What a request carries from layer to layer, typed (never through `res.locals`): the route's
 * subject, the authenticated user and what a token grants, the repository as the client named it,
 * the bytes a streamed body has produced. And a request's end: `whenDone`, `responseComplete`, and
 * the access log (one line per request, with distribution's field names: `response completed` with
 * `http.request.*` and `http.response.*`, disabled by `log.accesslog.disabled`).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'winston';
import type { GrantedResource } from '../auth/access.js';

/** What was asked for, so that an upstream 404 becomes the right `*_UNKNOWN` code (and the metrics' `route` label). */
export type Subject = 'manifest' | 'blob' | 'tags' | 'other';

/** The per-request values, each set by the one layer that knows it. */
interface RequestState {
  /** The route's subject (lib/api/router.ts). */
  subject?: Subject;
  /** The authenticated user (lib/api/authorize.ts). */
  user?: string;
  /** The resources the client's token names (lib/api/authorize.ts): a push's manifest class is checked against them. */
  resources?: readonly GrantedResource[];
  /** The repository as the client named it (`busybox`, not the stored `library/busybox`), for events. */
  repository?: string;
  /** The peer's `ip:port` for events, read while the socket is open (a closed one has none). */
  peer?: string;
  /** The request's id in events, made when the first event asks for it. */
  requestId?: string;
  /** The bytes a streamed body has produced so far (the blob route). */
  sent?: { bytes: number };
}

const states = new WeakMap<ServerResponse, RequestState>();

/** The state of the request `res` answers (made empty on first use). */
export function requestState(res: ServerResponse): RequestState {
  let state = states.get(res);
  if (state === undefined) {
    state = {};
    states.set(res, state);
  }
  return state;
}

/**
 * Calls `done` once when a response is over: at `finish`, or at `close` when the client hung up
 * first (which happens once it has read all `Content-Length` bytes of a large body).
 */
export function whenDone(res: ServerResponse, done: () => void): void {
  let called = false;
  const once = (): void => {
    if (called) return;
    called = true;
    done();
  };
  res.once('finish', once);
  res.once('close', once);
}

/**
 * True when the whole body went out: the handler ended the response, or a streamed body produced
 * all its `Content-Length` bytes (`sent`, kept by the blob route) before the client,
 * having read them, closed the connection ahead of the server's own `end()`.
 */
export function responseComplete(res: ServerResponse): boolean {
  if (res.writableEnded) return true;
  const sent = states.get(res)?.sent;
  const length = Number(res.getHeader('content-length'));
  return sent !== undefined && Number.isFinite(length) && sent.bytes === length;
}

/**
 * Middleware logging each request when its response completes or its connection closes. Mounted
 * first (by lib/api/app.ts, and by the hot path of lib/api/hot-path.ts), where `req.url` is still
 * the whole URL as sent (express's `originalUrl`).
 */
export function accessLog(logger: Logger): (req: IncomingMessage, res: ServerResponse, next: () => void) => void {
  return (req, res, next) => {
    const started = process.hrtime.bigint();
    const uri = req.url;
    // Read now: once the socket is closed (a client that hangs up as the last byte arrives),
    // `remoteAddress` is undefined, and the line would lose the field depending on timing.
    const remoteAddress = req.socket.remoteAddress;
    whenDone(res, () => {
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      logger.info(responseComplete(res) ? 'response completed' : 'response aborted', {
        'http.request.method': req.method,
        'http.request.uri': uri,
        'http.request.remoteaddr': remoteAddress,
        'http.request.useragent': req.headers['user-agent'] ?? '',
        'http.response.status': res.statusCode,
        'http.response.written': Number(res.getHeader('content-length') ?? 0),
        'http.response.duration': `${seconds.toFixed(6)}s`,
      });
    });
    next();
  };
}
