/**
 * `/v2/<name>/blobs/<digest>` (distribution's `blob.go`): `GET` (with ranges) and `HEAD` for every
 * repository (`readBlob`, which lib/api/hot-path.ts calls, for express too; `Range` as `parseRange`
 * reads it); `DELETE` of the repository's link for writable (hosted) ones with
 * `storage.delete.enabled`.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { pipeline } from 'node:stream/promises';
import type { Digest } from '../../distribution/digest.js';
import type { Redirect } from '../../stores.js';
import { RegistryError } from '../errors.js';
import { digestParam, header } from '../messages.js';
import type { MethodTable, Resource, RouteServices, Target } from '../resource.js';
import { sendFileRange } from '../send-file.js';
import { requestState, responseComplete } from '../request-state.js';

/** The writes of blobs by digest (the reads are `readBlob`). */
export const blobResource: Resource<Digest> = {
  methods: (s, target) => {
    const t = target!;
    const w = t.writable;
    if (!w?.deletes) return {};
    const table: MethodTable<Digest> = {
      DELETE: async (req, res, digest) => {
        await w.blobs.delete(t.name, digest);
        res.setHeader('Content-Length', 0);
        res.status(202).end();
        s.events?.notify(req, res, (n, origin, repo) => n.deleted(origin, repo, { digest }));
      },
    };
    return table;
  },
  params: (groups) => digestParam(groups[2]!),
};

/** `GET` (with ranges) or `HEAD` of a blob. */
export function readBlob(s: RouteServices, req: IncomingMessage, res: ServerResponse, t: Target, digest: Digest): Promise<void> {
  return req.method === 'HEAD' ? headBlob(s, req, res, t, digest) : getBlob(s, req, res, t, digest);
}

function commonHeaders(res: ServerResponse, digest: Digest, size: number | undefined): void {
  res.setHeader('Content-Type', 'application/octet-stream');
  res.setHeader('Docker-Content-Digest', digest.value);
  res.setHeader('Etag', `"${digest.value}"`);
  res.setHeader('Cache-Control', 'max-age=31536000');
  if (size !== undefined) res.setHeader('Accept-Ranges', 'bytes');
}

/**
 * distribution's `blobServer`: a stored blob whose driver hands out a URL (S3, unless
 * `storage.redirect.disable`) is answered with `307 Temporary Redirect` to it, as Go's `http.Redirect`.
 */
async function redirected(res: ServerResponse, redirect: Redirect | undefined, method: 'GET' | 'HEAD'): Promise<boolean> {
  const url = await redirect?.(method);
  if (!url) return false;
  res.setHeader('Location', url);
  const body = method === 'GET' ? `<a href="${url.replace(/&/g, '&amp;').replace(/"/g, '&#34;').replace(/</g, '&lt;')}">Temporary Redirect</a>.\n\n` : '';
  res.setHeader('Content-Type', 'text/html; charset=utf-8');
  res.setHeader('Content-Length', Buffer.byteLength(body));
  res.statusCode = 307;
  res.end(body);
  return true;
}

async function headBlob(s: RouteServices, req: IncomingMessage, res: ServerResponse, t: Target, digest: Digest): Promise<void> {
  const info = await t.blobs.stat(t.name, digest);
  // distribution's listener reports a blob served, HEAD and redirects included, as pulled.
  const pulled = (): void => s.events?.notify(req, res, (n, origin, repo) => n.blob('pull', origin, repo, digest, info.size ?? 0));
  if (await redirected(res, info.redirect, 'HEAD')) return pulled();
  commonHeaders(res, digest, info.size);
  if (info.size !== undefined) res.setHeader('Content-Length', info.size);
  res.statusCode = 200;
  res.end();
  pulled();
}

async function getBlob(s: RouteServices, req: IncomingMessage, res: ServerResponse, t: Target, digest: Digest): Promise<void> {
  const handle = await t.blobs.get(t.name, digest);
  const pulled = (): void => s.events?.notify(req, res, (n, origin, repo) => n.blob('pull', origin, repo, digest, handle.size ?? 0));
  if (await redirected(res, handle.redirect, 'GET')) return pulled();
  const range = handle.size === undefined ? ({ kind: 'full' } as const) : parseRange(header(req, 'range'), handle.size);
  commonHeaders(res, digest, handle.size);
  if (range.kind === 'unsatisfiable') {
    throw new RegistryError('RANGE_INVALID', { headers: { 'Content-Range': `bytes */${handle.size}` }, detail: { range: header(req, 'range') } });
  }
  const file = await handle.openFile?.();
  const body = file ? undefined : await handle.open(range.kind === 'partial' ? { start: range.start, end: range.end } : undefined);
  if (range.kind === 'partial') {
    res.statusCode = 206;
    res.setHeader('Content-Range', `bytes ${range.start}-${range.end}/${handle.size}`);
    res.setHeader('Content-Length', range.end - range.start + 1);
  } else {
    res.statusCode = 200;
    if (handle.size !== undefined) res.setHeader('Content-Length', handle.size);
  }
  res.flushHeaders();
  const sent = { bytes: 0 };
  requestState(res).sent = sent;
  try {
    if (file) {
      const start = range.kind === 'partial' ? range.start : 0;
      await sendFileRange(res, file, start, range.kind === 'partial' ? range.end : handle.size! - 1, sent);
    } else {
      body!.on('data', (chunk: Buffer) => {
        sent.bytes += chunk.length;
      });
      await pipeline(body!, res);
    }
    pulled();
  } catch (err) {
    // The client may hang up the moment it has the last byte, before the stream saw its own end:
    // that is a pull served (as the access log's `response completed` says).
    if (responseComplete(res)) return pulled();
    // Headers are gone: the only honest signal left is an aborted transfer.
    res.destroy();
    if (sent.bytes !== Number(res.getHeader('content-length'))) {
      s.logger.warn('blob transfer aborted', { 'vars.name': t.name, 'vars.digest': digest.value, 'err.message': (err as Error).message });
    }
  }
}

/** The outcome of a `Range` header against a representation of `size` bytes. */
type RangeResult = { kind: 'full' } | { kind: 'partial'; start: number; end: number } | { kind: 'unsatisfiable' };

/**
 * `Range: bytes=...` per RFC 9110 §14, for a single range, against a blob of `size` bytes. Several
 * ranges or a malformed header are answered with the whole content (the RFC allows ignoring
 * `Range`); an unsatisfiable one with 416.
 */
function parseRange(value: string | undefined, size: number): RangeResult {
  if (value === undefined) return { kind: 'full' };
  const m = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(value);
  if (!m) return { kind: 'full' };
  const [, first, last] = m as unknown as [string, string, string];
  if (first === '' && last === '') return { kind: 'full' };
  if (first === '') {
    // A suffix range: the last N bytes.
    const suffix = Number(last);
    if (suffix === 0) return { kind: 'unsatisfiable' };
    if (size === 0) return { kind: 'unsatisfiable' };
    return { kind: 'partial', start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(first);
  const end = last === '' ? size - 1 : Math.min(Number(last), size - 1);
  if (!Number.isSafeInteger(start) || (last !== '' && Number(last) < start)) return { kind: 'full' };
  if (start >= size) return { kind: 'unsatisfiable' };
  return { kind: 'partial', start, end };
}
