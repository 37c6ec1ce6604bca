/**
 * Tag listing in pull-through mode (distribution `registry/proxy/proxytagservice.go`): the upstream
 * is asked first, and the cached tags answer when it cannot be reached.
 */
import type { PageRequest, TagPage, TagService } from '../stores.js';
import type { RepositoryStore } from '../storage/repository-store.js';
import type { Upstream } from './upstream.js';
import { UpstreamError } from './upstream-error.js';

/** The tags side of the pull-through cache. */
export class ProxyTagService implements TagService {
  constructor(
    private readonly repository: (name: string) => RepositoryStore,
    private readonly upstream: Upstream,
  ) {}

  /** The upstream's page of `name`'s tags after `last`, at most `n`; every cached tag when it is down. */
  async list(name: string, page: PageRequest): Promise<TagPage> {
    try {
      return await this.fromUpstream(name, page);
    } catch (err) {
      if (!(err instanceof UpstreamError) || !err.isUnavailable) throw err;
      // The tag directories' names, as distribution lists its own tags (no read per tag).
      const tags = await this.repository(name).tagNames();
      if (tags.length === 0) throw err;
      // Every cached tag: the route pages lists that do not come from an upstream (as the hosted
      // ones). Paging here as well paged a page, and the route then saw no next page.
      return { tags, paged: false };
    }
  }

  private async fromUpstream(name: string, page: PageRequest): Promise<TagPage> {
    const query = new URLSearchParams();
    if (page.n !== undefined) query.set('n', String(page.n));
    if (page.last !== undefined) query.set('last', page.last);
    const qs = query.size > 0 ? `?${query.toString()}` : '';
    const reply = await this.upstream.getTags(name, qs);
    let tags: string[];
    try {
      const parsed = JSON.parse(reply.body.toString('utf8')) as { tags?: unknown };
      tags = Array.isArray(parsed.tags) ? parsed.tags.filter((t): t is string => typeof t === 'string') : [];
    } catch (cause) {
      throw new UpstreamError('ERR_UPSTREAM_INVALID', `upstream tag list of ${name} is not JSON`, { cause });
    }
    const link = reply.headers.link;
    const next = typeof link === 'string' ? parseNextLink(link) : undefined;
    // No next page: the upstream sent the whole rest of the list, but not every upstream sorts or
    // pages it (distribution 2.8 ignores `n` and `last`). The route makes the spec's page of it;
    // for an upstream that paged already that changes nothing.
    return next ? { tags, next, paged: true } : { tags, paged: false };
  }
}

function parseNextLink(link: string): { last: string; n: number } | undefined {
  const m = /<([^>]*)>\s*;\s*rel="?next"?/.exec(link);
  if (!m) return undefined;
  const url = new URL(m[1]!, 'http://upstream.invalid');
  const last = url.searchParams.get('last');
  const n = Number(url.searchParams.get('n'));
  return last !== null && Number.isInteger(n) && n > 0 ? { last, n } : undefined;
}
