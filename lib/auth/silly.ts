/**
 * `auth.silly` (distribution `registry/auth/silly`): for tests only. Any `Authorization` header is
 * accepted; without one, a Bearer challenge naming the scope is sent.
 */
import { AuthChallenge, scopeParam, type Access, type AccessController, type AuthRequest } from './access.js';

/** The silly access controller. */
export class SillyAccessController implements AccessController {
  constructor(private readonly options: { realm: string; service: string }) {}

  async authorized(request: AuthRequest, access: readonly Access[]): Promise<{ user: string }> {
    if (request.authorization) return { user: 'silly' };
    const scope = scopeParam(access);
    throw new AuthChallenge(
      `Bearer realm="${this.options.realm}",service="${this.options.service}"${scope ? `,scope="${scope}"` : ''}`,
      'authorization required',
    );
  }
}
