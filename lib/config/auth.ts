/**
 * `auth:`, defined and converted in one place: one access controller of distribution's
 * (`htpasswd`, `token`, `silly`); `none` and an empty section leave the registry open.
 */
import { resolve } from 'node:path';
import { ConfigError } from '../errors.js';
import { converted, ignored as I, key, section, type Raw } from './key-def.js';

const str = { type: 'string' };

/** The algorithms `auth.token.signingalgorithms` may name (distribution 3), all of them by default. */
export const TOKEN_SIGNING_ALGORITHMS = [
  'EdDSA',
  'HS256',
  'HS384',
  'HS512',
  'RS256',
  'RS384',
  'RS512',
  'ES256',
  'ES384',
  'ES512',
  'PS256',
  'PS384',
  'PS512',
] as const;

/** `auth:` (one of its members). */
export interface AuthConfig {
  readonly htpasswd?: { readonly realm: string; readonly path: string };
  readonly token?: {
    readonly realm: string;
    readonly service: string;
    readonly issuer: string;
    /** The certificates whose keys sign tokens; this or `jwks`, or both. */
    readonly rootcertbundle?: string;
    /** distribution 3: a JSON Web Key Set file of trusted keys, matched by `kid`. */
    readonly jwks?: string;
    readonly autoredirect?: boolean;
    /** distribution 3: the realm's path with `autoredirect` (`/auth/token` by default). */
    readonly autoredirectpath: string;
    /** distribution 3: the algorithms a token may be signed with. */
    readonly signingalgorithms: readonly string[];
  };
  readonly silly?: { readonly realm: string; readonly service: string };
}

/** `auth:` and its conversion: undefined when no controller is configured. */
export const AUTH_KEYS = converted(
  section(
    {
      htpasswd: section({ realm: key(str), path: key({ ...str, minLength: 1 }) }, { required: ['realm', 'path'] }),
      token: section(
        {
          realm: key(str),
          service: key(str),
          issuer: key(str),
          rootcertbundle: key({ ...str, minLength: 1 }),
          autoredirect: key({ type: 'boolean', default: false }),
          autoredirectpath: key({ ...str, minLength: 1, default: '/auth/token' }),
          jwks: key({ ...str, minLength: 1 }),
          signingalgorithms: key({ type: 'array', items: { enum: [...TOKEN_SIGNING_ALGORITHMS] } }),
        },
        { required: ['realm', 'service', 'issuer'] },
      ),
      silly: section({ realm: key(str), service: key(str) }, { required: ['realm', 'service'] }),
      none: I,
    },
    { maxProperties: 1 },
  ),
  (auth: Raw | undefined): AuthConfig | undefined => {
    if (auth?.htpasswd) return { htpasswd: { realm: auth.htpasswd.realm, path: resolve(String(auth.htpasswd.path)) } };
    if (auth?.token) {
      const t = auth.token as Raw;
      // As distribution 3: one of the two names the signing keys (2.8 required the bundle).
      if (!t.rootcertbundle && !t.jwks) throw new ConfigError('auth.token: token auth requires at least one token signing key: set rootcertbundle or jwks');
      const algorithms = t.signingalgorithms as string[] | undefined;
      return {
        token: {
          realm: t.realm,
          service: t.service,
          issuer: t.issuer,
          rootcertbundle: t.rootcertbundle ? resolve(String(t.rootcertbundle)) : undefined,
          jwks: t.jwks ? resolve(String(t.jwks)) : undefined,
          autoredirect: t.autoredirect,
          autoredirectpath: t.autoredirectpath,
          signingalgorithms: algorithms && algorithms.length > 0 ? algorithms : [...TOKEN_SIGNING_ALGORITHMS],
        },
      };
    }
    if (auth?.silly) return { silly: { realm: auth.silly.realm, service: auth.silly.service } };
    return undefined;
  },
);
