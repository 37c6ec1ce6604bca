/**
 * `/v2/` (the API version check, distribution's `base` route) and `/v2/_catalog` (the repositories
 * stored here, paged as distribution's `catalog.go`). The base route's `GET` and `HEAD` are
 * `sendEmpty`, which lib/api/hot-path.ts calls (for express too): its table has no method.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Request, Response } from 'express';
import type { Resource, RouteServices } from '../resource.js';
import { sendJson } from '../messages.js';
import { lastParam, nextLink, pageSize } from '../paging.js';

/** `/v2/`: every method but the reads (`sendEmpty`) is unsupported. */
export const baseResource: Resource<void> = {
  methods: () => ({}),
  params: () => undefined,
};

/** `GET /v2/`: `{}` once the client may use the registry. */
export function sendEmpty(_req: IncomingMessage, res: ServerResponse): void {
  sendJson(res, 200, {});
}

/** `GET /v2/_catalog?n=&last=`. */
export const catalogResource: Resource<void> = {
  methods: (s) => {
    const get = (req: Request, res: Response): Promise<void> => catalog(s, req, res);
    return { GET: get, HEAD: get };
  },
  params: () => undefined,
};

async function catalog(s: RouteServices, req: Request, res: Response): Promise<void> {
  const n = pageSize(req.query.n, s.maxCatalogEntries) ?? s.maxCatalogEntries;
  const last = lastParam(req.query.last);
  // One more than asked tells whether there is a next page.
  const found = n === 0 ? [] : await s.listRepositories({ n: n + 1, last });
  const repositories = found.slice(0, n);
  if (found.length > n) nextLink(res, '/v2/_catalog', { last: repositories[repositories.length - 1]!, n });
  sendJson(res, 200, { repositories });
}
