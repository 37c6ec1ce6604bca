/** An HTTP server of the bench's on 127.0.0.1, closed (with its client agent) at clean-up. */
import type http from 'node:http';
import type { AddressInfo } from 'node:net';
import { onCleanup } from './cleanup.js';

/** Listens on a free port of 127.0.0.1; `close` drops every connection and destroys `agent`. */
export async function listenOnLoopback(server: http.Server, agent: http.Agent): Promise<{ port: number; close(): Promise<void> }> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const close = onCleanup(
    () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        agent.destroy();
        server.close(() => r());
      }),
  );
  return { port: (server.address() as AddressInfo).port, close };
}
