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
export const NAME_MAX_LENGTH = 255;

/** True when `name` is a valid repository name (`library/busybox`, `org/app/sub`). */
export function isValidName(name: string): boolean {
  return name.length > 0 && name.length <= NAME_MAX_LENGTH && NAME_RE.test(name);
}

/** True when `tag` is a valid tag (`latest`, `1.36.1-glibc`). */
export function isValidTag(tag: string): boolean {
  return TAG_RE.test(tag);
}
