/**
 * `GET /v2/<name>/referrers/<digest>?artifactType=` (OCI 1.1): the manifests whose `subject` is the
 * digest, as an OCI index. Hosted repositories compute it from their revisions, cached ones ask the
 * upstream (lib/proxy/proxy-referrers.ts).
 */
import type { Request, Response } from 'express';
import type { Digest } from '../../distribution/digest.js';
import type { ReferrersService } from '../../stores.js';
import { RegistryError } from '../errors.js';
import { digestParam } from '../messages.js';
import type { Resource } from '../resource.js';

/** The referrers of a repository's manifests. */
export const referrersResource: Resource<Digest> = {
  methods: (_s, target) => {
    const service = target!.referrers;
    if (!service) return undefined;
    const get = (req: Request, res: Response, digest: Digest): Promise<void> => referrers(service, req, res, target!.name, digest);
    return { GET: get, HEAD: get };
  },
  params: (groups) => digestParam(groups[2]!),
};

async function referrers(service: ReferrersService, req: Request, res: Response, name: string, digest: Digest): Promise<void> {
  const raw = req.query.artifactType;
  if (raw !== undefined && (typeof raw !== 'string' || raw === '')) throw new RegistryError('QUERY_PARAMETER_INVALID', { detail: { artifactType: raw } });
  const { index, filtered } = await service.list(name, digest, raw);
  const body = JSON.stringify(index);
  if (filtered) res.setHeader('OCI-Filters-Applied', 'artifactType');
  res.setHeader('Content-Type', index.mediaType);
  res.setHeader('Content-Length', Buffer.byteLength(body));
  res.status(200).end(req.method === 'HEAD' ? undefined : body);
}
