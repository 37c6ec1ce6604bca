/**
 * The server side of the HTTP requests this test process receives (the mirror's and the fake
 * upstream's), for tests that check what a server does with a response: how much it has handed to
 * the connection, how much is queued in its memory.
 */
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import type http from 'node:http';
import type net from 'node:net';

/** The responses seen since the call, by the port of the server that received the request. */
export interface ServerResponses {
  of(port: number): http.ServerResponse[];
  stop(): void;
}

/** Starts recording every request an http.Server of this process receives. */
export function serverResponses(): ServerResponses {
  const seen: { port: number; response: http.ServerResponse }[] = [];
  // Node's public hook on every request an http.Server of this process receives.
  const onRequest = (message: unknown): void => {
    const { response, socket } = message as { response: http.ServerResponse; socket: net.Socket };
    seen.push({ port: socket.localPort!, response });
  };
  subscribe('http.server.request.start', onRequest);
  return {
    of: (port) => seen.filter((s) => s.port === port).map((s) => s.response),
    stop: () => unsubscribe('http.server.request.start', onRequest),
  };
}
