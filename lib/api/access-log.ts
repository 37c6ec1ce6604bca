/**
 * One access-log line per request, with distribution's field names (`response completed` with
 * `http.request.*` and `http.response.*`), disabled by `log.accesslog.disabled`.
 */
import type { RequestHandler } from 'express';
import type { Logger } from 'winston';

/** Middleware logging each request when its response completes or its connection closes. */
export function accessLog(logger: Logger): RequestHandler {
  return (req, res, next) => {
    const started = process.hrtime.bigint();
    let logged = false;
    const log = (): void => {
      if (logged) return;
      logged = true;
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      // `writableEnded`: the handler ended the response (a transfer cut short is destroyed instead).
      logger.info(res.writableEnded ? 'response completed' : 'response aborted', {
        'http.request.method': req.method,
        'http.request.uri': req.originalUrl,
        'http.request.remoteaddr': req.socket.remoteAddress,
        'http.request.useragent': req.headers['user-agent'] ?? '',
        'http.response.status': res.statusCode,
        'http.response.written': Number(res.getHeader('content-length') ?? 0),
        'http.response.duration': `${seconds.toFixed(6)}s`,
      });
    };
    res.once('finish', log);
    res.once('close', log);
    next();
  };
}
