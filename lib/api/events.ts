/**
 * The request side of notifications (distribution's `App.eventBridge`): who asked (the request
 * record with distribution's remote address rules, the authenticated user), and the registry's
 * URL as the client reached it (distribution's URL builder: `http.host` when configured, else the
 * request's scheme and host, `X-Forwarded-Proto` and `X-Forwarded-Host` first). The handlers call
 * `s.events?.notify` where distribution's listeners fire; without an endpoint there is no
 * `RouteEvents` at all.
 */
import { randomUUID } from 'node:crypto';
import { isIP } from 'node:net';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { EventOrigin, Notifier } from '../notifications/notifier.js';
import { header } from './messages.js';
import { requestState } from './request-state.js';

/**
 * What the routes need to send events: built (lib/server.ts) only when an endpoint is enabled, so
 * that without one a route's `s.events?.notify(...)` is all there is.
 */
export class RouteEvents {
  constructor(
    private readonly notifier: Notifier,
    /** `http.host`: the registry's external URL, if configured. */
    private readonly host: string | undefined,
    /** `http.prefix` without its trailing slash. */
    private readonly prefix: string,
  ) {}

  /** Calls `send` with the notifier, a getter of the request's origin and the repository as the client named it. */
  notify(req: IncomingMessage, res: ServerResponse, send: (n: Notifier, origin: () => EventOrigin, repo: string) => void): void {
    // Lazy: the notifier asks for the origin only when an endpoint takes the event.
    send(this.notifier, () => this.originOf(req, res), requestState(res).repository ?? '');
  }

  private originOf(req: IncomingMessage, res: ServerResponse): EventOrigin {
    const state = requestState(res);
    const id = (state.requestId ??= randomUUID());
    const user = state.user;
    return {
      request: { id, addr: remoteAddr(req, state.peer), host: req.headers.host, method: req.method!, useragent: req.headers['user-agent'] ?? '' },
      actor: user ? { name: user } : {},
      base: this.baseUrl(req),
    };
  }

  private baseUrl(req: IncomingMessage): string {
    if (this.host) return this.host.replace(/\/+$/, '') + this.prefix;
    const proto = header(req, 'x-forwarded-proto')?.split(',')[0]?.trim() || ((req.socket as { encrypted?: boolean }).encrypted ? 'https' : 'http');
    const host = header(req, 'x-forwarded-host')?.split(',')[0]?.trim() || req.headers.host || '';
    return `${proto}://${host}${this.prefix}`;
  }
}

/** distribution's `requestutil.RemoteAddr`: the first `X-Forwarded-For` address, else `X-Real-Ip`, else the peer's `ip:port`. */
function remoteAddr(req: IncomingMessage, peer: string | undefined): string {
  const forwarded = header(req, 'x-forwarded-for')?.split(',')[0]?.trim();
  if (forwarded && isIP(forwarded)) return forwarded;
  const real = header(req, 'x-real-ip')?.trim();
  if (real && isIP(real)) return real;
  return peer ?? peerAddress(req);
}

/** The connection's peer as `ip:port` (`[ip]:port` for IPv6). */
export function peerAddress(req: IncomingMessage): string {
  const ip = req.socket.remoteAddress ?? '';
  return ip.includes(':') ? `[${ip}]:${req.socket.remotePort}` : `${ip}:${req.socket.remotePort}`;
}
