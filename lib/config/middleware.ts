/**
 * `middleware:`, defined and converted in one place. distribution wraps its storage driver in the
 * `storage` middlewares listed (`registry/storage/driver/middleware/`): `redirect` and `cloudfront`
 * (2.8 and 3) and `rewrite` (3) change the URL a blob `GET` is redirected to. Its `registry` and
 * `repository` middlewares have no implementation built in (a build adds its own), so a registry:2
 * with any listed would not start; neither does this one. Each entry is checked here.
 */
import { readFileSync } from 'node:fs';
import { createPrivateKey, type KeyObject } from 'node:crypto';
import { ConfigError, UnsupportedConfigError } from '../errors.js';
import { tryParseDuration } from './duration.js';
import { checked, converted, isKeyOf, isMapping, map, section, shaped, type KeyDef } from './key-def.js';

/** `redirect`: every blob to `baseurl` joined with the blob's storage path (distribution 3 joins the URL's path; 2.8 drops it). */
interface RedirectMiddleware {
  readonly name: 'redirect';
  readonly baseurl: URL;
}

/** `rewrite` (distribution 3): the scheme and host of the driver's redirect URL replaced, a prefix of its path trimmed. */
interface RewriteMiddleware {
  readonly name: 'rewrite';
  readonly scheme: string;
  readonly host: string;
  readonly trimpathprefix: string;
}

/** `cloudfront`: S3 blobs redirected to `baseurl` + their object key, in a URL signed with CloudFront's canned policy. */
interface CloudFrontMiddleware {
  readonly name: 'cloudfront';
  /** With a scheme (`https://` when none was given) and a trailing `/`, as distribution makes it. */
  readonly baseurl: string;
  readonly privatekey: KeyObject;
  readonly keypairid: string;
  /** How long a signed URL is valid (default 20 minutes). */
  readonly durationms: number;
}

/** One storage middleware, in the order the list gives them: each wraps the one before. */
export type StorageMiddleware = RedirectMiddleware | RewriteMiddleware | CloudFrontMiddleware;

/** `middleware:` as this registry uses it. */
export interface MiddlewareConfig {
  readonly storage: readonly StorageMiddleware[];
}

const ENTRY = shaped({ name: checked(), disabled: checked(false), options: map() }, { type: ['array', 'null'], items: { type: 'object' } });

const KEYS: KeyDef = section({ registry: ENTRY, repository: ENTRY, storage: ENTRY }, { default: {} });

const invalid = (message: string): ConfigError => new ConfigError(`middleware.${message}`);

type Options = Readonly<Record<string, unknown>>;

function option(options: Options, name: string, at: string, required: boolean): string | undefined {
  const v = options[name];
  if (v === undefined || v === null) {
    if (required) throw invalid(`${at}: no ${name} provided`);
    return undefined;
  }
  if (typeof v !== 'string') throw invalid(`${at}: ${name} must be a string`);
  return v;
}

function redirect(options: Options, at: string): RedirectMiddleware {
  const base = option(options, 'baseurl', at, true)!;
  let url: URL;
  try {
    url = new URL(base);
  } catch {
    throw invalid(`${at}: unable to parse redirect baseurl: ${base}`);
  }
  if (url.host === '') throw invalid(`${at}: no host specified for redirect baseurl`);
  return { name: 'redirect', baseurl: url };
}

function rewrite(options: Options, at: string): RewriteMiddleware {
  return {
    name: 'rewrite',
    scheme: option(options, 'scheme', at, false) ?? '',
    host: option(options, 'host', at, false) ?? '',
    trimpathprefix: option(options, 'trimpathprefix', at, false) ?? '',
  };
}

function cloudfront(options: Options, at: string): CloudFrontMiddleware {
  let baseurl = option(options, 'baseurl', at, true)!;
  if (!baseurl.includes('://')) baseurl = `https://${baseurl}`;
  if (!baseurl.endsWith('/')) baseurl += '/';
  try {
    new URL(baseurl);
  } catch {
    throw invalid(`${at}: invalid baseurl: ${baseurl}`);
  }
  const keyPath = option(options, 'privatekey', at, true)!;
  const keypairid = option(options, 'keypairid', at, true)!;
  let privatekey: KeyObject;
  try {
    privatekey = createPrivateKey(readFileSync(keyPath, 'utf8'));
  } catch (err) {
    throw invalid(`${at}: failed to read privatekey file ${JSON.stringify(keyPath)}: ${(err as Error).message}`);
  }
  if (privatekey.asymmetricKeyType !== 'rsa') throw invalid(`${at}: failed to decode private key as an rsa private key`);
  const d = options.duration;
  const durationms = d === undefined || d === null ? 20 * 60_000 : tryParseDuration(d);
  if (durationms === undefined) throw invalid(`${at}: invalid duration: ${JSON.stringify(d)}`);
  const filter = options.ipfilteredby;
  if (filter !== undefined && filter !== null && !(typeof filter === 'string' && ['', 'none'].includes(filter.trim().toLowerCase()))) {
    if (typeof filter !== 'string' || !['aws', 'awsregion'].includes(filter.trim().toLowerCase()))
      throw invalid(`${at}: ipfilteredby only allows a string with the following value: none|aws|awsregion`);
    // Sending AWS's own addresses to S3 directly needs the client's address and AWS's published
    // ranges: not built. Ignoring it would send them through CloudFront, at CloudFront's price.
    throw new UnsupportedConfigError(`${at}.options.ipfilteredby: ${filter} is not implemented by this registry yet; refusing to start without it`);
  }
  return { name: 'cloudfront', baseurl, privatekey, keypairid, durationms };
}

const BUILDERS: Readonly<Record<string, (options: Options, at: string) => StorageMiddleware>> = { redirect, rewrite, cloudfront };

function storageMiddleware(raw: unknown, i: number): StorageMiddleware | undefined {
  const at = `storage[${i}]`;
  if (!isMapping(raw)) throw invalid(`${at} must be a mapping with a name`);
  const entry = raw;
  for (const k of Object.keys(entry)) if (!isKeyOf(ENTRY, k)) throw invalid(`${at}.${k} is not a known key of a middleware`);
  if (typeof entry.name !== 'string') throw invalid(`${at}: name must be a string`);
  const build = Object.hasOwn(BUILDERS, entry.name) ? BUILDERS[entry.name] : undefined;
  if (!build) throw invalid(`${at}: no storage middleware registered with name: ${entry.name} (cloudfront, redirect and rewrite are)`);
  // distribution 3 applies a `disabled` entry all the same; an operator writing it means it off.
  if (entry.disabled === true || entry.disabled === 'true') return undefined;
  const options = entry.options ?? {};
  if (!isMapping(options)) throw invalid(`${at}.options must be a mapping`);
  return build(options, at);
}

/** `middleware:` and its conversion. */
export const MIDDLEWARE_KEYS = converted(KEYS, (raw): MiddlewareConfig => {
  for (const kind of ['registry', 'repository'] as const) {
    const list = (raw[kind] ?? []) as unknown[];
    if (list.length > 0)
      throw invalid(`${kind}: no ${kind} middleware is built into distribution or this registry (a registry:2 with one listed does not start either)`);
  }
  const storage = ((raw.storage ?? []) as unknown[]).map(storageMiddleware).filter((m): m is StorageMiddleware => m !== undefined);
  return { storage };
});
