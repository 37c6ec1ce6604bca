/**
 * distribution's storage middlewares (`middleware.storage`, `registry/storage/driver/middleware/`):
 * each wraps the driver's `redirectURL`, the URL a client fetching a stored blob is sent to with a
 * `307` (`storage.redirect.disable` turns every redirect off, theirs too). Applied in the order
 * listed, each around the one before, as distribution does.
 *
 * - `redirect`: every blob to `baseurl` joined with its storage path, whatever the driver.
 * - `rewrite`: the driver's own URL (an S3 presigned one) with another scheme or host, a prefix of
 *   its path trimmed. A driver that hands out no URL (filesystem) is still served directly
 *   (distribution would redirect to the bare host).
 * - `cloudfront`: on S3, the object's key under `baseurl`, signed with CloudFront's canned policy
 *   (the AWS SDK's `sign.URLSigner`: RSA-SHA1 of the policy, in CloudFront's base64), valid for
 *   `duration`. On another driver, the driver's own URL, as distribution.
 */
import { createSign, type KeyObject } from 'node:crypto';
import { posix } from 'node:path';
import type { StorageMiddleware } from '../config/types.js';
import { withOverrides, type StorageDriver } from './driver.js';

type RedirectURL = StorageDriver['redirectURL'];

/** `driver` wrapped in `list` (the driver itself when it is empty); `warn` is told once of a middleware that cannot work on this driver. */
export function applyStorageMiddleware(driver: StorageDriver, list: readonly StorageMiddleware[], warn: (message: string) => void): StorageDriver {
  let wrapped = driver;
  for (const mw of list) {
    const inner: RedirectURL = wrapped.redirectURL.bind(wrapped);
    wrapped = withOverrides(wrapped, { redirectURL: redirector(mw, inner, driver, warn) });
  }
  return wrapped;
}

function redirector(mw: StorageMiddleware, inner: RedirectURL, driver: StorageDriver, warn: (message: string) => void): RedirectURL {
  switch (mw.name) {
    case 'redirect': {
      const base = mw.baseurl;
      // Go's url.URL{Scheme, Host, Path: path.Join(base path, path)}.String(): no query, no user.
      return (_method, path) => Promise.resolve(`${base.protocol}//${base.host}${posix.join(base.pathname, path)}`);
    }
    case 'rewrite':
      return async (method, path) => {
        const url = await inner(method, path);
        if (url === undefined) return undefined;
        // Go's url.URL fields replaced whole (WHATWG's host setter would keep a port).
        const u = new URL(url);
        const scheme = mw.scheme || u.protocol.slice(0, -1);
        const host = mw.host || u.host;
        const trimmed = mw.trimpathprefix && u.pathname.startsWith(mw.trimpathprefix) ? u.pathname.slice(mw.trimpathprefix.length) : u.pathname;
        return `${scheme}://${host}${trimmed}${u.search}${u.hash}`;
      };
    case 'cloudfront': {
      const key = driver.objectKey?.bind(driver);
      if (!key) {
        warn('the CloudFront middleware does not support this backend storage driver: blobs are served as without it');
        return inner;
      }
      return (_method, path) => Promise.resolve(signCloudFront(mw.baseurl + key(path), Date.now() + mw.durationms, mw));
    }
  }
}

/**
 * A CloudFront URL signed with a canned policy, byte for byte as the AWS SDK for Go signs it: the
 * policy's JSON, its RSA-SHA1 signature in CloudFront's base64 (`+=/` as `-_~`), appended as
 * `Expires`, `Signature` and `Key-Pair-Id`, in that order and unescaped.
 */
export function signCloudFront(url: string, expiresMs: number, signer: { readonly privatekey: KeyObject; readonly keypairid: string }): string {
  const expires = Math.floor(expiresMs / 1000);
  const policy = JSON.stringify({ Statement: [{ Resource: url, Condition: { DateLessThan: { 'AWS:EpochTime': expires } } }] });
  const signature = createSign('RSA-SHA1').update(policy).sign(signer.privatekey, 'base64').replace(/\+/g, '-').replace(/=/g, '_').replace(/\//g, '~');
  return `${url}${url.includes('?') ? '&' : '?'}Expires=${expires}&Signature=${signature}&Key-Pair-Id=${signer.keypairid}`;
}
