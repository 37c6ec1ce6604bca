/**
 * The checks of cached tags with the upstream: concurrent checks of one tag share one upstream
 * request, and a tag's check is skipped while it is fresh or while the upstream's rate-limit
 * budget is low (`budget.ts`): the cached copy is served rather than a pull spent.
 *
 * The freshness window (extension `freshness`): a tag checked with the upstream within its window
 * is served from the cache without asking again, so a hot mutable tag (`latest`) costs one upstream
 * `HEAD` per window instead of one per pull. The window is decided per upstream from tag patterns
 * (`lib/cache-policy.ts`); `FreshnessWindow` keeps what was checked when.
 *
 * Cosign's signature, attestation and SBOM tags (`sha256-<hex>.sig`, `.att`, `.sbom`) and the OCI
 * referrers tag (`sha256-<hex>`) are appended to upstream after the image is pushed: they are never
 * frozen by a window nor by `immutabletags`.
 */
import type { Digest } from '../distribution/digest.js';
import { Inflight } from './once.js';

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
class FreshnessWindow {
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

/** Why a cached tag was served without asking the upstream. */
export type CheckSkipped = 'fresh' | 'budget';

/** The tag checks of one manifest store. */
export class TagChecks<T extends { readonly digest: Digest }> {
  private readonly inflight = new Inflight<T>();
  private readonly window: FreshnessWindow;

  constructor(
    private readonly policy: TagPolicy | undefined,
    /** True while the upstream's budget is too low to spend on revalidation. */
    private readonly lowBudget: () => boolean = () => false,
    now?: () => number,
  ) {
    this.window = new FreshnessWindow(now);
  }

  /** True for a cached tag served with no check at all (`immutabletags`). */
  immutable(tag: string): boolean {
    return this.policy?.immutable(tag) ?? false;
  }

  /** The digest `name:tag` named upstream within its freshness window, if it did. */
  fresh(name: string, tag: string): Digest | undefined {
    const ms = this.policy?.freshMs(tag) ?? 0;
    return ms > 0 ? this.window.fresh(`${name}:${tag}`, ms) : undefined;
  }

  /** Forgets the check of `name:tag` (its manifest is no longer cached). */
  forget(name: string, tag: string): void {
    this.window.forget(`${name}:${tag}`);
  }

  /** True when a cached tag is to be served rather than checked: the budget is low. */
  get deferred(): boolean {
    return this.lowBudget();
  }

  /** Checks `name:tag` with `work`, shared with the checks of it under way; a success opens its window. */
  run(name: string, tag: string, work: () => Promise<T>): Promise<T> {
    const key = `${name}:${tag}`;
    return this.inflight.run(key, async () => {
      const resolved = await work();
      this.window.checked(key, resolved.digest);
      return resolved;
    });
  }
}
