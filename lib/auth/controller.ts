/** The configured access controller (`auth.htpasswd`, `auth.token` or `auth.silly`), if any. */
import type { Logger } from 'winston';
import type { AuthConfig } from '../config/types.js';
import type { AccessController } from './access.js';
import { HtpasswdAccessController } from './htpasswd.js';
import { SillyAccessController } from './silly.js';
import { TokenAccessController } from './token.js';

/** Builds the access controller of `auth`; undefined when the registry is open. */
export function createAccessController(auth: AuthConfig | undefined, logger: Logger): AccessController | undefined {
  if (auth?.htpasswd) {
    return new HtpasswdAccessController(auth.htpasswd, (user, password) =>
      logger.warn('htpasswd is missing, provisioning with default user', { user, password }),
    );
  }
  if (auth?.token) return new TokenAccessController(auth.token);
  if (auth?.silly) {
    logger.warn('auth.silly accepts any Authorization header: for tests only');
    return new SillyAccessController(auth.silly);
  }
  return undefined;
}
