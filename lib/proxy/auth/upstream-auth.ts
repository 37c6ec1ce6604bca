/**
 * Authentication to the upstream registry (distribution `registry/client/auth/session.go`): the
 * challenge is learned lazily from `GET /v2/` (the mirror must start with the upstream down),
 * Bearer tokens are fetched per repository scope, cached until shortly before they expire and
 * shared by concurrent requests; Basic is sent as is. Credentials go only to the upstream's own
 * host or a token realm on the same registrable domain.
 */
import type { Got } from 'got';
import { UpstreamError } from '../upstream-error.js';
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

/**
 * The registrable domain of a host: the last two labels, or three when the second-to-last is a
 * common second-level part under a two-letter country code (`co.uk`, `com.au`). IP addresses and
 * single-label hosts are their own domain.
 */
export function registrableDomain(host: string): string {
  if (/^[\d.]+$/.test(host) || host.includes(':') || !host.includes('.')) return host;
  const labels = host.toLowerCase().split('.');
  const n = labels.length;
  if (n >= 3 && labels[n - 1]!.length === 2 && ['co', 'com', 'org', 'net', 'gov', 'ac', 'edu'].includes(labels[n - 2]!)) {
    return labels.slice(n - 3).join('.');
  }
  return labels.slice(n - 2).join('.');
}

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
export interface UpstreamAuthOptions {
  readonly remoteUrl: string;
  readonly username?: string;
  readonly password?: string;
  /** The HTTP client (loaded lazily by the `Upstream`). */
  readonly got: () => Promise<Got>;
  readonly now?: () => number;
  readonly onWarning?: (message: string) => void;
}

/** Produces `Authorization` headers for upstream requests. */
export class UpstreamAuth {
  private challenge?: Promise<Challenge | null>;
  private readonly tokens = new Map<string, CachedToken>();
  private readonly pending = new Map<string, Promise<string>>();
  private readonly now: () => number;
  /** Token endpoint requests made (for metrics and tests). */
  tokenRequests = 0;

  constructor(private readonly o: UpstreamAuthOptions) {
    this.now = o.now ?? Date.now;
  }

  /** The header for a request needing `scope`, or undefined when the upstream needs none. */
  async authorization(scope: string): Promise<string | undefined> {
    const challenge = await this.learnChallenge();
    if (!challenge) return undefined;
    if (challenge.scheme === 'basic') return this.basic();
    if (challenge.scheme !== 'bearer') return undefined;
    const cached = this.tokens.get(scope);
    if (cached && cached.refreshAt > this.now()) return `Bearer ${cached.value}`;
    let pending = this.pending.get(scope);
    if (!pending) {
      pending = this.fetchToken(challenge, scope).finally(() => this.pending.delete(scope));
      this.pending.set(scope, pending);
    }
    return `Bearer ${await pending}`;
  }

  /** Forgets the token of `scope` after the upstream refused it (and the challenge, if it changed). */
  invalidate(scope: string, wwwAuthenticate?: string): void {
    this.tokens.delete(scope);
    if (wwwAuthenticate) {
      const next = parseChallenges(wwwAuthenticate)[0];
      void this.challenge?.then((c) => {
        if (next && (c?.scheme !== next.scheme || c?.params.realm !== next.params.realm)) this.challenge = undefined;
      });
    }
  }

  private basic(): string | undefined {
    if (this.o.username === undefined) return undefined;
    return `Basic ${Buffer.from(`${this.o.username}:${this.o.password ?? ''}`).toString('base64')}`;
  }

  private learnChallenge(): Promise<Challenge | null> {
    this.challenge ??= (async () => {
      let res;
      try {
        res = await (await this.o.got())(`${this.o.remoteUrl}/v2/`, { method: 'GET' });
      } catch (err) {
        // Not cached: the next request pings again.
        this.challenge = undefined;
        throw new UpstreamError('ERR_UPSTREAM_UNREACHABLE', `upstream ${this.o.remoteUrl} unreachable: ${(err as Error).message}`, { cause: err });
      }
      if (res.statusCode !== 401) return null;
      const challenges = parseChallenges(res.headers['www-authenticate']);
      return challenges.find((c) => c.scheme === 'bearer') ?? challenges.find((c) => c.scheme === 'basic') ?? null;
    })();
    return this.challenge;
  }

  /** May credentials go to `realm`? Only on the upstream's own registrable domain, never downgraded to http. */
  private credentialsAllowedFor(realm: URL): boolean {
    const upstream = new URL(this.o.remoteUrl);
    if (upstream.protocol === 'https:' && realm.protocol !== 'https:') return false;
    if (realm.hostname === upstream.hostname) return true;
    return registrableDomain(realm.hostname) === registrableDomain(upstream.hostname) && registrableDomain(realm.hostname).includes('.');
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
    const basic = this.basic();
    if (basic) {
      if (this.credentialsAllowedFor(realm)) headers.authorization = basic;
      else this.o.onWarning?.(`not sending upstream credentials to token realm ${realm.host}: not the upstream's domain`);
    }
    this.tokenRequests++;
    const started = this.now();
    let res;
    try {
      res = await (await this.o.got())(realm.toString(), { headers, followRedirect: false });
    } catch (err) {
      throw new UpstreamError('ERR_UPSTREAM_UNREACHABLE', `token realm ${realm.host} unreachable: ${(err as Error).message}`, { cause: err });
    }
    if (res.statusCode !== 200) throw new UpstreamAuthError(`token realm ${realm.host} answered ${res.statusCode}`, res.statusCode);
    let body: { token?: unknown; access_token?: unknown; expires_in?: unknown };
    try {
      body = JSON.parse(String(res.body)) as typeof body;
    } catch (err) {
      throw new UpstreamAuthError(`token realm ${realm.host} sent no JSON`, res.statusCode, err);
    }
    const token = typeof body.token === 'string' && body.token ? body.token : typeof body.access_token === 'string' ? body.access_token : '';
    if (!token) throw new UpstreamAuthError(`token realm ${realm.host} sent no token`, res.statusCode);
    // The token spec's default lifetime is 60 s; refresh a little early (10 s, or 10% of short lives).
    const lifetimeMs = (typeof body.expires_in === 'number' && body.expires_in > 0 ? body.expires_in : 60) * 1000;
    const margin = Math.min(10_000, lifetimeMs / 10);
    this.tokens.set(scope, { value: token, refreshAt: started + lifetimeMs - margin });
    return token;
  }
}
