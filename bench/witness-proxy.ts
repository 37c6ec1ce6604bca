/**
 * The chaos scenario's witness: an HTTP proxy on 127.0.0.1 between the pulling clients and the
 * cache under test, on a port that stays the same while the cache is killed and restarted. It
 * counts the cache's answers by status and checks every manifest and blob body that ended cleanly
 * (complete, as long as its Content-Length) against what it should be: the digest it was asked by,
 * or for a manifest by tag the digest the bench pushed under that tag. A clean end to wrong bytes
 * is the failure that matters; an aborted transfer is a client's cue to retry.
 */
import { createHash } from 'node:crypto';
import http from 'node:http';
import { listenOnLoopback } from './loopback.js';

/** What the witness saw. */
export interface WitnessCounts {
  /** Answers by status code. */
  readonly statuses: Record<string, number>;
  /** Requests the cache did not answer (refused, reset before the headers). */
  readonly unanswered: number;
  /** Bodies that ended cleanly with bytes other than the ones asked for. */
  readonly wrongBytes: number;
  /** The first few of them, `GET path: got sha256:...`. */
  readonly wrongExamples: string[];
}

/** A running witness. */
export interface Witness {
  readonly url: string;
  readonly hostPort: string;
  counts(): WitnessCounts;
  reset(): void;
  close(): Promise<void>;
}

/**
 * Starts a witness in front of `target` (`host:port`); `expectedForTag(repo, tag)` gives the
 * digest a manifest by tag must hash to (undefined: not checked).
 */
export async function startWitness(target: string, expectedForTag: (repo: string, tag: string) => string | undefined): Promise<Witness> {
  const [host, port] = target.split(':');
  const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
  let counts = { statuses: {} as Record<string, number>, unanswered: 0, wrongBytes: 0, wrongExamples: [] as string[] };

  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0]!;
    const m = /^\/v2\/(.+)\/(manifests|blobs)\/([^/]+)$/.exec(path);
    const expected =
      req.method !== 'GET' || !m ? undefined : m[3]!.startsWith('sha256:') ? m[3] : m[2] === 'manifests' ? expectedForTag(m[1]!, m[3]!) : undefined;
    const upstream = http.request({ host, port: Number(port), method: req.method, path: req.url, headers: req.headers, agent }, (r) => {
      const status = String(r.statusCode);
      counts.statuses[status] = (counts.statuses[status] ?? 0) + 1;
      res.writeHead(r.statusCode!, r.headers);
      const hash = expected && r.statusCode === 200 ? createHash('sha256') : undefined;
      let bytes = 0;
      r.on('data', (c: Buffer) => {
        bytes += c.length;
        hash?.update(c);
      });
      r.once('end', () => {
        const declared = Number(r.headers['content-length'] ?? NaN);
        const complete = !r.aborted && (!Number.isFinite(declared) || declared === bytes);
        if (hash && complete) {
          const got = `sha256:${hash.digest('hex')}`;
          if (got !== expected) {
            counts.wrongBytes++;
            if (counts.wrongExamples.length < 10) counts.wrongExamples.push(`${req.method} ${path}: got ${got}`);
          }
        }
      });
      // The cache died mid-body: the client must see an aborted transfer, not an end.
      r.once('aborted', () => res.destroy());
      r.once('error', () => res.destroy());
      r.pipe(res);
    });
    upstream.once('error', () => {
      if (!res.headersSent) counts.unanswered++;
      res.destroy();
    });
    res.once('close', () => {
      if (!res.writableFinished) upstream.destroy();
    });
    req.pipe(upstream);
  });
  const { port: listening, close } = await listenOnLoopback(server, agent);
  const hostPort = `127.0.0.1:${listening}`;
  return {
    url: `http://${hostPort}`,
    hostPort,
    counts: () => ({ ...counts, statuses: { ...counts.statuses }, wrongExamples: [...counts.wrongExamples] }),
    reset: () => {
      counts = { statuses: {}, unanswered: 0, wrongBytes: 0, wrongExamples: [] };
    },
    close,
  };
}
