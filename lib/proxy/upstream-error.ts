/**
 * The error of every failed exchange with an upstream registry, declared with the other internal
 * errors in lib/errors.ts (so that lib/api maps it without importing lib/proxy); re-exported here
 * for the proxy's modules.
 */
export { UpstreamError, UpstreamUnreachableError, upstreamDown, type UpstreamErrorCode } from '../errors.js';
