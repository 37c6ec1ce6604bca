/**
 * The freshness window (extension `freshness`): a tag checked with the upstream within its window
 * is served from the cache without asking again, so a hot mutable tag (`latest`) costs one upstream
 * `HEAD` per window instead of one per pull. The window is decided per upstream from tag patterns
 * (`lib/cache-policy.ts`); this module keeps what was checked when.
 *
 * Cosign's signature, attestation and SBOM tags (`sha256-<hex>.sig`, `.att`, `.sbom`) and the OCI
 * referrers tag (`sha256-<hex>`) are appended to upstream after the image is pushed: they are never
 * frozen by a window nor by `immutabletags`.
 */
import type { Digest } from '../distribution/digest.js';

/**
 * A cosign signature, attestation or SBOM tag (`sha256-<64 hex>.sig`, `.att`, `.sbom`), or the OCI
 * referrers tag schema's index (`sha256-<64 hex>`), which gains an entry with every new referrer.
 */
const SIGNATURE_TAG = /^sha256-[0-9a-f]{64}(?:\.(?:sig|att|sbom))?$/;

/** True for a tag appended to upstream after the image (its content changes after the first copy). */
export function isSignatureTag(tag: string): boolean {
  return SIGNATURE_TAG.test(tag);
}

/** How the tags of one upstream are checked: decided once (`lib/cache-policy.ts`), acted on here. */
export interface TagPolicy {
  /** True for a tag whose cached manifest is served with no upstream check at all (`immutabletags`). */
  immutable(tag: string): boolean;
  /** How long in ms a tag checked upstream is served without asking again; 0: every pull asks. */
  freshMs(tag: string): number;
}

/** Most tags remembered: beyond it the oldest check is forgotten (and the tag simply checked again). */
const MAX_REMEMBERED = 10_000;

/** When each tag was last confirmed upstream, and the digest it named then. */
export class FreshnessWindow {
  private readonly checks = new Map<string, { digest: Digest; at: number }>();

  constructor(private readonly now: () => number = Date.now) {}

  /** The digest `key` named when last checked, if that was less than `windowMs` ago. */
  fresh(key: string, windowMs: number): Digest | undefined {
    if (windowMs <= 0) return undefined;
    const check = this.checks.get(key);
    if (!check) return undefined;
    if (this.now() - check.at < windowMs) return check.digest;
    this.checks.delete(key);
    return undefined;
  }

  /** Records that the upstream named `digest` for `key` just now. */
  checked(key: string, digest: Digest): void {
    // Re-inserted so the map's order is the order of checks: the first entry is the oldest.
    this.checks.delete(key);
    this.checks.set(key, { digest, at: this.now() });
    if (this.checks.size > MAX_REMEMBERED) this.checks.delete(this.checks.keys().next().value!);
  }

  /** Forgets `key` (its cached manifest is gone). */
  forget(key: string): void {
    this.checks.delete(key);
  }
}
