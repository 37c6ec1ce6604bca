/**
 * distribution's on-disk layout (`registry/storage/paths.go`), built in this one module, and the few
 * paths of ours beside it at the storage root (temporary files, replica locks) with distribution's
 * `scheduler-state.json`. Paths are logical (absolute, slash-separated, relative to the storage
 * root); every function re-checks its inputs, so no value can name a path outside its tree.
 */
import { InvalidPathError } from '../errors.js';
import type { Digest } from '../distribution/digest.js';
import { isValidName, isValidTag } from '../distribution/reference.js';

/** The root of everything distribution stores. */
export const ROOT = '/docker/registry/v2';

function checkName(name: string): string {
  if (!isValidName(name)) throw new InvalidPathError(`invalid repository name: ${JSON.stringify(name)}`);
  return name;
}

function checkTag(tag: string): string {
  if (!isValidTag(tag)) throw new InvalidPathError(`invalid tag: ${JSON.stringify(tag)}`);
  return tag;
}

function checkAlgorithm(algorithm: string): string {
  if (!isDigestAlgorithm(algorithm)) throw new InvalidPathError(`invalid digest algorithm: ${JSON.stringify(algorithm)}`);
  return algorithm;
}

function checkDigest(d: Digest): Digest {
  if (!/^sha(256|384|512)$/.test(d.algorithm) || !/^[a-f0-9]+$/.test(d.hex)) {
    throw new InvalidPathError(`invalid digest: ${JSON.stringify(d.value)}`);
  }
  return d;
}

/** The proxy scheduler's state, at the storage root as distribution keeps it (`scheduler-state.json`). */
export const SCHEDULER_STATE_PATH = '/scheduler-state.json';
/** The schedule's journals, one per replica, in this directory beside `scheduler-state.json`. */
export const SCHEDULER_JOURNAL_ENTRY = '.scheduler-journal';
/** Temporary files of this program's processes (`.tmp/<host>-<pid>-<id>/`), renamed into place when complete. */
export const TEMP_ROOT = '/.tmp';
/** `.locks/<key>`: a lock shared by the processes on one storage root (replicas). */
export const lockPath = (key: string): string => `/.locks/${key}`;

/** The lock of the one upstream fetch of a blob, across replicas. */
export const blobLockKey = (d: Digest): string => `blobs/${checkDigest(d).algorithm}/${d.hex}`;
/** The lock of the one upstream fetch of a repository's manifest, across replicas. */
export const manifestLockKey = (name: string, d: Digest): string => `manifests/${checkName(name)}/${checkDigest(d).algorithm}/${d.hex}`;
/** The lock of the first fetch of a tag not cached yet (one replica fetches it by tag, the others wait). */
export const tagLockKey = (name: string, tag: string): string => `tags/${checkName(name)}/${checkTag(tag)}`;
/** The lock whose holder runs the expiries for every replica. */
export const SCHEDULER_LEASE_KEY = 'scheduler-lease';

/** The directory a repository has once anything was stored in it (`_manifests`); the catalog lists those. */
export const MANIFESTS_ENTRY = '_manifests';
/** The directory of a repository's upload sessions (`_uploads`). */
export const UPLOADS_ENTRY = '_uploads';
/** Entries of `repositories/` with this prefix are the layout's, never part of a name. */
export const RESERVED_PREFIX = '_';

/** `blobs/` */
export const blobsRoot = (): string => `${ROOT}/blobs`;
/** `blobs/<alg>`, or `blobs/<alg>/<xx>` (walked by the blob listing). */
export const blobsDir = (algorithm: string, prefix?: string): string => {
  if (prefix !== undefined && !isBlobPrefix(prefix)) throw new InvalidPathError(`invalid blob directory: ${JSON.stringify(prefix)}`);
  return `${ROOT}/blobs/${checkAlgorithm(algorithm)}${prefix === undefined ? '' : `/${prefix}`}`;
};
/** True for the digest algorithms the layout holds (`sha256`, `sha384`, `sha512`). */
export const isDigestAlgorithm = (name: string): boolean => /^sha(256|384|512)$/.test(name);
/** True for a `blobs/<alg>/<xx>` directory name: the first two hex digits of the digests below it. */
export const isBlobPrefix = (name: string): boolean => /^[a-f0-9]{2}$/.test(name);
/** `blobs/<alg>/<hex[0:2]>/<hex>` */
export const blobDir = (d: Digest): string => `${ROOT}/blobs/${checkDigest(d).algorithm}/${d.hex.slice(0, 2)}/${d.hex}`;
/** `blobs/<alg>/<hex[0:2]>/<hex>/data` */
export const blobDataPath = (d: Digest): string => `${blobDir(d)}/data`;
/** `repositories/` */
export const repositoriesRoot = (): string => `${ROOT}/repositories`;
/** `repositories/<name>` */
export const repositoryDir = (name: string): string => `${ROOT}/repositories/${checkName(name)}`;
/** `repositories/<name>/_manifests` */
export const manifestsDir = (name: string): string => `${repositoryDir(name)}/${MANIFESTS_ENTRY}`;
/** `repositories/<name>/_layers/<alg>` */
export const layersDir = (name: string, algorithm = 'sha256'): string => `${repositoryDir(name)}/_layers/${checkAlgorithm(algorithm)}`;
/** `repositories/<name>/_layers/<alg>/<hex>/link` */
export const layerLinkPath = (name: string, d: Digest): string => `${repositoryDir(name)}/_layers/${checkDigest(d).algorithm}/${d.hex}/link`;
/** `repositories/<name>/_manifests/revisions/<alg>` */
export const revisionsDir = (name: string, algorithm = 'sha256'): string => `${manifestsDir(name)}/revisions/${checkAlgorithm(algorithm)}`;
/** `repositories/<name>/_manifests/revisions/<alg>/<hex>/link` */
export const manifestRevisionLinkPath = (name: string, d: Digest): string => `${manifestsDir(name)}/revisions/${checkDigest(d).algorithm}/${d.hex}/link`;
/** `repositories/<name>/_manifests/tags` */
export const tagsDir = (name: string): string => `${manifestsDir(name)}/tags`;
/** `repositories/<name>/_manifests/tags/<tag>` */
export const tagDir = (name: string, tag: string): string => `${tagsDir(name)}/${checkTag(tag)}`;
/** `repositories/<name>/_manifests/tags/<tag>/current/link` */
export const tagCurrentLinkPath = (name: string, tag: string): string => `${tagDir(name, tag)}/current/link`;
/** `repositories/<name>/_manifests/tags/<tag>/index/<alg>/<hex>/link` */
export const tagIndexLinkPath = (name: string, tag: string, d: Digest): string => `${tagDir(name, tag)}/index/${checkDigest(d).algorithm}/${d.hex}/link`;
/** `repositories/<name>/_uploads/<uuid>` */
export const uploadDir = (name: string, uuid: string): string => {
  if (!/^[a-f0-9-]{8,64}$/.test(uuid)) throw new InvalidPathError(`invalid upload id: ${JSON.stringify(uuid)}`);
  return `${repositoryDir(name)}/${UPLOADS_ENTRY}/${uuid}`;
};
/** `repositories/<name>/_uploads/<uuid>/startedat`: when the upload began (RFC 3339); the upload exists while it does. */
export const uploadStartedAtPath = (name: string, uuid: string): string => `${uploadDir(name, uuid)}/startedat`;
/** `repositories/<name>/_uploads/<uuid>/data`: the bytes received so far. */
export const uploadDataPath = (name: string, uuid: string): string => `${uploadDir(name, uuid)}/data`;
