/** Small helpers the handlers share: one header or query value, a digest from the path, and a JSON answer. */
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
