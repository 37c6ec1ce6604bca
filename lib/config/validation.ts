/**
 * `validation:`, defined and converted in one place: whether pushed manifests (hosted names only)
 * are checked, and which children of a pushed index must be present.
 */
import { checked, converted, defaultAt, ignored as I, key, section, shaped, type KeyDef, type Raw } from './key-def.js';

const bool = { type: 'boolean' };
const str = { type: 'string' };
type Platforms = 'all' | 'none' | 'list';

/** `validation:` of pushed manifests (hosted names only): whether an index's children must be present. */
export interface ValidationConfig {
  /** `all` (default): every child; `none`: none (sparse indexes); `list`: those of `platformlist`. */
  readonly indexes: { readonly platforms: Platforms; readonly platformlist: readonly { readonly architecture?: string; readonly os?: string }[] };
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
      urls: section({ allow: I, deny: I }),
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
  return { indexes: { platforms, platformlist: ((indexes.platformlist ?? []) as Raw[]).map((p) => ({ architecture: p.architecture, os: p.os })) } };
});
