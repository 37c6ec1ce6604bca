/**
 * distribution's upload state token (`registry/handlers/hmac.go`): the `_state` query parameter of
 * an upload's `Location`, `base64url(HMAC-SHA256(secret, json) || json)` of
 * `{"Name","UUID","Offset","StartedAt"}`. With the same `http.secret`, `registry:2` accepts our
 * tokens, so an upload begun here can be finished there (and we accept any upload theirs began:
 * the token is not needed to resume here, `Content-Range` and the stored size are checked instead).
 */
import { createHmac } from 'node:crypto';
import { formatStartedAt } from './upload-store.js';

/** What the token carries (Go field names). */
interface UploadState {
  readonly Name: string;
  readonly UUID: string;
  readonly Offset: number;
  readonly StartedAt: string;
}

/** Go's `base64.URLEncoding` (URL alphabet, with padding). */
function goUrlBase64(b: Buffer): string {
  return b.toString('base64').replace(/\+/g, '-').replace(/\//g, '_');
}

/** The `_state` token for an upload of `name` at `offset`, signed with `secret`. */
export function packUploadState(secret: string, name: string, uuid: string, offset: number, startedAt: Date): string {
  const state: UploadState = { Name: name, UUID: uuid, Offset: offset, StartedAt: formatStartedAt(startedAt) };
  const json = Buffer.from(JSON.stringify(state));
  const mac = createHmac('sha256', secret).update(json).digest();
  return goUrlBase64(Buffer.concat([mac, json]));
}

/** Verifies and decodes a token; undefined when it was not signed with `secret`. */
export function unpackUploadState(secret: string, token: string): UploadState | undefined {
  const bytes = Buffer.from(token.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
  if (bytes.length < 32) return undefined;
  const mac = createHmac('sha256', secret).update(bytes.subarray(32)).digest();
  if (!mac.equals(bytes.subarray(0, 32))) return undefined;
  try {
    return JSON.parse(bytes.subarray(32).toString('utf8')) as UploadState;
  } catch {
    return undefined;
  }
}
