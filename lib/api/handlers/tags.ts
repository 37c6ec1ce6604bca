/** `GET /v2/<name>/tags/list?n=&last=` (distribution's `tags.go`). */
import type { Request, Response } from 'express';
import type { Resource, Target } from '../router.js';
import { sendJson } from '../messages.js';
import { lastParam, nextLink, pageSize, tagPage } from '../paging.js';

/** The route's parameters: the name as the client wrote it. */
interface TagsParams {
  readonly clientName: string;
}

/** The tag list of any repository. */
export const tagsResource: Resource<TagsParams> = {
  methods: (_s, target) => {
    const get = (req: Request, res: Response, p: TagsParams): Promise<void> => tags(req, res, target!, p.clientName);
    return { GET: get, HEAD: get };
  },
  params: (groups) => ({ clientName: groups[1]! }),
};

async function tags(req: Request, res: Response, t: Target, clientName: string): Promise<void> {
  const n = pageSize(req.query.n, Number.MAX_SAFE_INTEGER);
  const last = lastParam(req.query.last);
  const result = tagPage(await t.tags.list(t.name, { n, last }), { n, last });
  nextLink(res, `/v2/${clientName}/tags/list`, result.next);
  // As distribution: the name the client asked for.
  sendJson(res, 200, { name: clientName, tags: result.tags });
}
