/**
 * The one table of registry API error codes (distribution `registry/api/errcode/register.go`) and the
 * error type the routes throw. `sendError` in `error-handler.ts` is the only place that writes an
 * `{"errors":[...]}` envelope.
 */

/** A registered error descriptor: the wire code, its fixed message and its HTTP status. */
interface ErrorDescriptor {
  readonly code: string;
  readonly message: string;
  readonly status: number;
}

const table = {
  UNKNOWN: { message: 'unknown error', status: 500 },
  UNSUPPORTED: { message: 'The operation is unsupported.', status: 405 },
  UNAUTHORIZED: { message: 'authentication required', status: 401 },
  DENIED: { message: 'requested access to the resource is denied', status: 403 },
  UNAVAILABLE: { message: 'service unavailable', status: 503 },
  TOOMANYREQUESTS: { message: 'too many requests', status: 429 },
  DIGEST_INVALID: { message: 'provided digest did not match uploaded content', status: 400 },
  SIZE_INVALID: { message: 'provided length did not match content length', status: 400 },
  RANGE_INVALID: { message: 'invalid content range', status: 416 },
  NAME_INVALID: { message: 'invalid repository name', status: 400 },
  TAG_INVALID: { message: 'manifest tag did not match URI', status: 400 },
  NAME_UNKNOWN: { message: 'repository name not known to registry', status: 404 },
  MANIFEST_UNKNOWN: { message: 'manifest unknown', status: 404 },
  MANIFEST_INVALID: { message: 'manifest invalid', status: 400 },
  MANIFEST_UNVERIFIED: { message: 'manifest failed signature verification', status: 400 },
  MANIFEST_BLOB_UNKNOWN: { message: 'blob unknown to registry', status: 400 },
  BLOB_UNKNOWN: { message: 'blob unknown to registry', status: 404 },
  BLOB_UPLOAD_UNKNOWN: { message: 'blob upload unknown to registry', status: 404 },
  BLOB_UPLOAD_INVALID: { message: 'blob upload invalid', status: 404 },
  PAGINATION_NUMBER_INVALID: { message: 'invalid number of results requested', status: 400 },
  QUERY_PARAMETER_INVALID: { message: 'invalid query parameter value', status: 400 },
} as const;

/** Every registered wire code. */
export type ErrorCode = keyof typeof table;

/** Looks up the descriptor of a registered code. */
function descriptor(code: ErrorCode): ErrorDescriptor {
  return { code, ...table[code] };
}

/** All registered descriptors, sorted by code (as distribution's `GetErrorAllDescriptors`). */
export function allDescriptors(): ErrorDescriptor[] {
  return (Object.keys(table) as ErrorCode[]).sort().map(descriptor);
}

/**
 * An error that becomes an API answer: one registered code, an optional `detail` and optional extra
 * response headers (`Retry-After`, `WWW-Authenticate`).
 */
export class RegistryError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly detail: unknown;
  readonly headers: Readonly<Record<string, string>>;

  constructor(code: ErrorCode, options: { detail?: unknown; message?: string; headers?: Record<string, string>; cause?: unknown; status?: number } = {}) {
    const d = table[code];
    super(options.message ?? d.message, { cause: options.cause });
    this.name = 'RegistryError';
    this.code = code;
    this.status = options.status ?? d.status;
    this.detail = options.detail;
    this.headers = options.headers ?? {};
  }

  /** The envelope entry distribution writes: `{code, message, detail?}`. */
  toJSON(): { code: string; message: string; detail?: unknown } {
    return this.detail === undefined ? { code: this.code, message: this.message } : { code: this.code, message: this.message, detail: this.detail };
  }
}
