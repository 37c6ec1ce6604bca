/**
 * The paging of the catalog and tag lists as distribution does it: the parameters (`n`, `last`),
 * lexical pagination of a sorted list, and the `Link: <...>; rel="next"` header of the next page.
 */
import type { Response } from 'express';
import type { TagPage } from '../stores.js';
import { RegistryError } from './errors.js';

/** `n` as distribution bounds it: a non-negative integer no larger than `max`; undefined when absent. */
export function pageSize(raw: unknown, max: number): number | undefined {
  if (raw === undefined) return undefined;
  const n = typeof raw === 'string' && /^\d+$/.test(raw) ? Number(raw) : NaN;
  if (!Number.isSafeInteger(n) || n > max) {
    throw new RegistryError('PAGINATION_NUMBER_INVALID', { detail: { n: typeof raw === 'string' && /^-?\d+$/.test(raw) ? Number(raw) : raw } });
  }
  return n;
}

/** `last`, the name the page starts after; undefined when absent. */
export function lastParam(raw: unknown): string | undefined {
  if (raw === undefined) return undefined;
  if (typeof raw !== 'string') throw new RegistryError('PAGINATION_NUMBER_INVALID', { detail: { last: raw } });
  return raw;
}

/** Sets `Link` to the next page of `path` (relative to the registry's prefix), when there is one. */
export function nextLink(res: Response, path: string, next: { last: string; n: number } | undefined): void {
  if (!next) return;
  const base = res.req.baseUrl ?? '';
  res.setHeader('Link', `<${base}${path}?last=${encodeURIComponent(next.last)}&n=${next.n}>; rel="next"`);
}

/** The page to send of a store's answer: a page as it came, every tag sorted and paged here. */
export function tagPage(page: TagPage, request: { n?: number; last?: string }): Page {
  return page.paged ? page : paginate([...page.tags].sort(), request);
}

/** One page of a sorted list. */
interface Page {
  readonly tags: string[];
  /** Set when more follow: the next page starts after `last`, `n` at a time. */
  readonly next?: { last: string; n: number };
}

/** The page of `all` (sorted) after `last`, at most `n` (everything after `last` when `n` is undefined). */
function paginate(all: readonly string[], page: { readonly n?: number; readonly last?: string }): Page {
  const start = page.last === undefined ? 0 : all.findIndex((t) => t > page.last!);
  const rest = start < 0 ? [] : all.slice(start);
  if (page.n === undefined || rest.length <= page.n) return { tags: rest };
  // `n=0` asks for no entries (and has no next page to point at).
  if (page.n === 0) return { tags: [] };
  const tags = rest.slice(0, page.n);
  return { tags, next: { last: tags[tags.length - 1]!, n: page.n } };
}
