/**
 * `storage.s3` as distribution's `s3-aws` driver reads it (`FromParameters` in `s3.go`): the same
 * keys, defaults and limits; booleans may be YAML booleans or strings Go's `strconv.ParseBool`
 * takes, integers may be numbers or strings of digits (environment overrides give either).
 */
import { ConfigError } from '../errors.js';
import { checked, defaultAt, ignored as I, section, type KeyDef } from './key-def.js';

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

/** `storage.s3:` as distribution's `s3-aws` driver (sizes in bytes). */
export interface S3StorageConfig {
  readonly accesskey?: string;
  readonly secretkey?: string;
  readonly sessiontoken?: string;
  readonly bucket: string;
  /** Default `us-east-1` when `regionendpoint` is set. */
  readonly region: string;
  /** An S3-compatible endpoint (`http://127.0.0.1:7480`); undefined: AWS. */
  readonly regionendpoint?: string;
  /** Path-style addressing; default: true with `regionendpoint` (as distribution 2.8), else false. */
  readonly forcepathstyle: boolean;
  readonly secure: boolean;
  readonly skipverify: boolean;
  readonly v4auth: boolean;
  readonly encrypt: boolean;
  readonly keyid?: string;
  /** Part size of multipart writes (default 10 MiB). */
  readonly chunksize: number;
  readonly multipartcopychunksize: number;
  readonly multipartcopymaxconcurrency: number;
  readonly multipartcopythresholdsize: number;
  /** Key prefix of everything stored ('' for none). */
  readonly rootdirectory: string;
  /** Upper case; `NONE` sends no storage class. */
  readonly storageclass: string;
  readonly objectacl: string;
  readonly useragent?: string;
  readonly usedualstack: boolean;
  readonly accelerate: boolean;
  readonly usefipsendpoint: boolean;
}

/** `storage.s3`'s keys with distribution's defaults, each checked by `s3Config` (no schema). */
export const S3_KEYS: KeyDef = section(
  {
    accesskey: checked(),
    secretkey: checked(),
    sessiontoken: checked(),
    // Required unless `regionendpoint` is set; then this.
    region: checked('us-east-1'),
    regionendpoint: checked(),
    // Not stated: true with `regionendpoint` (distribution 2.8), else false.
    forcepathstyle: checked(),
    bucket: checked(),
    encrypt: checked(false),
    keyid: checked(),
    secure: checked(true),
    skipverify: checked(false),
    v4auth: checked(true),
    chunksize: checked(2 * MIN_CHUNK),
    multipartcopychunksize: checked(32 * 1024 * 1024),
    multipartcopymaxconcurrency: checked(100),
    multipartcopythresholdsize: checked(32 * 1024 * 1024),
    rootdirectory: checked(''),
    storageclass: checked('STANDARD', S3_STORAGE_CLASSES),
    useragent: checked(),
    objectacl: checked('private', S3_OBJECT_ACLS),
    usedualstack: checked(false),
    accelerate: checked(false),
    usefipsendpoint: checked(false),
    loglevel: I,
    redirectendpoint: I,
  },
  {},
);

/** The default of `storage.s3.<key>`. */
const defaultOf = <T>(key: string): T => defaultAt(S3_KEYS, key) as T;

/** Go's `strconv.ParseBool`, as the driver reads a boolean; undefined for anything else. */
function parseBool(v: unknown): boolean | undefined {
  if (typeof v === 'boolean') return v;
  if (typeof v === 'string' && /^(1|t|T|TRUE|true|True)$/.test(v)) return true;
  if (typeof v === 'string' && /^(0|f|F|FALSE|false|False)$/.test(v)) return false;
  return undefined;
}

/** Keys accepted with a warning because this registry cannot honour them as given. */
export function s3Warnings(raw: unknown): string[] {
  if (!raw || typeof raw !== 'object') return [];
  return parseBool((raw as Raw).v4auth) === false
    ? ['storage.s3.v4auth: false (signature version 2) is not supported by this registry: requests are signed with version 4']
    : [];
}

/** Checks and converts `storage.s3`; throws with the key's path on a wrong value. */
export function s3Config(raw: Raw): S3StorageConfig {
  const str = (key: string): string | undefined => {
    const v = raw[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v === 'object') throw invalid(`${key}: ${JSON.stringify(v)} must be a string`);
    return String(v);
  };
  const bool = (key: string, fallback = defaultOf<boolean>(key)): boolean => {
    const v = raw[key];
    if (v === undefined || v === null) return fallback;
    const b = parseBool(v);
    if (b === undefined) throw invalid(`${key}: ${JSON.stringify(v)} must be a boolean`);
    return b;
  };
  const int = (key: string, min: number, max: number): number => {
    const v = raw[key];
    const n =
      v === undefined || v === null ? defaultOf<number>(key) : typeof v === 'number' || (typeof v === 'string' && /^\s*-?\d+\s*$/.test(v)) ? Number(v) : NaN;
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
  const storageclass = (str('storageclass') ?? defaultOf<string>('storageclass')).toUpperCase();
  if (!S3_STORAGE_CLASSES.includes(storageclass))
    throw invalid(`storageclass: ${JSON.stringify(raw.storageclass)} must be one of ${S3_STORAGE_CLASSES.join(', ')}`);
  const objectacl = str('objectacl') ?? defaultOf<string>('objectacl');
  if (!S3_OBJECT_ACLS.includes(objectacl)) throw invalid(`objectacl: ${JSON.stringify(objectacl)} must be one of ${S3_OBJECT_ACLS.join(', ')}`);
  const v4auth = bool('v4auth');
  if (!v4auth && (!regionendpoint || regionendpoint.includes('s3.amazonaws.com')))
    throw invalid('v4auth: on Amazon S3 this storage driver can only be used with v4 authentication');
  return {
    accesskey: str('accesskey') || undefined,
    secretkey: str('secretkey') || undefined,
    sessiontoken: str('sessiontoken') || undefined,
    bucket,
    region: region ?? defaultOf<string>('region'),
    regionendpoint,
    // distribution 2.8 always addressed a custom endpoint path-style; v3 asks for `forcepathstyle`.
    // Configurations written for 2.8 keep working: path style unless told otherwise.
    forcepathstyle: bool('forcepathstyle', regionendpoint !== undefined),
    secure: bool('secure'),
    skipverify: bool('skipverify'),
    v4auth,
    encrypt: bool('encrypt'),
    keyid: str('keyid') || undefined,
    chunksize: int('chunksize', MIN_CHUNK, MAX_CHUNK),
    multipartcopychunksize: int('multipartcopychunksize', MIN_CHUNK, MAX_CHUNK),
    multipartcopymaxconcurrency: int('multipartcopymaxconcurrency', 1, Number.MAX_SAFE_INTEGER),
    multipartcopythresholdsize: int('multipartcopythresholdsize', 0, MAX_CHUNK),
    rootdirectory: str('rootdirectory') ?? defaultOf<string>('rootdirectory'),
    storageclass,
    objectacl,
    useragent: str('useragent') || undefined,
    usedualstack: bool('usedualstack'),
    accelerate: bool('accelerate'),
    usefipsendpoint: bool('usefipsendpoint'),
  };
}
