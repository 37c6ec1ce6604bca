/** Headers every `/v2/` answer carries: distribution's API version and the configured `http.headers`. */
import type { NextFunction, Request, Response } from 'express';

/** `Docker-Distribution-API-Version: registry/2.0` on every answer under `/v2` (clients check it). */
export function apiVersionHeader(_req: Request, res: Response, next: NextFunction): void {
  res.setHeader('Docker-Distribution-API-Version', 'registry/2.0');
  next();
}

/** Adds the configured `http.headers` to every response. */
export function configuredHeaders(headers: Readonly<Record<string, readonly string[]>>) {
  return (_req: Request, res: Response, next: NextFunction): void => {
    for (const [name, values] of Object.entries(headers)) res.setHeader(name, [...values]);
    next();
  };
}
