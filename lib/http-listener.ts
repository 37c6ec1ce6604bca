/**
 * The registry's HTTP listener as distribution's `http` section describes it: plain or TLS (with
 * client certificates when `clientcas` is set, asked for as `clientauth` says), on a TCP address or
 * a unix socket, with header size and timeout limits that keep slow or oversized requests from
 * holding the server.
 */
import http from 'node:http';
import https from 'node:https';
import { readFileSync } from 'node:fs';
import type { AddressInfo, Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { HttpConfig } from './config/types.js';
import { ConfigError } from './errors.js';
import { opensslCiphers } from './config/tls-ciphers.js';

/** The server for the `http` section, answering with `app`. */
export function createServer(config: HttpConfig, app: http.RequestListener): http.Server {
  const tls = config.tls;
  // No whole-request timeout (`requestTimeout: 0`, as distribution has no read timeout): a layer
  // of gigabytes uploaded at a modest rate takes longer than any fixed bound. The header timeout
  // stays, against connections that never finish their headers (slowloris).
  const options: http.ServerOptions = { maxHeaderSize: 16 * 1024, headersTimeout: 30_000, requestTimeout: 0, keepAliveTimeout: 65_000 };
  if (tls?.certificate && tls.key) {
    const ca = tls.clientcas.map((p) => readFileSync(p));
    // As distribution, the mode applies only with `clientcas`.
    const mode = ca.length > 0 ? tls.clientauth : undefined;
    const server = https.createServer(
      {
        ...options,
        cert: readFileSync(tls.certificate),
        key: readFileSync(tls.key),
        minVersion: tls.minimumtls === 'tls1.3' ? 'TLSv1.3' : 'TLSv1.2',
        ...(tls.ciphersuites?.length ? { ciphers: opensslCiphers(tls.ciphersuites) } : {}),
        ...(mode ? { ca, requestCert: true, rejectUnauthorized: mode === 'require-and-verify-client-cert' } : {}),
      },
      app,
    );
    if (mode === 'require-any-client-cert' || mode === 'verify-client-cert-if-given') {
      // Node verifies or refuses, nothing between: these two modes are checked once the handshake is done.
      server.on('secureConnection', (socket: TLSSocket) => {
        if (!acceptable(mode, socket)) socket.destroy();
      });
    }
    return server;
  }
  return http.createServer(options, app);
}

/** Listens on `http.addr` (`:5000`, `host:port`, `[v6]:port`, or a socket path for `net: unix`); resolves with the bound address. */
export function listen(server: http.Server, config: HttpConfig): Promise<{ address: string; port: number | undefined }> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    const done = (): void => {
      server.off('error', reject);
      const a = server.address();
      if (a === null || typeof a === 'string') resolve({ address: a ?? config.addr, port: undefined });
      else resolve({ address: formatAddress(a), port: a.port });
    };
    if (config.net === 'unix') {
      server.listen(config.addr, done);
      return;
    }
    const m = /^(?:\[([^\]]*)\]|([^:]*)):(\d+)$/.exec(config.addr);
    if (!m) {
      reject(new ConfigError(`http.addr: ${config.addr} is not an address like :5000 or host:port`));
      return;
    }
    const host = m[1] ?? m[2];
    server.listen({ host: host || undefined, port: Number(m[3]) }, done);
  });
}

/** A listening server that can be drained. */
export interface Listener {
  /** The bound address (`host:port`, or the socket path for `unix`). */
  readonly address: string;
  readonly port: number | undefined;
  /**
   * Stops accepting connections and resolves once every connection is closed: idle keep-alive ones
   * at once (and each as its response ends), busy ones after `http.draintimeout` at the latest.
   */
  drain(): Promise<void>;
}

/** The server of the `http` section answering with `app`, listening (lib/server.ts stops it with `drain`). */
export async function startListener(config: HttpConfig, app: http.RequestListener): Promise<Listener> {
  const server = createServer(config, app);
  const sockets = new Set<Socket>();
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  const { address, port } = await listen(server, config);
  let draining: Promise<void> | undefined;
  const drain = async (): Promise<void> => {
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    // Idle keep-alive connections would hold `close` open forever; busy ones finish their response.
    server.closeIdleConnections();
    // Busy connections get `http.draintimeout`, then are cut: the drain is bounded whatever
    // the clients do (a slow download, a cold fetch from a slow upstream).
    const timer = setTimeout(() => sockets.forEach((s) => s.destroy()), config.draintimeoutms);
    // A keep-alive connection whose response ends during the drain is idle from then on: closed
    // at once, not held until the drain's end.
    const idle = setInterval(() => server.closeIdleConnections(), 50);
    await closed;
    clearTimeout(timer);
    clearInterval(idle);
  };
  return { address, port, drain: () => (draining ??= drain()) };
}

/** Go's `RequireAnyClientCert` (some certificate, not verified) and `VerifyClientCertIfGiven` (none, or a verified one). */
function acceptable(mode: 'require-any-client-cert' | 'verify-client-cert-if-given', socket: TLSSocket): boolean {
  const given = Object.keys(socket.getPeerCertificate() ?? {}).length > 0;
  return mode === 'require-any-client-cert' ? given : !given || socket.authorized;
}

function formatAddress(a: AddressInfo): string {
  return a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
}
