/**
 * Manifest content negotiation as distribution's manifest handler: a client that names the types it
 * accepts and not the stored index type gets the linux/amd64 image of the index (for a tag); other
 * unacceptable types are unknown to it. A client that names none gets the manifest as stored.
 */
import type { IncomingMessage } from 'node:http';
import { readManifest } from '../distribution/manifest.js';
import { isIndexType, parseAccept } from '../distribution/mediatypes.js';
import type { Manifest } from '../stores.js';
import { RegistryError } from './errors.js';
import type { Target } from './resource.js';

/** The manifest to send for `m` given the client's `Accept`; `MANIFEST_UNKNOWN` when none fits. */
export async function negotiate(t: Target, req: IncomingMessage, m: Manifest, byTag: boolean): Promise<Manifest> {
  const accepted = parseAccept(req.headers.accept);
  if (accepted.length === 0 || accepted.includes('*/*') || accepted.includes(m.mediaType)) return m;
  if (isIndexType(m.mediaType) && byTag) {
    const entry = readManifest(m.payload).refs.manifests.find((e) => e.platform?.os === 'linux' && e.platform.architecture === 'amd64');
    if (entry) {
      const chosen = await t.manifests.getByDigest(t.name, entry.digest);
      if (accepted.includes(chosen.mediaType)) return chosen;
    }
  }
  throw new RegistryError('MANIFEST_UNKNOWN', { detail: `${m.mediaType} manifest found, but the Accept header does not support it` });
}
