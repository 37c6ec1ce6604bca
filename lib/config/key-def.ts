/**
 * The shape of a configuration key's one definition (`keys.ts` and the section modules it
 * assembles): what this registry does with it (its status), whether distribution has it (or it is
 * one of ours), its schema, its default, and for a top-level section the conversion into its part
 * of `Config`. The key-status tables (`KNOWN_KEYS`, `EXTENSION_KEYS`), the ajv schema
 * (`CONFIG_SCHEMA`) and the type `Config` are derived from the definitions; nothing else states them.
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
type Schema = Readonly<Record<string, unknown>>;

/** One key's definition. */
export interface KeyDef {
  readonly status: KeyStatus;
  /** The sub-keys of a section, each defined in turn. */
  readonly keys?: Readonly<Record<string, KeyDef>>;
  /** The key's schema (a section's `properties` are added from its sub-keys that have one). */
  readonly schema?: Schema;
  /**
   * The key's default: filled in by the schema for a key that has one, applied by its section's
   * conversion (`defaultAt`) for a key checked there.
   */
  readonly default?: unknown;
  /** The values a key checked by its section's conversion may take, when they are a list. */
  readonly values?: readonly unknown[];
  /** A section whose schema is given whole (a list of mappings): its sub-keys only name its keys. */
  readonly shaped?: boolean;
  /** Ours, not distribution's: the official registry ignores it. */
  readonly extension?: boolean;
}

/** A supported key with its schema (its `default` is the key's default). */
export const key = (schema?: Schema): KeyDef => {
  if (schema === undefined || !('default' in schema)) return { status: 'supported', schema };
  const { default: value, ...rest } = schema;
  return { status: 'supported', schema: rest, default: value };
};
/**
 * A supported key without a schema: its section's conversion checks it (distribution's lenient
 * booleans and integers, which a schema cannot say) and applies `value` when it is not given;
 * `values` are those it accepts, when they are a list.
 */
export const checked = (value?: unknown, values?: readonly unknown[]): KeyDef => ({ status: 'supported', default: value, values });
/** A key accepted with a warning: this registry does not implement it. */
export const ignored: KeyDef = { status: 'ignored' };
/** A key that stops the start-up: ignoring it would be unsafe. */
export const rejected: KeyDef = { status: 'rejected' };
/** A free-form mapping (its entries are not keys). */
export const map = (schema?: Schema): KeyDef => ({ ...key(schema), status: 'map' });
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
  if (!def.keys || def.shaped) return def.schema && def.default !== undefined ? { ...def.schema, default: def.default } : def.schema;
  const properties: Record<string, Schema> = {};
  for (const [name, child] of Object.entries(def.keys)) {
    const s = schemaOf(child);
    if (s !== undefined) properties[name] = s;
  }
  if (def.schema === undefined && Object.keys(properties).length === 0) return undefined;
  return { type: 'object', ...def.schema, ...(Object.keys(properties).length > 0 ? { properties } : {}) };
}

/** True when `name` is one of `def`'s sub-keys (its own: `constructor` is no key). */
export function isKeyOf(def: KeyDef, name: string): boolean {
  return def.keys !== undefined && Object.hasOwn(def.keys, name);
}

/** The definition at `path` (a dotted key path below `root`); throws when none is defined. */
export function defAt(root: KeyDef, path: string): KeyDef {
  let def: KeyDef | undefined = root;
  for (const part of path.split('.')) def = def && isKeyOf(def, part) ? def.keys![part] : undefined;
  if (!def) throw new Error(`no configuration key ${path}`);
  return def;
}

/** The default of the key at `path` below `root`, as its definition states it. */
export function defaultAt(root: KeyDef, path: string): unknown {
  return defAt(root, path).default;
}

/** A validated configuration tree (or a section of it), as ajv left it: defaults filled in. */
export type Raw = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** True for a YAML mapping (not a list, not null): what a section or a list's entry must be. */
export function isMapping(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/**
 * A top-level section's conversion of its validated tree into its part of `Config`; `warnings`
 * receives what it accepts but ignores. A section without a default in its schema is undefined
 * when the file has none: its conversion takes `Raw | undefined`.
 */
type Convert<T> = (raw: Raw, warnings: string[]) => T;

/** A top-level section with its conversion: `Config` has a member of its type (`ConfigOf`). */
interface ConvertedDef<T> extends KeyDef {
  readonly convert: Convert<T>;
}

/** `def` converted by `convert` into its part of `Config`. */
export const converted = <T>(def: KeyDef, convert: Convert<T>): ConvertedDef<T> => ({ ...def, convert });

/** The converted type of a top-level section. */
type ConvertedOf<D> = D extends ConvertedDef<infer T> ? T : never;

/**
 * The configuration whose top-level sections are `S`: a member per converted section, optional
 * where the conversion may give undefined (`proxy` without `remoteurl`, `redis` naming no server).
 */
export type ConfigOf<S> = {
  readonly [K in keyof S as S[K] extends ConvertedDef<infer T> ? (undefined extends T ? never : K) : never]: ConvertedOf<S[K]>;
} & {
  readonly [K in keyof S as S[K] extends ConvertedDef<infer T> ? (undefined extends T ? K : never) : never]?: Exclude<ConvertedOf<S[K]>, undefined>;
};
