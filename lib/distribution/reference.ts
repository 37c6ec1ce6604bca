/**
 * Repository names, tags and references as the distribution spec defines them
 * (distribution `reference/regexp.go`). Every storage path is built from values that passed these
 * checks, so nothing a client sends can name a path outside the storage root.
 */

/** One path component of a repository name. */
const COMPONENT = '[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*';
const NAME_RE = new RegExp(`^${COMPONENT}(?:/${COMPONENT})*$`);
const TAG_RE = /^[\w][\w.-]{0,127}$/;

/** distribution's `NameTotalLengthMax`. */
const NAME_MAX_LENGTH = 255;

/** True when `name` is a valid repository name (`library/busybox`, `org/app/sub`). */
export function isValidName(name: string): boolean {
  return name.length > 0 && name.length <= NAME_MAX_LENGTH && NAME_RE.test(name);
}

/** True when `tag` is a valid tag (`latest`, `1.36.1-glibc`). */
export function isValidTag(tag: string): boolean {
  return TAG_RE.test(tag);
}

/** An image reference as clients write it: `[host/]name[:tag][@digest]`. */
interface ImageReference {
  /** The registry host when the first component names one (`ghcr.io`, `localhost:5000`). */
  readonly host?: string;
  readonly name: string;
  readonly tag?: string;
  readonly digest?: string;
}

/**
 * Parses `busybox`, `library/busybox:1.36`, `docker.io/library/alpine:3.19`,
 * `ghcr.io/org/app@sha256:...` as docker does: the first component is a host when it holds a `.`
 * or a `:`, or is `localhost`. Undefined when any part is invalid.
 */
export function parseImageReference(ref: string): ImageReference | undefined {
  let rest = ref.trim();
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!/^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$/.test(digest)) return undefined;
  }
  let host: string | undefined;
  const slash = rest.indexOf('/');
  if (slash > 0) {
    const first = rest.slice(0, slash);
    if (first.includes('.') || first.includes(':') || first === 'localhost') {
      host = first;
      rest = rest.slice(slash + 1);
    }
  }
  let tag: string | undefined;
  const colon = rest.lastIndexOf(':');
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!isValidTag(tag)) return undefined;
  }
  if (!isValidName(rest)) return undefined;
  return { host, name: rest, tag, digest };
}
