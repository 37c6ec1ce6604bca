/** `GET /v2/<name>/tags/list?n=&last=` (distribution's `tags.go`). */
import type { Request, Response } from 'express';
import type { Resource, Target } from '../resource.js';
import { sendJson } from '../messages.js';
import { lastParam, nextLink, pageSize, tagPage } from '../paging.js';

/** The route's parameters: the name as the client wrote it. */
interface TagsParams {
  readonly clientName: string;
}

/** The tag list of any repository. */
export const tagsResource: Resource<TagsParams> = {
  methods: (s, target) => {
    const get = (req: Request, res: Response, p: TagsParams): Promise<void> => tags(req, res, target!, p.clientName, s.maxTags);
    return { GET: get, HEAD: get };
  },
  params: (groups) => ({ clientName: groups[1]! }),
};

async function tags(req: Request, res: Response, t: Target, clientName: string, maxTags: number): Promise<void> {
  const asked = pageSize(req.query.n, Number.MAX_SAFE_INTEGER);
  // distribution 3.1.1: an oversized `n` is lowered to `tags.maxtags`, not refused (the OCI spec
  // lets a page be shorter when a `Link` follows); Renovate asks for n=10000.
  const n = asked === undefined ? undefined : Math.min(asked, maxTags);
  const last = lastParam(req.query.last);
  const result = tagPage(await t.tags.list(t.name, { n, last }), { n, last });
  nextLink(res, `/v2/${clientName}/tags/list`, result.next);
  // As distribution: the name the client asked for.
  sendJson(res, 200, { name: clientName, tags: result.tags });
}
