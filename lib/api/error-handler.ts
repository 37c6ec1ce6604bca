/**
 * The one place that turns errors into registry answers: `{"errors":[{code, message, detail}]}`
 * with the registered status. Upstream failures are translated into what a client understands.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ErrorRequestHandler } from 'express';
import type { Logger } from 'winston';
import { InvalidPathError, StoreError, UpstreamError, type StoreErrorCode } from '../errors.js';
import { RegistryError, type ErrorCode } from './errors.js';
import { requestState, type Subject } from './request-state.js';

/** The registry code of each store error (distribution's `errcode` for its root `errors.go`). */
const STORE_CODES: Readonly<Record<StoreErrorCode, ErrorCode>> = {
  ERR_BLOB_UNKNOWN: 'BLOB_UNKNOWN',
  ERR_MANIFEST_UNKNOWN: 'MANIFEST_UNKNOWN',
  ERR_REPOSITORY_UNKNOWN: 'NAME_UNKNOWN',
  ERR_UPLOAD_UNKNOWN: 'BLOB_UPLOAD_UNKNOWN',
  ERR_DIGEST_INVALID: 'DIGEST_INVALID',
  ERR_MANIFEST_INVALID: 'MANIFEST_INVALID',
  ERR_MANIFEST_BLOB_UNKNOWN: 'MANIFEST_BLOB_UNKNOWN',
  ERR_MANIFEST_CLASS_DENIED: 'DENIED',
};

/** Translates any error into a `RegistryError`. */
function toRegistryError(err: unknown, subject: Subject = 'other'): RegistryError {
  if (err instanceof RegistryError) return err;
  // The client's own mistake, reported as such: no cause, so nothing is logged for it.
  if (err instanceof StoreError) return new RegistryError(STORE_CODES[err.code], { detail: err.detail, message: err.clientMessage });
  if (err instanceof UpstreamError) return fromUpstream(err, subject);
  if (err instanceof InvalidPathError) return new RegistryError('NAME_INVALID', { detail: err.message, cause: err });
  return new RegistryError('UNKNOWN', { cause: err });
}

function fromUpstream(err: UpstreamError, subject: Subject): RegistryError {
  const detail = { upstream: err.message };
  if (err.status === 404) {
    const code: ErrorCode =
      err.registryCode === 'NAME_UNKNOWN' || subject === 'tags'
        ? 'NAME_UNKNOWN'
        : subject === 'blob'
          ? 'BLOB_UNKNOWN'
          : subject === 'manifest'
            ? 'MANIFEST_UNKNOWN'
            : 'NAME_UNKNOWN';
    return new RegistryError(code, { detail, cause: err });
  }
  if (err.status === 429) {
    const retryAfter = err.headers?.['retry-after'];
    return new RegistryError('TOOMANYREQUESTS', {
      detail,
      cause: err,
      headers: typeof retryAfter === 'string' ? { 'Retry-After': retryAfter } : {},
    });
  }
  if (err.credentialsRefused) {
    // Docker Hub answers 401 for repositories that do not exist as well as for private ones; a
    // 403 DENIED is what dockerd and containerd report as "pull access denied" and fall back on.
    return new RegistryError('DENIED', { detail, cause: err });
  }
  return new RegistryError('UNAVAILABLE', { detail, cause: err });
}

/** Writes the envelope for `err` (headers not yet sent) or aborts the response (body under way). */
export function sendError(res: ServerResponse, err: RegistryError): void {
  if (res.headersSent) {
    res.destroy(err);
    return;
  }
  for (const [name, value] of Object.entries(err.headers)) res.setHeader(name, value);
  const body = JSON.stringify({ errors: [err] });
  res.statusCode = err.status;
  res.setHeader('Content-Type', 'application/json; charset=utf-8');
  res.setHeader('Content-Length', Buffer.byteLength(body));
  res.end(res.req.method === 'HEAD' ? undefined : body);
}

/**
 * Logs what is not the client's fault, then sends the envelope: the end of every failed request,
 * through express (`errorHandler`) or the hot path (lib/api/hot-path.ts). `url` is the URL as sent.
 */
export function handleError(logger: Logger, err: unknown, req: IncomingMessage, res: ServerResponse, url: string | undefined): void {
  const subject = requestState(res).subject ?? 'other';
  const registryError = toRegistryError(err, subject);
  // distribution's fields of a request's log line.
  const request = { 'http.request.method': req.method, 'http.request.uri': url, 'err.code': registryError.code };
  if (registryError.status >= 500) {
    const cause = registryError.cause instanceof Error ? registryError.cause : registryError;
    logger.error('response completed with error', { ...request, 'err.message': cause.message });
  } else if (registryError.cause instanceof UpstreamError && registryError.cause.credentialsRefused) {
    // The mirror's own upstream credentials (proxy.username/password) refused: an operator's problem.
    logger.warn("the upstream refused the mirror's credentials", { ...request, 'err.message': registryError.cause.message });
  } else if (registryError.cause) {
    logger.info('response completed with error', { ...request, 'err.detail': JSON.stringify(registryError.detail) });
  }
  sendError(res, registryError);
}

/** The express error middleware (`handleError`). */
export function errorHandler(logger: Logger): ErrorRequestHandler {
  return (err: unknown, req, res, _next) => handleError(logger, err, req, res, req.originalUrl);
}
