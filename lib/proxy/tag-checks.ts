/**
 * The checks of cached tags with the upstream: concurrent checks of one tag share one upstream
 * request, and a tag's check is skipped while it is fresh (`freshness.ts`) or while the upstream's
 * rate-limit budget is low (`budget.ts`): the cached copy is served rather than a pull spent.
 */
import type { Digest } from '../distribution/digest.js';
import { FreshnessWindow, type TagPolicy } from './freshness.js';
import { Inflight } from './inflight.js';

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
