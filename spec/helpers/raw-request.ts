/**
 * One HTTP request as a client that follows no redirect sees it (a `307` stays a `307`): its
 * status, headers and whole body, on a connection of its own.
 */
import http from 'node:http';

/** One GET or HEAD without following redirects. */
export function rawRequest(url: string, method = 'GET'): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}
