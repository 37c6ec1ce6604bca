/**
 * `auth.token` (distribution `registry/auth/token`): Bearer JWTs issued by an external token
 * service, verified against `rootcertbundle` (an `x5c` chain to one of its certificates, an
 * embedded `jwk`, or a `kid` naming one of their keys: by its libtrust ID as 2.8, or its JWK
 * thumbprint as 3.x) and distribution 3's `jwks` (a key set file, its keys named by `kid`), with
 * the `signingalgorithms` allowed, `issuer`, `service` (the audience) and expiry with
 * distribution's 60 s leeway, then checked for the access each request needs. Signatures and
 * claims are verified by `jose`; the certificate chain by node's X509Certificate.
 */
import { X509Certificate, createPublicKey, type JsonWebKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { jwtVerify, type JWTPayload, type JWSHeaderParameters } from 'jose';
import { AuthConfigError } from '../errors.js';
import { AuthChallenge, scopeParam, type Access, type AccessController, type AuthRequest, type Grant, type GrantedResource } from './access.js';
import { jwkThumbprint, libtrustKeyId } from './key-id.js';

/** `auth.token` options. */
export interface TokenOptions {
  readonly realm: string;
  readonly service: string;
  readonly issuer: string;
  /** This or `jwks`, or both. */
  readonly rootcertbundle?: string;
  readonly jwks?: string;
  readonly autoredirect?: boolean;
  /** The realm's path with `autoredirect`. */
  readonly autoredirectpath: string;
  /** The algorithms a token may be signed with (`jose` refuses an HMAC one with a public key). */
  readonly signingalgorithms: readonly string[];
}

interface TokenClaims extends JWTPayload {
  readonly access?: Array<{ type?: string; class?: string; name?: string; actions?: string[] }>;
}

/**
 * The resources a token's claims name, each once (distribution's `ClaimSet.resources`): what
 * `policy.repository.classes` checks a push's manifest class against.
 */
function resourcesOf(claims: TokenClaims): GrantedResource[] {
  const seen = new Map<string, GrantedResource>();
  for (const a of claims.access ?? []) {
    const r = { type: str(a.type), class: str(a.class), name: str(a.name) };
    seen.set(JSON.stringify([r.type, r.class, r.name]), r);
  }
  return [...seen.values()];
}

const str = (v: unknown): string => (typeof v === 'string' ? v : '');

/** distribution's `Leeway` for `exp` and `nbf`. */
const LEEWAY_SECONDS = 60;
/** Reads the PEM certificates of a bundle; fails (naming the file) when there are none. */
function readRootCertificates(path: string): X509Certificate[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new AuthConfigError(`unable to open token auth root certificate bundle file ${JSON.stringify(path)}: ${(err as Error).message}`, { cause: err });
  }
  const pems = text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (pems.length === 0) throw new AuthConfigError('token auth requires at least one token signing root certificate');
  return pems.map((pem) => new X509Certificate(pem));
}

/**
 * The keys of a JSON Web Key Set file by their `kid`. A key without one cannot be named by a token,
 * and a symmetric (`oct`) one has no public part: distribution trusts neither, nor do we.
 */
function readJwks(path: string): Map<string, KeyObject> {
  let set: { keys?: unknown };
  try {
    set = JSON.parse(readFileSync(path, 'utf8')) as { keys?: unknown };
  } catch (err) {
    throw new AuthConfigError(`unable to read token jwks file ${JSON.stringify(path)}: ${(err as Error).message}`, { cause: err });
  }
  if (!Array.isArray(set?.keys)) throw new AuthConfigError(`failed to parse jwks ${JSON.stringify(path)}: no "keys" list`);
  const keys = new Map<string, KeyObject>();
  for (const jwk of set.keys as (JsonWebKey & { kid?: unknown })[]) {
    if (typeof jwk?.kid !== 'string' || jwk.kid === '' || jwk.kty === 'oct') continue;
    try {
      keys.set(jwk.kid, createPublicKey({ key: jwk, format: 'jwk' }));
    } catch (err) {
      throw new AuthConfigError(`failed to parse jwks ${JSON.stringify(path)}: key ${JSON.stringify(jwk.kid)}: ${(err as Error).message}`, { cause: err });
    }
  }
  return keys;
}

/** The token access controller. */
export class TokenAccessController implements AccessController {
  private readonly roots: X509Certificate[];
  private readonly trustedKeys: Map<string, KeyObject>;

  constructor(private readonly options: TokenOptions) {
    this.roots = options.rootcertbundle ? readRootCertificates(options.rootcertbundle) : [];
    this.trustedKeys = new Map();
    for (const { publicKey } of this.roots) {
      // A token service of 2.8's time names a key by its libtrust ID, one of 3.x's by its thumbprint.
      this.trustedKeys.set(libtrustKeyId(publicKey), publicKey);
      const thumbprint = jwkThumbprint(publicKey);
      if (thumbprint) this.trustedKeys.set(thumbprint, publicKey);
    }
    if (options.jwks) for (const [kid, key] of readJwks(options.jwks)) this.trustedKeys.set(kid, key);
    if (this.trustedKeys.size === 0) throw new AuthConfigError('token auth requires at least one token signing key');
  }

  async authorized(request: AuthRequest, access: readonly Access[]): Promise<Grant> {
    const m = /^Bearer ([^\s]+)$/i.exec(request.authorization?.trim() ?? '');
    if (!m) throw this.challenge(request, access, undefined, 'authorization token required');
    let claims: TokenClaims;
    try {
      const verified = await jwtVerify<TokenClaims>(m[1]!, (header) => this.signingKey(header), {
        issuer: this.options.issuer,
        audience: this.options.service,
        clockTolerance: LEEWAY_SECONDS,
        algorithms: [...this.options.signingalgorithms],
        requiredClaims: ['exp'],
      });
      claims = verified.payload;
    } catch (err) {
      throw this.challenge(request, access, 'invalid_token', (err as Error).message);
    }
    for (const a of access) {
      const granted = (claims.access ?? []).some((g) => g.type === a.type && g.name === a.name && (g.actions ?? []).some((x) => x === a.action || x === '*'));
      if (!granted) throw this.challenge(request, access, 'insufficient_scope', `token does not grant ${a.type}:${a.name}:${a.action}`);
    }
    return { user: typeof claims.sub === 'string' ? claims.sub : '', resources: resourcesOf(claims) };
  }

  /** The key that must have signed the token, per distribution's `VerifySigningKey`. */
  private signingKey(header: JWSHeaderParameters): KeyObject {
    if (header.x5c && header.x5c.length > 0) return this.verifyChain(header.x5c);
    if (header.jwk) {
      const x5c = (header.jwk as { x5c?: unknown }).x5c;
      const chained = Array.isArray(x5c) && x5c.length > 0;
      // distribution 3: a JWK without a chain whose `kid` names a trusted key is that key.
      const named = typeof header.jwk.kid === 'string' ? this.trustedKeys.get(header.jwk.kid) : undefined;
      if (named && !chained) return named;
      const key = createPublicKey({ key: header.jwk as JsonWebKey, format: 'jwk' });
      if (chained && x5c.every((c) => typeof c === 'string' && c)) {
        const leaf = this.verifyChain(x5c as string[]);
        if (libtrustKeyId(leaf) !== libtrustKeyId(key)) throw new Error('leaf certificate public key ID does not match JWK key ID');
        return key;
      }
      if (!this.trustedKeys.has(libtrustKeyId(key))) throw new Error('untrusted JWK with no certificate chain');
      return key;
    }
    if (header.kid) {
      const key = this.trustedKeys.get(header.kid);
      if (!key) throw new Error(`token signed by untrusted key with ID: ${JSON.stringify(header.kid)}`);
      return key;
    }
    throw new Error('unable to get token signing key');
  }

  /** Verifies an `x5c` chain (leaf first) up to a root of the bundle; returns the leaf's key. */
  private verifyChain(x5c: string[]): KeyObject {
    const certs = x5c.map((b64) => new X509Certificate(Buffer.from(b64, 'base64')));
    const now = Date.now();
    const valid = (c: X509Certificate): boolean => Date.parse(c.validFrom) <= now && now <= Date.parse(c.validTo);
    const issues = (issuer: X509Certificate, c: X509Certificate): boolean => c.checkIssued(issuer) && c.verify(issuer.publicKey);
    let current = certs[0]!;
    const intermediates = certs.slice(1);
    for (let depth = 0; depth <= intermediates.length; depth++) {
      if (!valid(current)) throw new Error(`certificate ${current.subject} is not valid now`);
      if (this.roots.some((r) => r.fingerprint256 === current.fingerprint256 || (valid(r) && issues(r, current)))) return certs[0]!.publicKey;
      const next = intermediates.find((c) => c.ca && issues(c, current));
      if (!next) break;
      current = next;
    }
    throw new Error('unable to verify certificate chain');
  }

  private challenge(request: AuthRequest, access: readonly Access[], error: 'invalid_token' | 'insufficient_scope' | undefined, reason: string): AuthChallenge {
    // As distribution 3: the scheme a proxy in front says it was reached by, else https.
    const realm = this.options.autoredirect
      ? `${request.forwardedProto ?? 'https'}://${request.host ?? ''}${this.options.autoredirectpath}`
      : this.options.realm;
    const scope = scopeParam(access);
    let header = `Bearer realm="${realm}",service="${this.options.service}"`;
    if (scope) header += `,scope="${scope}"`;
    if (error) header += `,error="${error}"`;
    return new AuthChallenge(header, reason);
  }
}
