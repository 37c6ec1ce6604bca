/**
 * The project's internal errors, in the manner of got's `source/core/errors.ts`: one base class with
 * a stable machine-readable `code` and an optional `cause`, and one subclass per kind of failure,
 * which owns its code. Callers tell failures apart with `instanceof`, never by comparing strings.
 * Nothing here knows HTTP: `lib/api/error-handler.ts` turns these into registry answers, the store
 * errors below as distribution maps its root `errors.go` onto `registry/api/errcode`. It imports
 * nothing of the project: every other module may use it. The only place a code is compared with
 * a string is the class that owns it (`UpstreamError`'s getters); everyone else uses `instanceof`
 * and those getters (spec/architecture.test.ts).
 */
import type { IncomingHttpHeaders } from 'node:http';

/** A digest as the store errors name it (a `Digest` of lib/distribution fits). */
interface Named {
  readonly value: string;
}

/** What a store reports about content a request named; each is mapped to one registry error code. */
export type StoreErrorCode =
  | 'ERR_BLOB_UNKNOWN'
  | 'ERR_MANIFEST_UNKNOWN'
  | 'ERR_REPOSITORY_UNKNOWN'
  | 'ERR_UPLOAD_UNKNOWN'
  | 'ERR_DIGEST_INVALID'
  | 'ERR_MANIFEST_INVALID'
  | 'ERR_MANIFEST_BLOB_UNKNOWN'
  | 'ERR_MANIFEST_CLASS_DENIED';

/** Every code an internal error carries. Stable: never reworded once released. */
type MirrorErrorCode =
  | 'ERR_CONFIG_INVALID'
  | 'ERR_CONFIG_UNSUPPORTED'
  | 'ERR_AUTH_CONFIG'
  | 'ERR_USAGE'
  | 'ERR_INVALID_PATH_COMPONENT'
  | 'ERR_PATH_NOT_FOUND'
  | 'ERR_STORAGE_OPERATION'
  | 'ERR_DIGEST_MISMATCH'
  | 'ERR_BLOB_UNREADABLE'
  | 'ERR_BLOB_FETCH_STOPPED'
  | 'ERR_UPSTREAM_UNREACHABLE'
  | 'ERR_UPSTREAM_STATUS'
  | 'ERR_UPSTREAM_AUTH_FAILED'
  | 'ERR_UPSTREAM_INVALID'
  | 'ERR_AUTH_CHALLENGE'
  | 'ERR_BAD_REFERENCE'
  | 'ERR_STOPPING'
  | StoreErrorCode;

/** Base class of the internal errors; only subclasses are thrown. */
export abstract class MirrorError extends Error {
  /** A stable identifier such as `ERR_UPSTREAM_UNREACHABLE`, set by the subclass. */
  readonly code: MirrorErrorCode;

  protected constructor(code: MirrorErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** A configuration value that makes no sense (the message names the key). */
export class ConfigError extends MirrorError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_CONFIG_INVALID', message, options);
  }
}

/** A valid configuration this program does not run (no `proxy.remoteurl`). */
export class UnsupportedConfigError extends MirrorError {
  constructor(message: string) {
    super('ERR_CONFIG_UNSUPPORTED', message);
  }
}

/** An `auth` section whose files cannot be used (htpasswd entries, token certificates). */
export class AuthConfigError extends MirrorError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_AUTH_CONFIG', message, options);
  }
}

/** A command line that cannot be run (the message says how to use it). */
export class UsageError extends MirrorError {
  constructor(message: string) {
    super('ERR_USAGE', message);
  }
}

/** A value that may not become part of a storage path (a name, tag, digest or upload id that failed validation). */
export class InvalidPathError extends MirrorError {
  constructor(message: string) {
    super('ERR_INVALID_PATH_COMPONENT', message);
  }
}

/** Content that does not hash to the digest it is stored or served under. */
export class DigestMismatchError extends MirrorError {
  constructor(message: string) {
    super('ERR_DIGEST_MISMATCH', message);
  }
}

/**
 * What a store reports about the content a request named (distribution's `ErrBlobUnknown`,
 * `ErrManifestUnknown`, ...). `detail` is what the client is told, as distribution serialises its
 * error structs into the answer's `detail`.
 */
export abstract class StoreError extends MirrorError {
  declare readonly code: StoreErrorCode;
  readonly detail: unknown;
  /** The answer's message where it is not the registry code's own (distribution's `WithMessage`). */
  readonly clientMessage?: string;

  protected constructor(code: StoreErrorCode, message: string, detail: unknown, clientMessage?: string) {
    super(code, message);
    this.detail = detail;
    if (clientMessage !== undefined) this.clientMessage = clientMessage;
  }
}

/** The repository does not have the blob. */
export class BlobUnknownError extends StoreError {
  constructor(digest: Named) {
    super('ERR_BLOB_UNKNOWN', `blob unknown: ${digest.value}`, digest.value);
  }
}

/** The repository has no such tag, or no such manifest revision. */
export class ManifestUnknownError extends StoreError {
  constructor(ref: { readonly tag: string } | { readonly digest: string }) {
    const detail = 'tag' in ref ? { Tag: ref.tag } : { Digest: ref.digest };
    super('ERR_MANIFEST_UNKNOWN', `manifest unknown: ${'tag' in ref ? ref.tag : ref.digest}`, detail);
  }
}

/** The repository does not exist. */
export class RepositoryUnknownError extends StoreError {
  constructor(name: string) {
    super('ERR_REPOSITORY_UNKNOWN', `repository unknown: ${name}`, { name });
  }
}

/** No upload session of that id (never begun, finished, cancelled or purged). */
export class UploadUnknownError extends StoreError {
  constructor(uuid: string) {
    super('ERR_UPLOAD_UNKNOWN', `upload unknown: ${uuid}`, { uuid });
  }
}

/** Pushed content does not match the digest the client named, or names an invalid digest. */
export class DigestInvalidError extends StoreError {
  constructor(detail: string) {
    super('ERR_DIGEST_INVALID', detail, detail);
  }
}

/** A pushed manifest that is not acceptable (distribution's `ErrManifestVerification` reasons). */
export class ManifestInvalidError extends StoreError {
  constructor(detail: string) {
    super('ERR_MANIFEST_INVALID', detail, detail);
  }
}

/** A pushed manifest references a blob or manifest the repository does not have. */
export class ManifestBlobUnknownError extends StoreError {
  constructor(digest: Named) {
    super('ERR_MANIFEST_BLOB_UNKNOWN', `manifest references unknown ${digest.value}`, digest.value);
  }
}

/**
 * A pushed manifest of a class `policy.repository.classes` does not allow, or that the client's
 * token does not grant for the repository (distribution's `applyResourcePolicy`: `DENIED` with the
 * reason as the message, no detail).
 */
export class ManifestClassDeniedError extends StoreError {
  constructor(reason: string) {
    super('ERR_MANIFEST_CLASS_DENIED', reason, undefined, reason);
  }
}

/**
 * Background work (the start-up walk, an expiry, an eviction, a purge of uploads) given up because
 * the process stops: what it left undone is done again at the next start.
 */
export class StoppingError extends MirrorError {
  constructor(what: string) {
    super('ERR_STOPPING', `${what}: given up, the registry is stopping`);
  }
}

/** Throws `StoppingError` once `signal` (the registry's stop) has fired. */
export function throwIfStopping(signal: AbortSignal | undefined, what: string): void {
  if (signal?.aborted) throw new StoppingError(what);
}

/** The kinds of upstream failure. */
export type UpstreamErrorCode = 'ERR_UPSTREAM_UNREACHABLE' | 'ERR_UPSTREAM_STATUS' | 'ERR_UPSTREAM_AUTH_FAILED' | 'ERR_UPSTREAM_INVALID';

/**
 * The error of every failed exchange with an upstream registry: unreachable (or refused by the
 * circuit breaker), an unexpected status, refused credentials, or an answer that is not what it
 * claims to be (`status` set when the upstream answered). lib/api/error-handler.ts turns it into
 * what a client understands.
 */
export class UpstreamError extends MirrorError {
  readonly status?: number;
  readonly headers?: IncomingHttpHeaders;
  /** The upstream's first registry error code (`MANIFEST_UNKNOWN`, `TOOMANYREQUESTS`, ...), if it sent one. */
  readonly registryCode?: string;

  declare readonly code: UpstreamErrorCode;

  constructor(
    code: UpstreamErrorCode,
    message: string,
    options: { cause?: unknown; status?: number; headers?: IncomingHttpHeaders; registryCode?: string } = {},
  ) {
    super(code, message, { cause: options.cause });
    this.status = options.status;
    this.headers = options.headers;
    this.registryCode = options.registryCode;
  }

  /** True when the upstream could not be asked at all (unreachable, or refused by the circuit breaker). */
  get unreachable(): boolean {
    return this.code === 'ERR_UPSTREAM_UNREACHABLE';
  }

  /** True when the upstream refused the mirror's credentials (`proxy.username`/`password`, a token realm). */
  get credentialsRefused(): boolean {
    return this.code === 'ERR_UPSTREAM_AUTH_FAILED';
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
  return !(err instanceof UpstreamError) || err.unreachable || (err.status !== undefined && err.status >= 500);
}
