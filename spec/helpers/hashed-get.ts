/**
 * A GET whose body is hashed as it comes instead of kept (tens of concurrent 64 MiB bodies), following
 * one `307` (to a bucket) as clients do.
 */
import { createHash } from 'node:crypto';
import http from 'node:http';

/** What a hashed GET saw: `complete` false when the transfer broke. */
export interface HashedBody {
  readonly status: number;
  readonly digest: string;
  readonly bytes: number;
  readonly complete: boolean;
}

/** GETs `url`, hashing the body with SHA-256. */
export function getHashed(url: string, redirects = 1): Promise<HashedBody> {
  return new Promise((resolve) => {
    const req = http.get(url, { agent: false }, (res) => {
      if (res.statusCode === 307 && res.headers.location && redirects > 0) {
        res.resume();
        resolve(getHashed(new URL(res.headers.location, url).toString(), redirects - 1));
        return;
      }
      const hash = createHash('sha256');
      let bytes = 0;
      res.on('data', (c: Buffer) => {
        hash.update(c);
        bytes += c.length;
      });
      const done = (complete: boolean): void => resolve({ status: res.statusCode!, digest: `sha256:${hash.digest('hex')}`, bytes, complete });
      res.on('end', () => done(res.complete));
      res.on('error', () => done(false));
    });
    req.on('error', () => resolve({ status: 0, digest: '', bytes: 0, complete: false }));
  });
}
