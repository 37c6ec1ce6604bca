/**
 * Lexical pagination of a sorted tag list, as distribution pages it: the tags after `last`
 * (exclusive), at most `n`, and where the next page starts when there are more.
 */

/** One page of a sorted list. */
export interface Page {
  readonly tags: string[];
  /** Set when more follow: the next page starts after `last`, `n` at a time. */
  readonly next?: { last: string; n: number };
}

/** The page of `all` (sorted) after `last`, at most `n` (everything after `last` when `n` is undefined). */
export function paginate(all: readonly string[], page: { readonly n?: number; readonly last?: string }): Page {
  const start = page.last === undefined ? 0 : all.findIndex((t) => t > page.last!);
  const rest = start < 0 ? [] : all.slice(start);
  if (page.n === undefined || rest.length <= page.n) return { tags: rest };
  // `n=0` asks for no entries (and has no next page to point at).
  if (page.n === 0) return { tags: [] };
  const tags = rest.slice(0, page.n);
  return { tags, next: { last: tags[tags.length - 1]!, n: page.n } };
}
