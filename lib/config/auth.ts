/**
 * `auth:`, defined and converted in one place: one access controller of distribution's
 * (`htpasswd`, `token`, `silly`); `none` and an empty section leave the registry open.
 */
import { resolve } from 'node:path';
import { converted, ignored as I, key, rejected as R, section, type Raw } from './key-def.js';

const str = { type: 'string' };

/** `auth:` (one of its members). */
export interface AuthConfig {
  readonly htpasswd?: { readonly realm: string; readonly path: string };
  readonly token?: {
    readonly realm: string;
    readonly service: string;
    readonly issuer: string;
    readonly rootcertbundle: string;
    readonly autoredirect?: boolean;
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
          jwks: R,
          signingalgorithms: I,
        },
        { required: ['realm', 'service', 'issuer', 'rootcertbundle'] },
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
      return {
        token: { realm: t.realm, service: t.service, issuer: t.issuer, rootcertbundle: resolve(String(t.rootcertbundle)), autoredirect: t.autoredirect },
      };
    }
    if (auth?.silly) return { silly: { realm: auth.silly.realm, service: auth.silly.service } };
    return undefined;
  },
);
