/**
 * Client authorization of a request as distribution's `authorized` (`registry/handlers/app.go`):
 * the configured access controller decides on the access records of the route and method.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'winston';
import { AuthChallenge, accessDetail, accessFor, type AccessController } from '../auth/access.js';
import { RegistryError } from './errors.js';
import { header } from './messages.js';
import { requestState } from './request-state.js';

/** Which access records a route needs (`accessFor`). */
type AccessScope = 'base' | 'catalog' | 'repository';

/**
 * Checks the client's access: a challenge becomes `401 UNAUTHORIZED` with `WWW-Authenticate` and
 * the access records as detail; any other failure of the controller a bare refusal (never access).
 * The user's name, and the resources a token names, go to the request's state. Several names (both
 * spellings of an alias) need access to each. Without a controller every request is allowed: the
 * callers do not call this then (`if (s.access)`), which keeps an await and this module off every
 * request's way.
 */
export async function authorize(
  access: AccessController,
  logger: Logger,
  req: IncomingMessage,
  res: ServerResponse,
  route: AccessScope,
  name?: string | readonly string[],
): Promise<void> {
  // A request a server received always has its method.
  const method = req.method!;
  const records = typeof name === 'object' ? name.flatMap((n) => accessFor(method, n, route)) : accessFor(method, name, route);
  try {
    const { user, resources } = await access.authorized(
      { authorization: header(req, 'authorization'), host: header(req, 'host'), forwardedProto: header(req, 'x-forwarded-proto') },
      records,
    );
    Object.assign(requestState(res), { user, resources });
  } catch (err) {
    if (err instanceof AuthChallenge) {
      logger.debug('access refused', { 'err.message': err.message });
      throw new RegistryError('UNAUTHORIZED', { headers: { 'WWW-Authenticate': err.wwwAuthenticate }, detail: accessDetail(records) });
    }
    logger.error('error checking authorization', { 'err.message': (err as Error).message });
    throw new RegistryError('UNAUTHORIZED', { status: 400, cause: err });
  }
}
