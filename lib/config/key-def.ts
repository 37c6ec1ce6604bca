/**
 * The shape of a configuration key's one definition (`keys.ts`): what this registry does with it
 * (its status), whether distribution has it (or it is one of ours), its schema and its default.
 * The key-status tables (`KNOWN_KEYS`, `EXTENSION_KEYS`) and the ajv schema (`CONFIG_SCHEMA`) are
 * derived from the definitions here; nothing else states them.
 */

/**
 * A key's status: `supported` (validated and used), `ignored` (accepted with a warning), `rejected`
 * (start-up fails: silently ignoring it would be unsafe), or `map` (free-form sub-keys).
 */
export type KeyStatus = 'supported' | 'ignored' | 'rejected' | 'map';
/** A tree of keys. */
export interface KeyTree {
  readonly [key: string]: KeyStatus | KeyTree;
}

/** A JSON schema fragment (ajv's, with the keywords of `CONFIG_KEYWORD_CHECKS`). */
export type Schema = Readonly<Record<string, unknown>>;

/** One key's definition. */
export interface KeyDef {
  readonly status: KeyStatus;
  /** The sub-keys of a section, each defined in turn. */
  readonly keys?: Readonly<Record<string, KeyDef>>;
  /** The key's schema (a section's `properties` are added from its sub-keys that have one). */
  readonly schema?: Schema;
  /** A section whose schema is given whole (a list of mappings): its sub-keys only name its keys. */
  readonly shaped?: boolean;
  /** Ours, not distribution's: the official registry ignores it. */
  readonly extension?: boolean;
}

/** A supported key with its schema (its `default` is the key's default). */
export const key = (schema?: Schema): KeyDef => ({ status: 'supported', schema });
/** A key accepted with a warning: this registry does not implement it. */
export const ignored: KeyDef = { status: 'ignored' };
/** A key that stops the start-up: ignoring it would be unsafe. */
export const rejected: KeyDef = { status: 'rejected' };
/** A free-form mapping (its entries are not keys). */
export const map = (schema?: Schema): KeyDef => ({ status: 'map', schema });
/**
 * A section of sub-keys. Its schema is `type: object`, `extra` and the schemas of its sub-keys;
 * a section none of whose sub-keys has a schema and without `extra` has none (it is not validated).
 */
export const section = (keys: Record<string, KeyDef>, extra?: Schema): KeyDef => ({ status: 'supported', keys, schema: extra });
/** A section validated by `schema` as given (a list of mappings, checked key by key elsewhere). */
export const shaped = (keys: Record<string, KeyDef>, schema?: Schema): KeyDef => ({ status: 'supported', keys, schema, shaped: true });
/** Marks a key as ours (an extension): only a top-level section's own keys may be. */
export const extension = (def: KeyDef): KeyDef => ({ ...def, extension: true });

/** The key-status tree of `def`'s sub-keys: the official ones, or only the extensions. */
export function statusTree(def: KeyDef, extensions: boolean): KeyTree {
  const tree: Record<string, KeyStatus | KeyTree> = {};
  for (const [name, child] of Object.entries(def.keys ?? {})) {
    if ((child.extension ?? false) === extensions) tree[name] = child.keys ? statusTree(child, false) : child.status;
  }
  return tree;
}

/** The extension keys of each top-level section. */
export function extensionTree(root: KeyDef): Record<string, KeyTree> {
  const result: Record<string, KeyTree> = {};
  for (const [name, child] of Object.entries(root.keys ?? {})) {
    const ext = statusTree(child, true);
    if (Object.keys(ext).length > 0) result[name] = ext;
  }
  return result;
}

/** The ajv schema of `def`, or undefined when it is not validated. */
export function schemaOf(def: KeyDef): Schema | undefined {
  if (!def.keys || def.shaped) return def.schema;
  const properties: Record<string, Schema> = {};
  for (const [name, child] of Object.entries(def.keys)) {
    const s = schemaOf(child);
    if (s !== undefined) properties[name] = s;
  }
  if (def.schema === undefined && Object.keys(properties).length === 0) return undefined;
  return { type: 'object', ...def.schema, ...(Object.keys(properties).length > 0 ? { properties } : {}) };
}

/** The definition at `path` (a dotted key path), for its default; throws when none is defined. */
export function defAt(root: KeyDef, path: string): KeyDef {
  let def: KeyDef | undefined = root;
  for (const part of path.split('.')) def = def?.keys?.[part];
  if (!def) throw new Error(`no configuration key ${path}`);
  return def;
}
