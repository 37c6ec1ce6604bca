/**
 * The configured access controller (`auth.htpasswd`, `auth.token` or `auth.silly`), if any. Each is
 * loaded only when configured: bcrypt and the JWT library are a sizeable share of a start's module
 * loading, and most mirrors run without client authentication.
 */
import type { Logger } from 'winston';
import type { AuthConfig } from '../config/types.js';
import type { AccessController } from './access.js';
import { SillyAccessController } from './silly.js';

/** Builds the access controller of `auth`; undefined when the registry is open. */
export async function createAccessController(auth: AuthConfig | undefined, logger: Logger): Promise<AccessController | undefined> {
  if (auth?.htpasswd) {
    const { HtpasswdAccessController } = await import('./htpasswd.js');
    return new HtpasswdAccessController(auth.htpasswd, (user, password) =>
      logger.warn('htpasswd is missing, provisioning with default user', { user, password }),
    );
  }
  if (auth?.token) {
    const { TokenAccessController } = await import('./token.js');
    return new TokenAccessController(auth.token);
  }
  if (auth?.silly) {
    logger.warn('auth.silly accepts any Authorization header: for tests only');
    return new SillyAccessController(auth.silly);
  }
  return undefined;
}
