/**
 * The HTTP client for one upstream registry: keep-alive connections, explicit timeouts, token or
 * basic authentication per repository scope (re-authenticating once on a 401), and a mapping of
 * every failure to a typed `UpstreamError`. It knows nothing of the cache.
 */
import http from 'node:http';
import https from 'node:https';
import { finished, type Readable } from 'node:stream';
import type { ExtendOptions, Got, RequestError } from 'got';
import { MAX_MANIFEST_BYTES } from '../distribution/manifest.js';
import { MANIFEST_ACCEPT, MediaType } from '../distribution/mediatypes.js';
import { UpstreamAuth, UpstreamAuthError, scopeForRepository, shouldSendAuthorization } from './auth/upstream-auth.js';
import { CredentialHelper, CredentialHelperError } from './auth/credential-helper.js';
import { UpstreamError, UpstreamUnreachableError, upstreamDown } from './upstream-error.js';
import { CircuitBreaker, type CircuitBreakerOptions, type RateBudget } from './upstream-guards.js';
import { inOpenSpan, inSpan, injectTraceContext, tracingEnabled } from '../tracing/tracing.js';

/** Timeouts of upstream requests, in milliseconds. */
export interface UpstreamTimeouts {
  /** TCP (and TLS) connection set-up. */
  readonly connect: number;
  /** From request sent to response headers. */
  readonly response: number;
  /** Longest pause between two chunks of a body. */
  readonly idle: number;
}

/** What the mirror needs to reach one upstream. */
export interface UpstreamOptions {
  readonly remoteUrl: string;
  readonly username?: string;
  readonly password?: string;
  /** `proxy.exec`: a credential helper in place of `username`/`password`. */
  readonly exec?: { readonly command: string; readonly lifetimems?: number };
  /** `proxy.timeouts` (its defaults are the configuration's). */
  readonly timeouts: UpstreamTimeouts;
  /** Called with every upstream answer's status and headers (rate-limit logging, metrics). */
  readonly onResponse?: (info: { method: string; path: string; status: number; headers: http.IncomingHttpHeaders }) => void;
  readonly onWarning?: (message: string) => void;
  /** Tuning of the circuit breaker (defaults: open after 3 failures, 5 s cool-down doubling to 60 s). */
  readonly breaker?: CircuitBreakerOptions;
  /** The upstream's rate-limit budget: reads every answer, refuses charged requests while it is spent. */
  readonly budget?: RateBudget;
  /** `proxy.maxupstreamconns`: the most connections open to the upstream at once. */
  readonly maxConnections: number;
}

/** got's error class, known once got is loaded (which happens before any request can fail). */
let GotRequestError: typeof RequestError | undefined;

/** A buffered upstream answer. */
export interface UpstreamReply {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: Buffer;
}

/** A streamed upstream answer (status 200 or 206 only; others are thrown as `UpstreamError`). */
export interface UpstreamStream {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: Readable;
}

/** What is known of an upstream's health, for the cache page. */
export interface UpstreamStatus {
  /** The last time the upstream answered (any status below 500). */
  readonly lastAnswer?: Date;
  /** The last failure (unreachable, timed out, 5xx) and its reason. */
  readonly lastFailure?: { readonly at: Date; readonly message: string };
  /** True while the circuit breaker refuses requests without trying them. */
  readonly circuitOpen: boolean;
  readonly retryInMs: number;
}

/** The client of one upstream registry. */
export class Upstream {
  readonly remoteUrl: string;
  readonly auth: UpstreamAuth;
  private readonly gotOptions: ExtendOptions;
  private gotClient?: Promise<Got>;
  private readonly agents: { http: http.Agent; https: https.Agent };
  private readonly onResponse: UpstreamOptions['onResponse'];
  private readonly breaker: CircuitBreaker;
  private readonly budget?: RateBudget;
  private lastAnswer?: Date;
  private lastFailure?: { at: Date; message: string };
  private closed = false;

  constructor(options: UpstreamOptions) {
    this.remoteUrl = options.remoteUrl.replace(/\/+$/, '');
    const t = options.timeouts;
    // Keep-alive: a cold pull makes dozens of requests to one host; a new TLS handshake each time
    // would dominate small manifest requests. The cap counts every host this client reaches (the
    // upstream and the CDN it redirects blobs to): requests beyond it wait for a free connection.
    const maxSockets = options.maxConnections;
    this.agents = {
      http: new http.Agent({ keepAlive: true, maxSockets, maxTotalSockets: maxSockets }),
      https: new https.Agent({ keepAlive: true, maxSockets, maxTotalSockets: maxSockets }),
    };
    this.budget = options.budget;
    this.gotOptions = {
      agent: this.agents,
      timeout: { lookup: t.connect, connect: t.connect, secureConnect: t.connect, response: t.response, socket: t.idle },
      retry: { limit: 0 },
      throwHttpErrors: false,
      // Blob bytes must reach the cache exactly as the digest names them.
      decompress: false,
      followRedirect: true,
      // got drops `Authorization` when a redirect changes host or port, not when it changes only
      // the scheme (`https://h/` to `http://h/`: both ports are implicit): drop it then too.
      hooks: {
        beforeRedirect: [
          (options, response) => {
            if (!shouldSendAuthorization(response.url, String(options.url))) delete options.headers.authorization;
          },
        ],
      },
      headers: { 'user-agent': 'registry-mirror/0.1 (+distribution-compatible pull-through cache)' },
    };
    this.onResponse = options.onResponse;
    this.breaker = new CircuitBreaker({
      ...options.breaker,
      onChange: (open, detail) => options.onWarning?.(`upstream ${this.remoteUrl} circuit ${open ? 'open' : 'closed'}: ${detail}`),
    });
    const helper = options.exec && new CredentialHelper({ ...options.exec, serverUrl: new URL(this.remoteUrl).host });
    this.auth = new UpstreamAuth({
      remoteUrl: this.remoteUrl,
      username: options.username,
      password: options.password,
      credentials: helper && (() => helper.credentials()),
      got: () => this.client(),
      onWarning: options.onWarning,
    });
  }

  /**
   * The HTTP client, loaded on the first upstream request: got and its dependencies are a large
   * share of a start's module loading, and a restarted cache serves from storage before it asks
   * the upstream anything.
   */
  private client(): Promise<Got> {
    this.gotClient ??= import('got').then((m) => {
      GotRequestError = m.RequestError;
      return m.default.extend(this.gotOptions);
    });
    return this.gotClient;
  }

  /**
   * Loads the HTTP client now, in the background: called once the listener is open, so that the
   * first client's upstream request does not wait for got's modules to load and compile (about
   * 30 ms of CPU and 100 ms of a cold pull's first request on this machine).
   */
  preload(): void {
    void this.client().catch(() => undefined);
  }

  /** The upstream's health as this process has seen it. */
  get status(): UpstreamStatus {
    return { lastAnswer: this.lastAnswer, lastFailure: this.lastFailure, circuitOpen: this.breaker.open, retryInMs: this.breaker.retryInMs };
  }

  /** `HEAD` of a manifest by tag or digest, asking for every manifest type. */
  headManifest(name: string, reference: string): Promise<UpstreamReply> {
    return this.request('HEAD', name, `/v2/${name}/manifests/${reference}`, { accept: MANIFEST_ACCEPT.join(', ') });
  }

  /** `GET` of a manifest, body capped at `MAX_MANIFEST_BYTES`. */
  getManifest(name: string, reference: string): Promise<UpstreamReply> {
    return this.request('GET', name, `/v2/${name}/manifests/${reference}`, { accept: MANIFEST_ACCEPT.join(', '), maxBytes: MAX_MANIFEST_BYTES });
  }

  /** `HEAD` of a blob. */
  headBlob(name: string, digest: string): Promise<UpstreamReply> {
    return this.request('HEAD', name, `/v2/${name}/blobs/${digest}`, {});
  }

  /** `GET` of a tag list page; `query` is passed through (`n`, `last`). */
  getTags(name: string, query: string): Promise<UpstreamReply> {
    return this.request('GET', name, `/v2/${name}/tags/list${query}`, { maxBytes: 16 * 1024 * 1024 });
  }

  /** `GET` of the referrers of `digest` (OCI 1.1), with the `artifactType` filter when given. */
  getReferrers(name: string, digest: string, artifactType: string | undefined): Promise<UpstreamReply> {
    const query = artifactType === undefined ? '' : `?${new URLSearchParams({ artifactType }).toString()}`;
    return this.request('GET', name, `/v2/${name}/referrers/${digest}${query}`, { accept: MediaType.OciIndex, maxBytes: MAX_MANIFEST_BYTES });
  }

  /**
   * Streams a blob. Resolves once the upstream answered 200; any other answer is thrown as an
   * `UpstreamError`. Redirects (Docker Hub sends blobs from a CDN) are followed without the
   * `Authorization` header when they leave the upstream's origin (scheme, host or port).
   * With `from`, asks for the bytes from that offset on (`Range: bytes=<from>-`): the answer is a
   * `206` with its `Content-Range`, or a `200` with the whole blob from an upstream that ignores ranges.
   */
  streamBlob(name: string, digest: string, from?: number): Promise<UpstreamStream> {
    const path = `/v2/${name}/blobs/${digest}`;
    if (!tracingEnabled()) return this.guarded('GET', path, () => this.streamBlobOnce(name, digest, from));
    // Traced: the span lasts until the body's last byte (or its failure).
    return inOpenSpan('upstream GET', this.spanAttributes('GET', path, from), async (span) => {
      const reply = await this.guarded('GET', path, () => this.streamBlobOnce(name, digest, from));
      span.setAttributes({
        'http.response.status_code': reply.status,
        'http.response.header.content-length': Number(reply.headers['content-length']) || undefined,
      });
      finished(reply.body, (err) => span.end(err ?? undefined));
      return reply;
    });
  }

  /** A span's attributes for an upstream request (OpenTelemetry's HTTP client conventions). */
  private spanAttributes(method: string, path: string, from?: number): Record<string, string | number | undefined> {
    return { 'http.request.method': method, 'url.full': this.remoteUrl + path, 'server.address': new URL(this.remoteUrl).host, 'registry.range.start': from };
  }

  private async streamBlobOnce(name: string, digest: string, from: number | undefined): Promise<UpstreamStream> {
    const path = `/v2/${name}/blobs/${digest}`;
    const scope = scopeForRepository(name);
    for (let attempt = 0; ; attempt++) {
      const authorization = await this.authorization(scope);
      const headers: Record<string, string> = authorization ? { authorization } : {};
      if (from !== undefined) headers.range = `bytes=${from}-`;
      injectTraceContext(headers);
      const stream = (await this.client()).stream(this.remoteUrl + path, { headers });
      const response = await new Promise<http.IncomingMessage>((resolve, reject) => {
        stream.once('response', resolve);
        stream.once('error', reject);
      }).catch((err: unknown) => {
        throw unreachable('GET', path, err);
      });
      this.onResponse?.({ method: 'GET', path, status: response.statusCode ?? 0, headers: response.headers });
      this.budget?.observe('GET', path, response.statusCode ?? 0, response.headers);
      if (response.statusCode === 200 || (response.statusCode === 206 && from !== undefined)) {
        return { status: response.statusCode, headers: response.headers, body: stream };
      }
      const body = await drain(stream, 64 * 1024, path).catch(() => Buffer.alloc(0));
      const reply: UpstreamReply = { status: response.statusCode ?? 0, headers: response.headers, body };
      if (this.sendAgain(reply, scope, authorization, attempt)) continue;
      throw statusError('GET', path, reply);
    }
  }

  /**
   * Ends the connections to the upstream, in use or idle (what still streams fails), and refuses
   * every later request: an agent makes new sockets after `destroy`, and a stopped registry must
   * not fetch.
   */
  close(): void {
    this.closed = true;
    this.agents.http.destroy();
    this.agents.https.destroy();
  }

  /**
   * One authenticated request with a buffered body. Non-2xx answers are thrown as `UpstreamError`
   * (a 401 teaches the upstream's challenge, or replaces a refused token, and the request is sent
   * once more; a refused Basic login is not resent, which would only double failed logins).
   */
  private request(method: 'GET' | 'HEAD', name: string, path: string, opts: { accept?: string; maxBytes?: number }): Promise<UpstreamReply> {
    try {
      // A charged request while the budget is spent is answered here; the circuit is not involved.
      this.budget?.admit(method, path);
    } catch (err) {
      return Promise.reject(err as Error);
    }
    if (!tracingEnabled()) return this.guarded(method, path, () => this.requestOnce(method, name, path, opts));
    return inSpan(`upstream ${method}`, this.spanAttributes(method, path), async (span) => {
      const reply = await this.guarded(method, path, () => this.requestOnce(method, name, path, opts));
      span.setAttributes({ 'http.response.status_code': reply.status });
      return reply;
    });
  }

  /**
   * Runs one upstream exchange through the circuit breaker: refused at once while the circuit is
   * open; unreachable and 5xx outcomes count as failures, any other answer closes it.
   */
  private async guarded<T>(method: string, path: string, exchange: () => Promise<T>): Promise<T> {
    if (this.closed) throw new UpstreamUnreachableError(`upstream ${method} ${path} not attempted: the registry is stopping`);
    if (!this.breaker.allow()) {
      throw new UpstreamUnreachableError(`upstream ${method} ${path} not attempted: the upstream failed repeatedly, next try in ${this.breaker.retryInMs} ms`);
    }
    try {
      const result = await exchange();
      this.breaker.success();
      this.lastAnswer = new Date();
      return result;
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      if (upstreamDown(err)) {
        this.breaker.failure(message);
        this.lastFailure = { at: new Date(), message };
      } else {
        this.breaker.success();
        this.lastAnswer = new Date();
      }
      throw err;
    }
  }

  private async requestOnce(method: 'GET' | 'HEAD', name: string, path: string, opts: { accept?: string; maxBytes?: number }): Promise<UpstreamReply> {
    const scope = scopeForRepository(name);
    for (let attempt = 0; ; attempt++) {
      const authorization = await this.authorization(scope);
      const headers: Record<string, string> = {};
      if (authorization) headers.authorization = authorization;
      if (opts.accept) headers.accept = opts.accept;
      injectTraceContext(headers);
      let reply: UpstreamReply;
      try {
        if (method === 'HEAD') {
          const res = await (await this.client())(this.remoteUrl + path, { method, headers });
          reply = { status: res.statusCode, headers: res.headers, body: Buffer.alloc(0) };
        } else {
          reply = await this.boundedGet(path, headers, opts.maxBytes ?? MAX_MANIFEST_BYTES);
        }
      } catch (err) {
        if (err instanceof UpstreamError) throw err;
        throw unreachable(method, path, err);
      }
      this.onResponse?.({ method, path, status: reply.status, headers: reply.headers });
      this.budget?.observe(method, path, reply.status, reply.headers);
      if (reply.status >= 200 && reply.status < 300) return reply;
      if (this.sendAgain(reply, scope, authorization, attempt)) continue;
      throw statusError(method, path, reply);
    }
  }

  /**
   * After a 401: true when the request is worth sending once more (the challenge it taught, or a
   * fresh token in place of a refused one). A second 401 is the answer.
   */
  private sendAgain(reply: UpstreamReply, scope: string, sent: string | undefined, attempt: number): boolean {
    if (reply.status !== 401) return false;
    return this.auth.challenged(scope, sent, headerString(reply.headers['www-authenticate'])) && attempt === 0;
  }

  /** A GET whose body may not exceed `maxBytes`: an endless or oversized body is cut off, not buffered. */
  private async boundedGet(path: string, headers: Record<string, string>, maxBytes: number): Promise<UpstreamReply> {
    const stream = (await this.client()).stream(this.remoteUrl + path, { headers });
    const response = await new Promise<http.IncomingMessage>((resolve, reject) => {
      stream.once('response', resolve);
      stream.once('error', reject);
    });
    const declared = Number(response.headers['content-length']);
    if (Number.isFinite(declared) && declared > maxBytes) {
      stream.destroy();
      throw new UpstreamError('ERR_UPSTREAM_INVALID', `upstream body of ${declared} bytes exceeds the ${maxBytes}-byte limit`, { status: response.statusCode });
    }
    const body = await drain(stream, maxBytes, path);
    return { status: response.statusCode ?? 0, headers: response.headers, body };
  }

  private async authorization(scope: string): Promise<string | undefined> {
    try {
      return await this.auth.authorization(scope);
    } catch (err) {
      if (err instanceof UpstreamAuthError) throw new UpstreamError('ERR_UPSTREAM_AUTH_FAILED', err.message, { cause: err, status: err.status ?? 401 });
      // No credentials to send: the request fails (503) rather than go out anonymously.
      if (err instanceof CredentialHelperError) throw new UpstreamUnreachableError(`no upstream credentials: ${err.message}`, { cause: err });
      throw new UpstreamUnreachableError(err instanceof Error ? err.message : String(err), { cause: err });
    }
  }
}

/** Reads a stream to a buffer, failing once more than `maxBytes` arrive; `path` names it in errors. */
function drain(stream: Readable, maxBytes: number, path: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    stream.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > maxBytes) {
        stream.destroy();
        reject(new UpstreamError('ERR_UPSTREAM_INVALID', `upstream body exceeds the ${maxBytes}-byte limit`));
        return;
      }
      chunks.push(chunk);
    });
    stream.once('end', () => resolve(Buffer.concat(chunks, size)));
    stream.once('error', (err) => reject(err instanceof UpstreamError ? err : unreachable('GET', path, err)));
  });
}

function headerString(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(', ') : value;
}

function unreachable(method: string, path: string, err: unknown): UpstreamError {
  const detail = GotRequestError && err instanceof GotRequestError ? `${err.code}: ${err.message}` : err instanceof Error ? err.message : String(err);
  return new UpstreamUnreachableError(`upstream ${method} ${path} failed: ${detail}`, { cause: err });
}

function statusError(method: string, path: string, reply: UpstreamReply): UpstreamError {
  let registryCode: string | undefined;
  let message = '';
  try {
    const parsed = JSON.parse(reply.body.toString('utf8')) as { errors?: Array<{ code?: string; message?: string }> };
    registryCode = parsed.errors?.[0]?.code;
    message = parsed.errors?.[0]?.message ?? '';
  } catch {
    // Not a registry error body (a proxy's HTML page, or a HEAD): the status alone tells.
  }
  const code = reply.status === 401 || reply.status === 403 ? 'ERR_UPSTREAM_AUTH_FAILED' : 'ERR_UPSTREAM_STATUS';
  return new UpstreamError(code, `upstream ${method} ${path} answered ${reply.status}${message ? `: ${message}` : ''}`, {
    status: reply.status,
    headers: reply.headers,
    registryCode,
  });
}
