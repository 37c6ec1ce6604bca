/**
 * Client authentication as distribution's `registry/auth`: an access controller decides whether a
 * request may have the access records its route needs, or answers with a challenge.
 */
import { MirrorError } from '../errors.js';

/** One access a request needs (distribution `auth.Access`): `repository:library/busybox:pull`. */
export interface Access {
  readonly type: 'repository' | 'registry';
  readonly name: string;
  readonly action: string;
}

/** The request data an access controller looks at. */
export interface AuthRequest {
  readonly authorization?: string;
  /** `Host` header (for the token controller's `autoredirect` realm). */
  readonly host?: string;
  /** `X-Forwarded-Proto` header (the `autoredirect` realm's scheme, as distribution 3). */
  readonly forwardedProto?: string;
}

/** A refusal that tells the client how to authenticate: a 401 with `WWW-Authenticate`. */
export class AuthChallenge extends MirrorError {
  constructor(
    readonly wwwAuthenticate: string,
    reason: string,
  ) {
    super('ERR_AUTH_CHALLENGE', reason);
  }
}

/**
 * A resource a token names (distribution `auth.Resource`): its type, its class (`repository(plugin)`
 * in a scope is the class `plugin`; none is `image`) and its name.
 */
export interface GrantedResource {
  readonly type: string;
  readonly class: string;
  readonly name: string;
}

/** What an access controller grants: the user, and the resources its credential names (tokens only). */
export interface Grant {
  readonly user: string;
  readonly resources?: readonly GrantedResource[];
}

/** Decides access; resolves with the grant, or throws `AuthChallenge`. */
export interface AccessController {
  authorized(request: AuthRequest, access: readonly Access[]): Promise<Grant>;
}

/** `repository:name:pull repository:name:push`, actions of one resource joined by commas, as distribution. */
export function scopeParam(access: readonly Access[]): string {
  const byResource = new Map<string, string[]>();
  for (const a of access) {
    const key = `${a.type}:${a.name}`;
    const actions = byResource.get(key) ?? [];
    if (!actions.includes(a.action)) actions.push(a.action);
    byResource.set(key, actions);
  }
  return [...byResource].map(([resource, actions]) => `${resource}:${actions.join(',')}`).join(' ');
}

/** The access records of a route, as distribution's `appendAccessRecords`. */
export function accessFor(method: string, repository: string | undefined, route: 'base' | 'catalog' | 'repository'): Access[] {
  if (route === 'base') return [];
  if (route === 'catalog') return [{ type: 'registry', name: 'catalog', action: '*' }];
  const name = repository ?? '';
  switch (method) {
    case 'GET':
    case 'HEAD':
      return [{ type: 'repository', name, action: 'pull' }];
    case 'DELETE':
      return [{ type: 'repository', name, action: 'delete' }];
    default:
      return [
        { type: 'repository', name, action: 'pull' },
        { type: 'repository', name, action: 'push' },
      ];
  }
}

/** The access records as distribution puts them in the `UNAUTHORIZED` error's detail. */
export function accessDetail(access: readonly Access[]): Array<Record<string, string>> | null {
  if (access.length === 0) return null;
  return access.map((a) => ({ Type: a.type, Class: '', Name: a.name, Action: a.action }));
}
