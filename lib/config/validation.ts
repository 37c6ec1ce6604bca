/**
 * `validation:`, defined and converted in one place: whether pushed manifests (hosted names only)
 * are checked, which children of a pushed index must be present, and which URLs a foreign layer
 * may carry.
 */
import { ConfigError } from '../errors.js';
import { checked, converted, defaultAt, key, section, shaped, type KeyDef, type Raw } from './key-def.js';

const bool = { type: 'boolean' };
const str = { type: 'string' };
type Platforms = 'all' | 'none' | 'list';

/** `validation:` of pushed manifests (hosted names only): whether an index's children must be present. */
export interface ValidationConfig {
  /** `all` (default): every child; `none`: none (sparse indexes); `list`: those of `platformlist`. */
  readonly indexes: { readonly platforms: Platforms; readonly platformlist: readonly { readonly architecture?: string; readonly os?: string }[] };
  /**
   * A pushed layer's `urls` (`validation.manifests.urls`): each must match `allow` and not `deny`
   * (patterns, searched anywhere in the URL as Go's `MatchString`); unset, that side checks nothing.
   * As distribution, with validation on and neither list given nothing is allowed (`^$`).
   */
  readonly urls: { readonly allow?: string; readonly deny?: string };
}

/** distribution's joining of a list of patterns: each in a non-capturing group, alternated; checked here. */
function pattern(list: unknown, path: string): string | undefined {
  const items = (list ?? []) as string[];
  if (items.length === 0) return undefined;
  for (const p of items) {
    try {
      new RegExp(p);
    } catch (err) {
      throw new ConfigError(`${path}: ${JSON.stringify(p)} is not a regular expression: ${(err as Error).message}`);
    }
  }
  return items.map((p) => `(?:${p})`).join('|');
}

/**
 * `validation:`'s keys. distribution checks pushed manifests unless `disabled` (or
 * `enabled: false` with no `disabled`); checked, an index's children must all be present unless
 * `indexes.platforms` says `none` or `list`.
 */
const KEYS: KeyDef = section(
  {
    enabled: key(bool),
    disabled: key(bool),
    manifests: section({
      urls: section({ allow: key({ type: 'array', items: str }), deny: key({ type: 'array', items: str }) }),
      indexes: section({
        // Lower-cased by load.ts first, as distribution does.
        platforms: key({ enum: ['all', 'none', 'list'], default: 'all' }),
        platformlist: shaped(
          { architecture: checked(), os: checked() },
          { type: 'array', items: { type: 'object', properties: { architecture: str, os: str } } },
        ),
      }),
    }),
  },
  { default: {} },
);

/** `validation:` and its conversion. */
export const VALIDATION_KEYS = converted(KEYS, (v): ValidationConfig => {
  const enabled = v.enabled === true || v.disabled !== true;
  const indexes = (v.manifests?.indexes ?? {}) as Raw;
  const platforms = enabled ? ((indexes.platforms ?? defaultAt(KEYS, 'manifests.indexes.platforms')) as Platforms) : 'none';
  const urls = (v.manifests?.urls ?? {}) as Raw;
  const allow = pattern(urls.allow, 'validation.manifests.urls.allow');
  const deny = pattern(urls.deny, 'validation.manifests.urls.deny');
  return {
    indexes: { platforms, platformlist: ((indexes.platformlist ?? []) as Raw[]).map((p) => ({ architecture: p.architecture, os: p.os })) },
    // Validation off: any http(s) URL; on with no list: none, as distribution.
    urls: !enabled ? {} : allow === undefined && deny === undefined ? { allow: '^$' } : { allow, deny },
  };
});
