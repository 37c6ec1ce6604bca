/** Headers every `/v2/` answer carries: distribution's API version and the configured `http.headers`. */
import type { IncomingMessage, ServerResponse } from 'node:http';

/**
 * `Docker-Distribution-API-Version: registry/2.0` on every answer under `/v2` (clients check it),
 * and what keeps a browser from running an answer: no type sniffing, and a policy that loads
 * nothing and sandboxes the document (a manifest or blob opened on the mirror's origin, where a
 * browser may hold an admin's credentials, is data, never a page). `http.headers` may set others.
 */
export function apiVersionHeader(_req: IncomingMessage, res: ServerResponse, next: () => void): void {
  res.setHeader('Docker-Distribution-API-Version', 'registry/2.0');
  // Unless `http.headers` configured them (set before, in lib/server.ts).
  if (!res.hasHeader('X-Content-Type-Options')) res.setHeader('X-Content-Type-Options', 'nosniff');
  if (!res.hasHeader('Content-Security-Policy')) res.setHeader('Content-Security-Policy', "default-src 'none'; sandbox");
  next();
}

/** Adds the configured `http.headers` to every response. */
export function configuredHeaders(headers: Readonly<Record<string, readonly string[]>>) {
  return (_req: IncomingMessage, res: ServerResponse, next: () => void): void => {
    for (const [name, values] of Object.entries(headers)) res.setHeader(name, [...values]);
    next();
  };
}
