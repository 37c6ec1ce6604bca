/**
 * Authentication to the upstream registry (distribution `registry/client/auth/session.go`, without
 * its `/v2/` ping): a request goes out with what is known of the upstream's challenge, nothing at
 * first; a 401 teaches the challenge and the request is sent once more. Bearer tokens are fetched
 * per repository scope, cached until shortly before they expire and shared by concurrent
 * requests, at most `maxTokens` scopes (least recently used forgotten first); Basic is sent as is,
 * once the upstream asked for it. Credentials go only to a token realm `realmAllowed` trusts
 * (lib/proxy/auth/realm.ts), and a realm's answer is read up to `MAX_TOKEN_BODY` bytes.
 *
 * Why no ping: it is one round trip before a cold pull's first request, to learn what the first
 * request's own 401 says anyway (and nothing at all for an upstream that needs no login).
 */
import type { Readable } from 'node:stream';
import type { Got } from 'got';
import { UpstreamError, UpstreamUnreachableError } from '../upstream-error.js';
import { parseChallenges, type Challenge } from './challenge.js';

/** The scope of pulling a repository. */
export function scopeForRepository(name: string, actions = 'pull'): string {
  return `repository:${name}:${actions}`;
}

/** True when a request to `toUrl` may carry the `Authorization` meant for `fromUrl` (same host and port). */
export function shouldSendAuthorization(fromUrl: string, toUrl: string): boolean {
  const a = new URL(fromUrl);
  const b = new URL(toUrl);
  return a.host === b.host && a.protocol === b.protocol;
}

/** Scopes whose tokens are kept by default: an open mirror is asked for any name, each its own scope. */
const DEFAULT_MAX_TOKENS = 1000;

/** The largest token answer read (Docker Hub's are a few KiB); a realm sending more is refused, not buffered. */
const MAX_TOKEN_BODY = 1024 * 1024;

/** A refused or failed token request; `status` is the realm's answer. */
export class UpstreamAuthError extends UpstreamError {
  constructor(message: string, status?: number, cause?: unknown) {
    super('ERR_UPSTREAM_AUTH_FAILED', message, { cause, status });
  }
}

interface CachedToken {
  readonly value: string;
  readonly refreshAt: number;
}

/** Options of `UpstreamAuth`. */
interface UpstreamAuthOptions {
  readonly remoteUrl: string;
  readonly username?: string;
  readonly password?: string;
  /** Credentials asked for each time they are needed (`proxy.exec`); they replace `username`/`password`. */
  readonly credentials?: () => Promise<{ readonly username: string; readonly password: string }>;
  /** The HTTP client (loaded lazily by the `Upstream`). */
  readonly got: () => Promise<Got>;
  readonly now?: () => number;
  /** The most scopes whose tokens are kept (default `DEFAULT_MAX_TOKENS`). */
  readonly maxTokens?: number;
  readonly onWarning?: (message: string) => void;
}

/** Produces `Authorization` headers for upstream requests. */
export class UpstreamAuth {
  /** The challenge the upstream answered with, undefined until its first 401. */
  private challenge?: Challenge;
  private readonly tokens = new Map<string, CachedToken>();
  private readonly pending = new Map<string, Promise<string>>();
  private readonly now: () => number;
  /** Token endpoint requests made (for metrics and tests). */
  tokenRequests = 0;

  constructor(private readonly o: UpstreamAuthOptions) {
    this.now = o.now ?? Date.now;
  }

  /**
   * The header for a request needing `scope`: none while the upstream has asked for nothing, Basic
   * credentials or a Bearer token (fetched now if none is cached) once it has.
   */
  async authorization(scope: string): Promise<string | undefined> {
    const challenge = this.challenge;
    if (!challenge) return undefined;
    if (challenge.scheme === 'basic') return this.basic();
    const cached = this.tokens.get(scope);
    if (cached) {
      // Re-inserted: the map's order is the order of use, oldest first.
      this.tokens.delete(scope);
      if (cached.refreshAt > this.now()) {
        this.tokens.set(scope, cached);
        return `Bearer ${cached.value}`;
      }
    }
    let pending = this.pending.get(scope);
    if (!pending) {
      pending = this.fetchToken(challenge, scope).finally(() => this.pending.delete(scope));
      this.pending.set(scope, pending);
    }
    return `Bearer ${await pending}`;
  }

  /**
   * Learns from a 401 answer to a request that carried `sent` (undefined: no `Authorization`).
   * True when sending it once more, with what `authorization` gives now, may succeed: a challenge
   * learned or changed, or a refused token forgotten. False when it could only fail the same way:
   * no challenge we can answer, no credentials for Basic, or the same Basic credentials refused.
   */
  challenged(scope: string, sent: string | undefined, wwwAuthenticate: string | undefined): boolean {
    const challenges = parseChallenges(wwwAuthenticate);
    const offered = challenges.find((c) => c.scheme === 'bearer') ?? challenges.find((c) => c.scheme === 'basic');
    if (!offered) return false;
    const known = this.challenge;
    const changed = !known || known.scheme !== offered.scheme || known.params.realm !== offered.params.realm || known.params.service !== offered.params.service;
    this.challenge = offered;
    if (sent?.startsWith('Bearer ')) {
      // Expired early, or revoked: the next authorization fetches a new one.
      this.tokens.delete(scope);
      return true;
    }
    if (offered.scheme === 'basic') return (this.o.username !== undefined || this.o.credentials !== undefined) && (sent === undefined || changed);
    return true;
  }

  private async basic(): Promise<string | undefined> {
    if (this.o.credentials) {
      const c = await this.o.credentials();
      return `Basic ${Buffer.from(`${c.username}:${c.password}`).toString('base64')}`;
    }
    if (this.o.username === undefined) return undefined;
    return `Basic ${Buffer.from(`${this.o.username}:${this.o.password ?? ''}`).toString('base64')}`;
  }

  private async fetchToken(challenge: Challenge, scope: string): Promise<string> {
    let realm: URL;
    try {
      realm = new URL(challenge.params.realm ?? '');
      if (realm.protocol !== 'https:' && realm.protocol !== 'http:') throw new Error('not http(s)');
    } catch (err) {
      throw new UpstreamAuthError(`upstream token realm ${JSON.stringify(challenge.params.realm)} is not an http(s) URL`, undefined, err);
    }
    if (challenge.params.service) realm.searchParams.set('service', challenge.params.service);
    realm.searchParams.set('scope', scope);
    const headers: Record<string, string> = {};
    const basic = await this.basic();
    if (basic) {
      // The public suffix list is loaded when a realm first asks for credentials, not at start-up.
      const { realmAllowed } = await import('./realm.js');
      if (realmAllowed(new URL(this.o.remoteUrl), realm)) headers.authorization = basic;
      else this.o.onWarning?.(`not sending upstream credentials to token realm ${realm.host}: not the upstream's domain`);
    }
    this.tokenRequests++;
    const started = this.now();
    let res: { statusCode: number; body: Buffer };
    try {
      res = await boundedAnswer((await this.o.got()).stream(realm.toString(), { headers, followRedirect: false }), MAX_TOKEN_BODY);
    } catch (err) {
      if (err instanceof UpstreamAuthError) throw new UpstreamAuthError(`token realm ${realm.host}: ${err.message}`, err.status);
      throw new UpstreamUnreachableError(`token realm ${realm.host} unreachable: ${(err as Error).message}`, { cause: err });
    }
    if (res.statusCode !== 200) throw new UpstreamAuthError(`token realm ${realm.host} answered ${res.statusCode}`, res.statusCode);
    let body: { token?: unknown; access_token?: unknown; expires_in?: unknown };
    try {
      body = JSON.parse(res.body.toString('utf8')) as typeof body;
    } catch (err) {
      throw new UpstreamAuthError(`token realm ${realm.host} sent no JSON`, res.statusCode, err);
    }
    const token = typeof body.token === 'string' && body.token ? body.token : typeof body.access_token === 'string' ? body.access_token : '';
    if (!token) throw new UpstreamAuthError(`token realm ${realm.host} sent no token`, res.statusCode);
    // The token spec's default lifetime is 60 s; refresh a little early (10 s, or 10% of short lives).
    const lifetimeMs = (typeof body.expires_in === 'number' && body.expires_in > 0 ? body.expires_in : 60) * 1000;
    const margin = Math.min(10_000, lifetimeMs / 10);
    this.tokens.delete(scope);
    this.tokens.set(scope, { value: token, refreshAt: started + lifetimeMs - margin });
    for (const oldest of this.tokens.keys()) {
      if (this.tokens.size <= (this.o.maxTokens ?? DEFAULT_MAX_TOKENS)) break;
      this.tokens.delete(oldest);
    }
    return token;
  }
}

/** A realm's status and body, the body read up to `maxBytes` (more: `UpstreamAuthError`, the connection closed). */
function boundedAnswer(stream: Readable, maxBytes: number): Promise<{ statusCode: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    let statusCode = 0;
    const chunks: Buffer[] = [];
    let size = 0;
    stream.once('response', (r: { statusCode: number }) => (statusCode = r.statusCode));
    stream.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > maxBytes) {
        stream.destroy();
        reject(new UpstreamAuthError(`answer exceeds ${maxBytes} bytes`, statusCode));
        return;
      }
      chunks.push(chunk);
    });
    stream.once('end', () => resolve({ statusCode, body: Buffer.concat(chunks, size) }));
    stream.once('error', reject);
  });
}
