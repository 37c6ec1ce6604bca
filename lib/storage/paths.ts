/**
 * distribution's on-disk layout (`registry/storage/paths.go`), built in this one module. Every
 * function re-checks its inputs, so no value can name a path outside `/docker/registry/v2`.
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

function checkDigest(d: Digest): Digest {
  if (!/^sha(256|384|512)$/.test(d.algorithm) || !/^[a-f0-9]+$/.test(d.hex)) {
    throw new InvalidPathError(`invalid digest: ${JSON.stringify(d.value)}`);
  }
  return d;
}

/** `blobs/` */
export const blobsRoot = (): string => `${ROOT}/blobs`;
/** `blobs/<alg>/<hex[0:2]>/<hex>` */
export const blobDir = (d: Digest): string => `${ROOT}/blobs/${checkDigest(d).algorithm}/${d.hex.slice(0, 2)}/${d.hex}`;
/** `blobs/<alg>/<hex[0:2]>/<hex>/data` */
export const blobDataPath = (d: Digest): string => `${blobDir(d)}/data`;
/** `repositories/` */
export const repositoriesRoot = (): string => `${ROOT}/repositories`;
/** `repositories/<name>` */
export const repositoryDir = (name: string): string => `${ROOT}/repositories/${checkName(name)}`;
/** `repositories/<name>/_layers/<alg>` */
export const layersDir = (name: string, algorithm = 'sha256'): string => `${repositoryDir(name)}/_layers/${algorithm}`;
/** `repositories/<name>/_layers/<alg>/<hex>/link` */
export const layerLinkPath = (name: string, d: Digest): string => `${repositoryDir(name)}/_layers/${checkDigest(d).algorithm}/${d.hex}/link`;
/** `repositories/<name>/_manifests/revisions/<alg>` */
export const revisionsDir = (name: string, algorithm = 'sha256'): string => `${repositoryDir(name)}/_manifests/revisions/${algorithm}`;
/** `repositories/<name>/_manifests/revisions/<alg>/<hex>/link` */
export const manifestRevisionLinkPath = (name: string, d: Digest): string =>
  `${repositoryDir(name)}/_manifests/revisions/${checkDigest(d).algorithm}/${d.hex}/link`;
/** `repositories/<name>/_manifests/tags` */
export const tagsDir = (name: string): string => `${repositoryDir(name)}/_manifests/tags`;
/** `repositories/<name>/_manifests/tags/<tag>` */
export const tagDir = (name: string, tag: string): string => `${tagsDir(name)}/${checkTag(tag)}`;
/** `repositories/<name>/_manifests/tags/<tag>/current/link` */
export const tagCurrentLinkPath = (name: string, tag: string): string => `${tagDir(name, tag)}/current/link`;
/** `repositories/<name>/_manifests/tags/<tag>/index/<alg>/<hex>/link` */
export const tagIndexLinkPath = (name: string, tag: string, d: Digest): string =>
  `${tagDir(name, tag)}/index/${checkDigest(d).algorithm}/${d.hex}/link`;
/** `repositories/<name>/_uploads/<uuid>` */
export const uploadDir = (name: string, uuid: string): string => {
  if (!/^[a-f0-9-]{8,64}$/.test(uuid)) throw new InvalidPathError(`invalid upload id: ${JSON.stringify(uuid)}`);
  return `${repositoryDir(name)}/_uploads/${uuid}`;
};
