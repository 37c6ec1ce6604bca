/**
 * What is derived from the one definition of every key (`keys.ts`): the key-status tables that
 * `load.ts` and `env.ts` walk, and the ajv schema that validates and defaults the keys this registry
 * implements (compiled in `config-validator.ts`), with the schema's own keywords.
 */
import { isDuration, tryParseDuration } from './duration.js';
import { tryParseSize } from './size.js';
import { isValidName } from '../distribution/reference.js';
import { CONFIG_KEYS } from './keys.js';
import { extensionTree, schemaOf, statusTree, type KeyTree } from './key-def.js';

export type { KeyStatus, KeyTree } from './key-def.js';

/** The official keys (distribution's) and what this registry does with each. */
export const KNOWN_KEYS: KeyTree = statusTree(CONFIG_KEYS, false);

/** Extension keys (ours; the official registry ignores them), by section. Additive only. */
export const EXTENSION_KEYS: Record<string, KeyTree> = extensionTree(CONFIG_KEYS);

/** The schema of the implemented keys; everything else is checked by `KNOWN_KEYS`. */
export const CONFIG_SCHEMA = schemaOf(CONFIG_KEYS)!;

/**
 * The schema's own keywords, as checks of one value (a keyword fails when its check is false). The
 * validator is compiled from the schema and these by `config-validator.ts`, or ahead of time by
 * the build.
 */
export const CONFIG_KEYWORD_CHECKS = {
  goDuration: (data: unknown): boolean => isDuration(data),
  // Not a duration at all is goDuration's error.
  positiveDuration: (data: unknown): boolean => (tryParseDuration(data) ?? 1) > 0,
  size: (data: unknown): boolean => tryParseSize(data) !== undefined,
  hostedPrefix: (data: unknown): boolean => typeof data === 'string' && isValidName(data.replace(/\/+$/, '')),
  regex: (data: unknown): boolean => isRegex(data),
};

function isRegex(data: unknown): boolean {
  try {
    new RegExp(String(data));
    return true;
  } catch {
    return false;
  }
}
