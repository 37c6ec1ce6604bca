/**
 * `storage.s3` as distribution's `s3-aws` driver reads it (`FromParameters` in `s3.go`): the same
 * keys, defaults and limits; booleans may be YAML booleans or strings Go's `strconv.ParseBool`
 * takes, integers may be numbers or strings of digits (environment overrides give either).
 */
import { ConfigError } from '../errors.js';
import type { S3StorageConfig } from './types.js';

const MIN_CHUNK = 5 * 1024 * 1024;
const MAX_CHUNK = 5 * 1024 ** 3;

/** Storage classes S3 serves without a restore (distribution's list); `NONE` sends none. */
const S3_STORAGE_CLASSES = [
  'NONE',
  'STANDARD',
  'REDUCED_REDUNDANCY',
  'STANDARD_IA',
  'ONEZONE_IA',
  'INTELLIGENT_TIERING',
  'OUTPOSTS',
  'GLACIER_IR',
  'EXPRESS_ONEZONE',
];
/** Canned ACLs distribution accepts for `objectacl`. */
const S3_OBJECT_ACLS = ['private', 'public-read', 'public-read-write', 'authenticated-read', 'aws-exec-read', 'bucket-owner-read', 'bucket-owner-full-control'];

const invalid = (message: string): ConfigError => new ConfigError(`storage.s3.${message}`);

type Raw = Record<string, unknown>;

/** Checks and converts `storage.s3`; throws with the key's path on a wrong value. */
export function s3Config(raw: Raw): S3StorageConfig {
  const str = (key: string): string | undefined => {
    const v = raw[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v === 'object') throw invalid(`${key}: ${JSON.stringify(v)} must be a string`);
    return String(v);
  };
  const bool = (key: string, fallback: boolean): boolean => {
    const v = raw[key];
    if (v === undefined || v === null) return fallback;
    if (typeof v === 'boolean') return v;
    if (typeof v === 'string' && /^(1|t|T|TRUE|true|True)$/.test(v)) return true;
    if (typeof v === 'string' && /^(0|f|F|FALSE|false|False)$/.test(v)) return false;
    throw invalid(`${key}: ${JSON.stringify(v)} must be a boolean`);
  };
  const int = (key: string, fallback: number, min: number, max: number): number => {
    const v = raw[key];
    const n = v === undefined || v === null ? fallback : typeof v === 'number' || (typeof v === 'string' && /^\s*-?\d+\s*$/.test(v)) ? Number(v) : NaN;
    if (!Number.isSafeInteger(n)) throw invalid(`${key}: ${JSON.stringify(v)} must be an integer`);
    if (n < min || n > max) throw invalid(`${key}: ${n} must be between ${min} and ${max} (inclusive)`);
    return n;
  };
  const bucket = str('bucket');
  if (!bucket) throw invalid('bucket is required');
  const regionendpoint = str('regionendpoint') || undefined;
  const region = str('region') || undefined;
  // With a custom endpoint any region name goes (distribution does not check it then).
  if (!regionendpoint && !region) throw invalid('region is required unless regionendpoint is set');
  if (region && !regionendpoint && !/^[a-z]{2}(-[a-z]+)+-\d+$/.test(region))
    throw invalid(`region: ${JSON.stringify(region)} is not an AWS region like us-east-1`);
  const storageclass = (str('storageclass') ?? 'STANDARD').toUpperCase();
  if (!S3_STORAGE_CLASSES.includes(storageclass))
    throw invalid(`storageclass: ${JSON.stringify(raw.storageclass)} must be one of ${S3_STORAGE_CLASSES.join(', ')}`);
  const objectacl = str('objectacl') ?? 'private';
  if (!S3_OBJECT_ACLS.includes(objectacl)) throw invalid(`objectacl: ${JSON.stringify(objectacl)} must be one of ${S3_OBJECT_ACLS.join(', ')}`);
  const v4auth = bool('v4auth', true);
  if (!v4auth && (!regionendpoint || regionendpoint.includes('s3.amazonaws.com')))
    throw invalid('v4auth: on Amazon S3 this storage driver can only be used with v4 authentication');
  return {
    accesskey: str('accesskey') || undefined,
    secretkey: str('secretkey') || undefined,
    sessiontoken: str('sessiontoken') || undefined,
    bucket,
    region: region ?? 'us-east-1',
    regionendpoint,
    // distribution 2.8 always addressed a custom endpoint path-style; v3 asks for `forcepathstyle`.
    // Configurations written for 2.8 keep working: path style unless told otherwise.
    forcepathstyle: bool('forcepathstyle', regionendpoint !== undefined),
    secure: bool('secure', true),
    skipverify: bool('skipverify', false),
    v4auth,
    encrypt: bool('encrypt', false),
    keyid: str('keyid') || undefined,
    chunksize: int('chunksize', 2 * MIN_CHUNK, MIN_CHUNK, MAX_CHUNK),
    multipartcopychunksize: int('multipartcopychunksize', 32 * 1024 * 1024, MIN_CHUNK, MAX_CHUNK),
    multipartcopymaxconcurrency: int('multipartcopymaxconcurrency', 100, 1, Number.MAX_SAFE_INTEGER),
    multipartcopythresholdsize: int('multipartcopythresholdsize', 32 * 1024 * 1024, 0, MAX_CHUNK),
    rootdirectory: str('rootdirectory') ?? '',
    storageclass,
    objectacl,
    useragent: str('useragent') || undefined,
    usedualstack: bool('usedualstack', false),
    accelerate: bool('accelerate', false),
    usefipsendpoint: bool('usefipsendpoint', false),
  };
}
