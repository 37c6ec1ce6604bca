/**
 * A notification endpoint for tests: a real HTTP server on 127.0.0.1 that records every envelope
 * posted to it (by path, so several registries can share one sink), answering 200, another status,
 * or nothing at all (`hang`: the request is held until the sink closes).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Socket } from 'node:net';

/** One received post. */
export interface Post {
  readonly path: string;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: string;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  readonly events: any[];
  readonly at: number;
}

export interface EventSink {
  readonly url: string;
  readonly posts: Post[];
  /** Events received at `path` (any path when undefined), in arrival order. */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  events(path?: string): any[];
  /** How the sink answers from now on. */
  answer(mode: { status: number } | 'hang'): void;
  /** Requests received (answered or held). */
  readonly requests: number;
  close(): Promise<void>;
}

export async function startEventSink(): Promise<EventSink> {
  const posts: Post[] = [];
  let mode: { status: number } | 'hang' = { status: 200 };
  let requests = 0;
  const sockets = new Set<Socket>();
  const server = http.createServer((req, res) => {
    requests++;
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (mode === 'hang') return;
      const body = Buffer.concat(chunks).toString('utf8');
      if (mode.status < 300)
        posts.push({ path: req.url ?? '/', headers: req.headers, body, events: (JSON.parse(body) as { events: unknown[] }).events, at: Date.now() });
      res.writeHead(mode.status).end();
    });
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    posts,
    events: (path) => posts.filter((p) => path === undefined || p.path === path).flatMap((p) => p.events),
    answer: (m) => {
      mode = m;
    },
    get requests() {
      return requests;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
