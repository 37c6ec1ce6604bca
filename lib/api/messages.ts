/**
 * The small parts of the API's HTTP messages: the headers every `/v2/` answer carries
 * (distribution's API version and the configured `http.headers`), and what the handlers share: one
 * header or query value, a digest from the path, and a JSON answer.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Request } from 'express';
import { parseDigest, type Digest } from '../distribution/digest.js';
import { RegistryError } from './errors.js';

/** The first value of a request header. */
export function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** A query parameter given once (the `simple` query parser); undefined otherwise. */
export function query(req: Request, name: string): string | undefined {
  const v = req.query[name];
  return typeof v === 'string' ? v : undefined;
}

/** A JSON answer with its length (no body for `HEAD`). */
export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.statusCode = status;
  res.setHeader('Content-Type', 'application/json; charset=utf-8');
  res.setHeader('Content-Length', Buffer.byteLength(text));
  res.end(res.req.method === 'HEAD' ? undefined : text);
}

/** A digest from the path; `DIGEST_INVALID` when it is not a valid, supported one. */
export function digestParam(raw: string): Digest {
  const d = parseDigest(raw);
  if (!d) throw new RegistryError('DIGEST_INVALID', { detail: { digest: raw } });
  return d;
}

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
