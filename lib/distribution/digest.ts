/**
 * Content digests (`sha256:<64 hex>`): parsing, validation and hashing. Only algorithms whose hex
 * length is fixed are accepted, so a parsed digest is always safe to use as a path component.
 */
import { createHash, type Hash } from 'node:crypto';

/** The algorithms distribution registers, with their hex lengths. */
const ALGORITHMS: Record<string, number> = { sha256: 64, sha384: 96, sha512: 128 };

/** A validated digest. */
export interface Digest {
  readonly algorithm: 'sha256' | 'sha384' | 'sha512';
  readonly hex: string;
  /** The canonical string form, `algorithm:hex`. */
  readonly value: string;
}

/** Parses `algorithm:hex`; returns undefined for anything that is not a valid, supported digest. */
export function parseDigest(s: string): Digest | undefined {
  const i = s.indexOf(':');
  if (i <= 0) return undefined;
  const algorithm = s.slice(0, i);
  const hex = s.slice(i + 1);
  const len = ALGORITHMS[algorithm];
  if (len === undefined || hex.length !== len || !/^[a-f0-9]+$/.test(hex)) return undefined;
  return { algorithm: algorithm as Digest['algorithm'], hex, value: s };
}

/** True when `s` looks like a digest at all (`alg:encoded`), supported or not: distribution routes such references as digests. */
export function looksLikeDigest(s: string): boolean {
  return /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/.test(s);
}

/** A running hash for `digest`'s algorithm. */
export function hasherFor(digest: Pick<Digest, 'algorithm'>): Hash {
  return createHash(digest.algorithm);
}

/** The sha256 digest string of a buffer. */
export function sha256Of(data: Buffer | string): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

/** The digest of `data` under the algorithm of `digest`. */
export function digestOf(data: Buffer, algorithm: Digest['algorithm'] = 'sha256'): string {
  return `${algorithm}:${createHash(algorithm).update(data).digest('hex')}`;
}
