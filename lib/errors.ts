/**
 * Base class of the project's internal errors: a stable machine-readable `code` and an optional
 * `cause`, in the manner of got's `RequestError`. API answers are produced from these by
 * `lib/api/errors.ts`; nothing outside that module formats an error for a client.
 */
export class MirrorError extends Error {
  /** A stable identifier such as `ERR_UPSTREAM_UNREACHABLE`; never reworded once released. */
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}
