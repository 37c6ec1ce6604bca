/**
 * The checks of distribution's `health` section (`health/checks/checks.go`), with its messages: a
 * file that must not exist, an HTTP `HEAD` answering a status, a TCP connect (the storage driver's
 * check is the driver's own `healthCheck`).
 * A check resolves when healthy and rejects with the reason otherwise.
 */
import { stat } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';

/** One health check. */
export type HealthCheck = () => Promise<void>;

/** `health.file`: unhealthy while `path` exists (operators touch it to drain an instance). */
export function fileCheck(path: string): HealthCheck {
  return async () => {
    try {
      await stat(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    throw new Error('file exists');
  };
}

/** `health.http`: a `HEAD` of `uri` must answer `statusCode` within `timeoutMs`. */
export function httpCheck(uri: string, statusCode: number, timeoutMs: number, headers: Readonly<Record<string, readonly string[]>>): HealthCheck {
  const url = new URL(uri);
  const client = url.protocol === 'https:' ? https : http;
  return () =>
    new Promise<void>((resolve, reject) => {
      const req = client.request(url, { method: 'HEAD', headers: headers as Record<string, string[]>, agent: false, timeout: timeoutMs }, (res) => {
        res.resume();
        if (res.statusCode === statusCode) resolve();
        else reject(new Error(`${uri}: downstream service returned unexpected status: ${res.statusCode}`));
      });
      req.on('timeout', () => req.destroy(new Error(`timeout after ${timeoutMs} ms`)));
      req.on('error', (err) => reject(new Error(`${uri}: error while checking: ${err.message}`)));
      req.end();
    });
}

/** `health.tcp`: a TCP connection to `addr` (`host:port`) must open within `timeoutMs`. */
export function tcpCheck(addr: string, timeoutMs: number): HealthCheck {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(addr);
  return () =>
    new Promise<void>((resolve, reject) => {
      if (!m) return reject(new Error(`${addr}: connection failed: not a host:port address`));
      const socket = net.connect({ host: m[1] ?? (m[2] || 'localhost'), port: Number(m[3]), timeout: timeoutMs });
      socket.once('connect', () => {
        socket.destroy();
        resolve();
      });
      socket.once('timeout', () => socket.destroy(new Error(`timeout after ${timeoutMs} ms`)));
      socket.once('error', (err) => reject(new Error(`${addr}: connection failed: ${err.message}`)));
    });
}
