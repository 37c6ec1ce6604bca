/**
 * Loads the configuration once at start-up: YAML (distribution's format), then `REGISTRY_*`
 * overrides, then the one schema; unknown and unimplemented keys warn, wrong values fail with the
 * key's path. The result is frozen.
 */
import { existsSync, readFileSync } from 'node:fs';
import yaml from 'js-yaml';
import type { ErrorObject } from 'ajv';
import { ConfigError } from '../errors.js';
import { applyEnvOverrides } from './env.js';
import { s3Warnings } from './s3.js';
import { KNOWN_KEYS, EXTENSION_KEYS, type KeyStatus, type KeyTree } from './schema.js';
import { validateConfig } from './config-validator.js';
import { SECTIONS } from './keys.js';
import type { Raw } from './key-def.js';
import type { Config } from './types.js';

/** Where the configuration comes from. */
export interface ConfigSource {
  readonly path?: string;
  readonly text?: string;
  readonly env?: NodeJS.ProcessEnv;
}

/** Where `registry:3` reads its configuration. */
const V3_CONFIG_PATH = '/etc/distribution/config.yml';
/** Where `registry:2` reads its configuration. */
const V2_CONFIG_PATH = '/etc/docker/registry/config.yml';

/**
 * The configuration path: the argument, else `REGISTRY_CONFIGURATION_PATH`, else the image's
 * default: `registry:3`'s `/etc/distribution/config.yml` when that file exists, else
 * `registry:2`'s `/etc/docker/registry/config.yml` (so a volume mounted where either image
 * expects it is found).
 */
export function resolveConfigPath(arg: string | undefined, env: NodeJS.ProcessEnv, exists: (path: string) => boolean = existsSync): string {
  if (arg !== undefined) return arg;
  if (env.REGISTRY_CONFIGURATION_PATH) return env.REGISTRY_CONFIGURATION_PATH;
  return exists(V3_CONFIG_PATH) || !exists(V2_CONFIG_PATH) ? V3_CONFIG_PATH : V2_CONFIG_PATH;
}

const invalid = (message: string, cause?: unknown): ConfigError => new ConfigError(message, { cause });

/** Loads, overrides, validates, converts and freezes. */
export function loadConfig(source: ConfigSource): { config: Config; warnings: string[] } {
  let text = source.text;
  const where = source.path ?? 'configuration';
  if (text === undefined) {
    try {
      text = readFileSync(source.path ?? '', 'utf8');
    } catch (err) {
      throw invalid(`cannot read configuration file ${where}: ${(err as Error).message}`, err);
    }
  }
  let raw: unknown;
  try {
    // `json`: a key given twice takes the last value, as distribution's YAML parser (its own
    // documented example repeats `redis.tls`).
    raw = yaml.load(text, { json: true });
  } catch (err) {
    throw invalid(`${where} is not valid YAML: ${(err as Error).message}`, err);
  }
  if (raw === undefined || raw === null) raw = {};
  if (typeof raw !== 'object' || Array.isArray(raw)) throw invalid(`${where} must be a YAML mapping`);
  const tree = raw as Record<string, unknown>;
  const warnings = applyEnvOverrides(tree, source.env ?? {});
  // `storage: s3` (or `REGISTRY_STORAGE=s3`) names a driver with no parameters, as distribution.
  if (typeof tree.storage === 'string') tree.storage = { [tree.storage]: {} };
  warnings.push(...s3Warnings((tree.storage as Raw | undefined)?.s3));
  warnings.push(...checkKeys(tree, KNOWN_KEYS, []));
  warnings.push(...v3Settings(tree));
  if (!validateConfig(tree)) throw invalid(describeAll(validateConfig.errors ?? [], tree));
  return { config: deepFreeze(convert(tree, warnings)), warnings };
}

/**
 * Distribution 3's settings read before validation: the deprecated top-level `loglevel` (used when
 * `log.level` is not set), `validation.manifests.indexes.platforms` in any case, Let's Encrypt
 * (refused: no ACME here), HTTP/2 cleartext (warned: HTTP/1.1 only).
 */
function v3Settings(tree: Raw): string[] {
  const warnings: string[] = [];
  if (tree.loglevel !== undefined && tree.loglevel !== null) {
    const log = (tree.log ??= {}) as Raw;
    if (log !== null && typeof log === 'object' && log.level === undefined)
      log.level = typeof tree.loglevel === 'string' ? tree.loglevel.toLowerCase() : tree.loglevel;
  }
  const indexes = tree.validation?.manifests?.indexes as Raw | undefined;
  if (indexes && typeof indexes.platforms === 'string') indexes.platforms = indexes.platforms.toLowerCase();
  const tls = tree.http?.tls as Raw | undefined;
  const le = tls?.letsencrypt as Raw | undefined;
  if (le && typeof le === 'object' && Object.keys(le).length > 0) {
    // distribution uses Let's Encrypt only when no certificate is given.
    if (!tls!.certificate) {
      throw invalid(
        "http.tls.letsencrypt: this registry cannot obtain certificates from Let's Encrypt (no ACME client); give http.tls.certificate and http.tls.key (from certbot, cert-manager or a TLS-terminating proxy) instead",
      );
    }
    warnings.push('http.tls.letsencrypt is not used: http.tls.certificate is set (as distribution)');
  }
  const h2c = tree.http?.h2c as Raw | undefined;
  if (h2c?.enabled === true) {
    warnings.push(
      'http.h2c.enabled: HTTP/2 cleartext is not served: this registry speaks HTTP/1.1 without TLS, so a load balancer in front must too (Cloud Run: turn end-to-end HTTP/2 off)',
    );
  }
  return warnings;
}

/** Warns about ignored and unknown keys, fails on rejected ones. */
function checkKeys(node: Record<string, unknown>, known: KeyTree, path: string[]): string[] {
  const warnings: string[] = [];
  for (const [key, value] of Object.entries(node)) {
    const here = [...path, key];
    const status: KeyStatus | KeyTree | undefined = known[key] ?? (path.length === 1 ? EXTENSION_KEYS[path[0]!]?.[key] : undefined);
    const name = here.join('.');
    if (status === undefined) warnings.push(`${name} is not a known configuration key: it is ignored`);
    else if (status === 'ignored') warnings.push(`${name} is accepted but not implemented by this registry: it is ignored`);
    else if (status === 'rejected') {
      throw invalid(
        path[0] === 'storage'
          ? `${name}: only the filesystem and s3 storage drivers are supported`
          : `${name} is not implemented by this registry yet; refusing to start without it`,
      );
    } else if (typeof status === 'object' && value !== null && typeof value === 'object' && !Array.isArray(value)) {
      warnings.push(...checkKeys(value as Record<string, unknown>, status, here));
    }
  }
  return warnings;
}

/** One message per wrong value: an `anyOf` failure stands for the alternatives' errors at its path. */
function describeAll(errors: ErrorObject[], tree: Record<string, unknown>): string {
  const anyOf = new Set(errors.filter((e) => e.keyword === 'anyOf').map((e) => e.instancePath));
  const shown = errors.filter((e) => e.keyword === 'anyOf' || e.keyword === 'propertyNames' || (!anyOf.has(e.instancePath) && e.propertyName === undefined));
  return [...new Set(shown.map((e) => describe(e, tree)))].join('; ');
}

function describe(e: ErrorObject, tree: Record<string, unknown>): string {
  const path = e.instancePath.split('/').filter(Boolean);
  const value = path.reduce<unknown>((n, k) => (n as Record<string, unknown> | undefined)?.[k], tree);
  const name = path.join('.') || 'configuration';
  const shown = JSON.stringify(value);
  switch (e.keyword) {
    case 'goDuration':
      return `${name}: ${shown} is not a duration like 168h`;
    case 'enum':
      return `${name}: ${shown} must be one of ${(e.params.allowedValues as unknown[]).join(', ')}`;
    case 'type':
      return `${name}: ${shown} must be a ${String(e.params.type).replace(',', ' or ')}`;
    case 'pattern':
      return `${name}: ${shown} is not an http(s) URL`;
    case 'size':
      return `${name}: ${shown} is not a size like 50GiB or 500MB`;
    case 'positiveDuration':
      return `${name}: ${shown} must be a duration above zero`;
    case 'hostedPrefix':
      return `${name}: ${shown} is not a repository name prefix like internal/`;
    case 'regex':
      return `${name}: ${shown} is not a regular expression`;
    case 'anyOf':
      return `${name}: ${shown} must be true, false or a mapping with exclude: [regular expressions]`;
    case 'propertyNames':
      return `${name}: ${JSON.stringify(e.params.propertyName)} is not a registry host like ghcr.io or registry.example.com:5000`;
    case 'additionalProperties':
      return `${name}.${String(e.params.additionalProperty)} is not a known key`;
    case 'required':
      return `${name}.${String(e.params.missingProperty)} is required`;
    case 'maxProperties':
      return `${name}: exactly one access controller may be configured, found ${Object.keys(value as object).join(', ')}`;
    default:
      return `${name}: ${shown} ${e.message ?? 'is invalid'}`;
  }
}

/** Each top-level section converted by its definition's conversion (`keys.ts`). */
function convert(tree: Raw, warnings: string[]): Config {
  const config: Record<string, unknown> = {};
  for (const [name, def] of Object.entries(SECTIONS)) {
    if ('convert' in def) config[name] = def.convert(tree[name] as Raw, warnings);
  }
  return config as Config;
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}
