/**
 * A programmable upstream registry: a real HTTP server on 127.0.0.1 that serves manifests and blobs
 * from memory, counts every request, and produces the faults a real registry cannot: resets
 * mid-body, wrong bytes, 5xx, 429, slow or stalled bodies. Blobs answer `Range: bytes=<n>-[<m>]`
 * with a `206`, as distribution does (unless the `no-range` fault makes it ignore ranges), and
 * every request's body bytes are counted.
 */
import http from 'node:http';
import { createHash } from 'node:crypto';
import type { AddressInfo } from 'node:net';

/** A fault to inject on matching requests. */
export type Fault =
  | { kind: 'status'; status: number; headers?: Record<string, string>; body?: string }
  | { kind: 'reset-after'; bytes: number }
  | { kind: 'wrong-bytes' }
  | { kind: 'truncate'; bytes: number }
  | { kind: 'stall' }
  | { kind: 'slow'; bytesPerTick: number; tickMs: number }
  | { kind: 'no-digest-header' }
  /**
   * A manifest altered on the way: `body` instead of the stored one (default: the stored JSON
   * re-indented, the same document with other whitespace), with a matching Content-Length; the
   * `Docker-Content-Digest` of the stored one is kept unless `dropDigest`.
   */
  | { kind: 'altered-manifest'; body?: Buffer; dropDigest?: boolean }
  /** Chunked, with no Content-Length, and never ending (until the client goes away). */
  | { kind: 'endless' }
  | { kind: 'delay'; ms: number }
  /** A blob `GET` with a `Range` is answered `200` with the whole blob, as by a server without range support. */
  | { kind: 'no-range' };

/** One recorded request. */
export interface Hit {
  readonly method: string;
  readonly path: string;
  readonly accept?: string;
  readonly authorization?: string;
  readonly range?: string;
  /** The W3C trace context sent (tracing on). */
  readonly traceparent?: string;
  /** Body bytes sent so far. */
  bytes: number;
}

export interface FakeUpstream {
  readonly url: string;
  readonly hits: Hit[];
  /** Adds a blob; returns its digest. */
  addBlob(repo: string, content: Buffer): string;
  /** Adds a manifest under its digest and, when given, a tag; returns the digest. */
  addManifest(repo: string, manifest: Buffer | object, tag?: string, mediaType?: string): string;
  /** Points a tag at an existing manifest digest (or removes it with undefined). */
  setTag(repo: string, tag: string, digest: string | undefined): void;
  /** Injects `fault` for requests whose `METHOD path` matches `pattern`, `times` times (default: always). */
  fault(pattern: RegExp, fault: Fault, times?: number): void;
  clearFaults(): void;
  /** Requests matching `METHOD path` (e.g. /^GET \/v2\/.*\/blobs\//). */
  count(pattern: RegExp): number;
  /** Body bytes sent to requests matching `METHOD path`. */
  bytes(pattern: RegExp): number;
  /** Connections open now, and the most ever open at once. */
  readonly connections: { readonly open: number; readonly peak: number };
  /** Makes the server answer every request by destroying the connection (a dead upstream). */
  setDown(down: boolean): void;
  close(): Promise<void>;
}

const sha256 = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** What the fake upstream serves beyond manifests, blobs and tags. */
export interface FakeUpstreamOptions {
  /** Serves the OCI 1.1 referrers API (with the `artifactType` filter); without it the route is a 404, as distribution 2.8. */
  readonly referrers?: boolean;
  /**
   * Sees every request before it is served (after it is recorded): may set headers on `res`, or
   * answer it and return true (an upstream's own policy, as Docker Hub's rate limit).
   */
  readonly intercept?: (req: http.IncomingMessage, res: http.ServerResponse, key: string) => boolean;
}

/** Starts a fake upstream. */
export async function startFakeUpstream(options: FakeUpstreamOptions = {}): Promise<FakeUpstream> {
  const blobs = new Map<string, Buffer>();
  const manifests = new Map<string, { body: Buffer; mediaType: string }>();
  const tags = new Map<string, string>();
  const faults: Array<{ pattern: RegExp; fault: Fault; left: number }> = [];
  const hits: Hit[] = [];
  let down = false;
  const sockets = new Set<import('node:net').Socket>();

  const takeFault = (key: string): Fault | undefined => {
    const f = faults.find((x) => x.left > 0 && x.pattern.test(key));
    if (!f) return undefined;
    f.left--;
    return f.fault;
  };

  const sendBody = (res: http.ServerResponse, body: Buffer, fault: Fault | undefined): void => {
    if (!fault) {
      res.end(body);
      return;
    }
    switch (fault.kind) {
      case 'reset-after':
        res.write(body.subarray(0, fault.bytes), () => setTimeout(() => res.socket?.destroy(), 20));
        return;
      case 'truncate':
        res.write(body.subarray(0, fault.bytes), () => res.socket?.end());
        return;
      case 'wrong-bytes': {
        const wrong = Buffer.from(body);
        wrong[wrong.length - 1] = (wrong[wrong.length - 1]! + 1) % 256;
        res.end(wrong);
        return;
      }
      case 'endless': {
        const filler = Buffer.alloc(64 * 1024, 0x20);
        const more = (): void => {
          while (!res.destroyed && res.write(filler));
          if (!res.destroyed) res.once('drain', more);
        };
        res.write(body.subarray(0, Math.min(64, body.length)));
        more();
        return;
      }
      case 'stall':
        res.write(body.subarray(0, Math.min(16, body.length)));
        return;
      case 'slow': {
        let offset = 0;
        const tick = (): void => {
          if (res.destroyed) return;
          const next = body.subarray(offset, offset + fault.bytesPerTick);
          offset += next.length;
          if (offset >= body.length) res.end(next);
          else res.write(next, () => setTimeout(tick, fault.tickMs));
        };
        tick();
        return;
      }
      default:
        res.end(body);
    }
  };

  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0]!;
    const key = `${req.method} ${path}`;
    const hit: Hit = {
      method: req.method!,
      path,
      accept: req.headers.accept,
      authorization: req.headers.authorization,
      range: req.headers.range,
      traceparent: req.headers.traceparent as string | undefined,
      bytes: 0,
    };
    hits.push(hit);
    const write = res.write.bind(res) as (chunk: unknown, ...rest: unknown[]) => boolean;
    const end = res.end.bind(res) as (...args: unknown[]) => http.ServerResponse;
    const counted = (chunk: unknown): void => {
      if (typeof chunk === 'string' || Buffer.isBuffer(chunk)) hit.bytes += Buffer.byteLength(chunk);
    };
    res.write = ((chunk: unknown, ...rest: unknown[]) => {
      counted(chunk);
      return write(chunk, ...rest);
    }) as typeof res.write;
    res.end = ((...args: unknown[]) => {
      if (typeof args[0] !== 'function') counted(args[0]);
      return end(...args);
    }) as typeof res.end;
    if (down) {
      req.socket.destroy();
      return;
    }
    if (options.intercept?.(req, res, key)) return;
    const fault = takeFault(key);
    if (fault?.kind === 'delay') {
      setTimeout(() => handle(req, res, path, undefined), fault.ms);
      return;
    }
    handle(req, res, path, fault);
  });
  const handle = (req: http.IncomingMessage, res: http.ServerResponse, path: string, fault: Fault | undefined): void => {
    if (fault?.kind === 'status') {
      res.writeHead(fault.status, { 'content-type': 'application/json', ...fault.headers });
      res.end(fault.body ?? JSON.stringify({ errors: [{ code: fault.status === 429 ? 'TOOMANYREQUESTS' : 'UNKNOWN', message: `fault ${fault.status}` }] }));
      return;
    }
    res.setHeader('Docker-Distribution-API-Version', 'registry/2.0');
    if (path === '/v2/' || path === '/v2') {
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      return;
    }
    const notFound = (code: string): void => {
      res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ errors: [{ code, message: code.toLowerCase() }] }));
    };
    let m = /^\/v2\/(.+)\/manifests\/([^/]+)$/.exec(path);
    if (m) {
      const [, repo, ref] = m as unknown as [string, string, string];
      const digest = ref.includes(':') ? ref : tags.get(`${repo}:${ref}`);
      const found = digest ? manifests.get(`${repo}@${digest}`) : undefined;
      if (!found) return notFound('MANIFEST_UNKNOWN');
      const body = fault?.kind === 'altered-manifest' ? (fault.body ?? Buffer.from(JSON.stringify(JSON.parse(found.body.toString()), null, 2))) : found.body;
      const headers: Record<string, string | number> = { 'content-type': found.mediaType, 'content-length': body.length };
      if (fault?.kind !== 'no-digest-header' && !(fault?.kind === 'altered-manifest' && fault.dropDigest)) headers['docker-content-digest'] = digest!;
      if (fault?.kind === 'endless') delete headers['content-length'];
      res.writeHead(200, headers);
      if (req.method === 'HEAD') return void res.end();
      return sendBody(res, body, fault?.kind === 'altered-manifest' ? undefined : fault);
    }
    m = /^\/v2\/(.+)\/blobs\/([^/]+)$/.exec(path);
    if (m) {
      const [, repo, digest] = m as unknown as [string, string, string];
      const blob = blobs.get(`${repo}@${digest}`);
      if (!blob) return notFound('BLOB_UNKNOWN');
      const range = fault?.kind === 'no-range' ? null : /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
      if (range && req.method === 'GET') {
        const first = Number(range[1]);
        const last = range[2] ? Math.min(Number(range[2]), blob.length - 1) : blob.length - 1;
        if (first > last) {
          res.writeHead(416, { 'content-range': `bytes */${blob.length}` }).end();
          return;
        }
        const part = blob.subarray(first, last + 1);
        res.writeHead(206, {
          'content-type': 'application/octet-stream',
          'content-length': part.length,
          'content-range': `bytes ${first}-${last}/${blob.length}`,
          'docker-content-digest': digest,
        });
        return sendBody(res, part, fault);
      }
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': blob.length, 'docker-content-digest': digest });
      if (req.method === 'HEAD') return void res.end();
      return sendBody(res, blob, fault);
    }
    m = options.referrers ? /^\/v2\/(.+)\/referrers\/([^/]+)$/.exec(path) : null;
    if (m) {
      const [, repo, subject] = m as unknown as [string, string, string];
      const artifactType = new URL(req.url ?? '/', 'http://fake.invalid').searchParams.get('artifactType');
      const referrers = [...manifests].flatMap(([key, { body, mediaType }]) => {
        if (!key.startsWith(`${repo}@`)) return [];
        const doc = JSON.parse(body.toString()) as {
          subject?: { digest?: string };
          artifactType?: string;
          config?: { mediaType?: string };
          annotations?: Record<string, string>;
        };
        if (doc.subject?.digest !== subject) return [];
        const type = doc.artifactType ?? doc.config?.mediaType;
        if (artifactType !== null && type !== artifactType) return [];
        return [{ mediaType, digest: key.slice(repo.length + 1), size: body.length, artifactType: type, annotations: doc.annotations }];
      });
      const headers: Record<string, string> = { 'content-type': 'application/vnd.oci.image.index.v1+json' };
      if (artifactType !== null) headers['oci-filters-applied'] = 'artifactType';
      res.writeHead(200, headers).end(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: referrers }));
      return;
    }
    m = /^\/v2\/(.+)\/tags\/list$/.exec(path);
    if (m) {
      const repo = m[1]!;
      const list = [...tags.keys()]
        .filter((k) => k.startsWith(`${repo}:`))
        .map((k) => k.slice(repo.length + 1))
        .sort();
      if (list.length === 0) return notFound('NAME_UNKNOWN');
      // Paged as distribution: after `last`, at most `n`, a `Link` to the next page when more follow.
      const query = new URL(req.url ?? '/', 'http://fake.invalid').searchParams;
      const last = query.get('last');
      const rest = last === null ? list : list.filter((t) => t > last);
      const n = query.has('n') ? Number(query.get('n')) : rest.length;
      const page = rest.slice(0, n);
      const headers: Record<string, string> = { 'content-type': 'application/json' };
      if (rest.length > n) headers.link = `</v2/${repo}/tags/list?last=${encodeURIComponent(page[page.length - 1]!)}&n=${n}>; rel="next"`;
      res.writeHead(200, headers).end(JSON.stringify({ name: repo, tags: page }));
      return;
    }
    notFound('NAME_UNKNOWN');
  };
  let peak = 0;
  server.on('connection', (s) => {
    sockets.add(s);
    peak = Math.max(peak, sockets.size);
    s.once('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    hits,
    get connections() {
      return { open: sockets.size, peak };
    },
    addBlob(repo, content) {
      const d = sha256(content);
      blobs.set(`${repo}@${d}`, content);
      return d;
    },
    addManifest(repo, manifest, tag, mediaType) {
      const body = Buffer.isBuffer(manifest) ? manifest : Buffer.from(JSON.stringify(manifest));
      const parsed = JSON.parse(body.toString()) as { mediaType?: string };
      const d = sha256(body);
      manifests.set(`${repo}@${d}`, { body, mediaType: mediaType ?? parsed.mediaType ?? 'application/vnd.oci.image.manifest.v1+json' });
      if (tag) tags.set(`${repo}:${tag}`, d);
      return d;
    },
    setTag(repo, tag, digest) {
      if (digest === undefined) tags.delete(`${repo}:${tag}`);
      else tags.set(`${repo}:${tag}`, digest);
    },
    fault(pattern, fault, times = Number.MAX_SAFE_INTEGER) {
      faults.push({ pattern, fault, left: times });
    },
    clearFaults() {
      faults.length = 0;
    },
    count(pattern) {
      return hits.filter((h) => pattern.test(`${h.method} ${h.path}`)).length;
    },
    bytes(pattern) {
      return hits.filter((h) => pattern.test(`${h.method} ${h.path}`)).reduce((n, h) => n + h.bytes, 0);
    },
    setDown(value) {
      down = value;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** Builds a small OCI image (config + layers) in `upstream` under `repo:tag`; returns its digests. */
export function seedImage(
  upstream: FakeUpstream,
  repo: string,
  tag: string,
  layers: Buffer[],
): { manifest: string; config: string; layers: string[]; manifestBody: Buffer } {
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } }));
  const configDigest = upstream.addBlob(repo, config);
  const layerDigests = layers.map((l) => upstream.addBlob(repo, l));
  const manifest = {
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: configDigest, size: config.length },
    layers: layers.map((l, i) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: layerDigests[i], size: l.length })),
  };
  const manifestBody = Buffer.from(JSON.stringify(manifest));
  const digest = upstream.addManifest(repo, manifestBody, tag);
  return { manifest: digest, config: configDigest, layers: layerDigests, manifestBody };
}
