/**
 * The manifest scenario's ceilings: a server that answers every `GET` with one manifest's bytes and
 * the headers our route sends, and nothing else. `express`: a bare express 5 app with one route (what
 * express itself costs per request); `http`: a bare `node:http` handler. Run as its own process:
 * `node ceiling-server.js <express|http> <port> <payload file> <media type> <digest>`.
 */
import http from 'node:http';
import { readFileSync } from 'node:fs';
import express from 'express';

const [mode, port, file, mediaType, digest] = process.argv.slice(2) as [string, string, string, string, string];
const payload = readFileSync(file);
const headers = {
  'Docker-Distribution-API-Version': 'registry/2.0',
  'Content-Type': mediaType,
  'Content-Length': String(payload.length),
  'Docker-Content-Digest': digest,
  Etag: `"${digest}"`,
};

function answer(res: http.ServerResponse): void {
  res.writeHead(200, headers);
  res.end(payload);
}

let server: http.Server;
if (mode === 'express') {
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.get('/v2/{*rest}', (_req, res) => answer(res));
  server = http.createServer(app);
} else {
  server = http.createServer((_req, res) => answer(res));
}
server.keepAliveTimeout = 60_000;
server.listen(Number(port), '127.0.0.1');
