/**
 * Token authentication for tests (`auth.token`): a signing key with its root certificate made by
 * openssl (the `rootcertbundle`), JWTs as distribution's token services issue them (RS256 with a
 * libtrust `kid`), and a token service on 127.0.0.1 that real clients (`docker login`, dockerd
 * pushing) talk to: Basic credentials in, the requested scopes granted as a policy allows.
 */
import { execFileSync } from 'node:child_process';
import { createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { SignJWT } from 'jose';
import { libtrustKeyId } from '../../lib/auth/key-id.js';

/** One access entry of a token (`{type: 'repository', name: 'internal/app', actions: ['pull']}`). */
export interface TokenAccess {
  readonly type?: string;
  /** The resource's class (`plugin`), as a scope's `repository(plugin)` asks. */
  readonly class?: string;
  readonly name: string;
  readonly actions: readonly string[];
}

/** Signs tokens with a key whose certificate is `rootCertPath`. */
export interface TokenIssuer {
  readonly issuer: string;
  readonly rootCertPath: string;
  /** A token for `service` (default `test-service`) granting `access` (type `repository` unless given). */
  sign(access: readonly TokenAccess[], opts?: { service?: string; subject?: string; ttlSeconds?: number }): Promise<string>;
  /** The `auth:` YAML of a registry trusting this issuer. */
  authYaml(realm: string, service?: string): string;
}

/** Makes an RSA signing key and its self-signed certificate in `dir` with openssl. */
export function makeTokenIssuer(dir: string, issuer = 'test-issuer'): TokenIssuer {
  execFileSync(
    'openssl',
    ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'root.key', '-out', 'root.pem', '-days', '2', '-subj', '/CN=token root'],
    {
      cwd: dir,
      stdio: 'ignore',
    },
  );
  const key: KeyObject = createPrivateKey(readFileSync(join(dir, 'root.key'), 'utf8'));
  const kid = libtrustKeyId(createPublicKey(key));
  const rootCertPath = join(dir, 'root.pem');
  return {
    issuer,
    rootCertPath,
    sign: (access, o = {}) => {
      const now = Math.floor(Date.now() / 1000);
      return new SignJWT({ access: access.map((a) => ({ type: 'repository', ...a })) })
        .setProtectedHeader({ typ: 'JWT', alg: 'RS256', kid })
        .setIssuer(issuer)
        .setAudience(o.service ?? 'test-service')
        .setSubject(o.subject ?? 'carol')
        .setIssuedAt(now)
        .setNotBefore(now)
        .setExpirationTime(now + (o.ttlSeconds ?? 300))
        .sign(key);
    },
    authYaml: (realm, service = 'test-service') =>
      `auth:\n  token:\n    realm: ${realm}\n    service: ${service}\n    issuer: ${issuer}\n    rootcertbundle: ${rootCertPath}`,
  };
}

/** A running token service. */
export interface TokenServer {
  /** The `realm` to configure (`http://127.0.0.1:<port>/token`). */
  readonly realm: string;
  /** Every token request: the user (undefined when anonymous or refused) and the scopes asked. */
  readonly requests: Array<{ user?: string; scopes: string[] }>;
  close(): Promise<void>;
}

/**
 * Starts a token service: `GET /token?service=&scope=...` with Basic credentials among `users`
 * (anonymous requests too when `anonymous` is set) answers `{token, access_token}` granting of each
 * requested `repository:<name>:<actions>` scope what `allow(user, name, action)` permits; wrong
 * credentials get 401.
 */
export async function startTokenServer(
  issuer: TokenIssuer,
  o: { service?: string; users: Record<string, string>; allow: (user: string | undefined, name: string, action: string) => boolean; anonymous?: boolean },
): Promise<TokenServer> {
  const requests: TokenServer['requests'] = [];
  const server = http.createServer((req, res) => {
    void (async () => {
      const url = new URL(req.url ?? '/', 'http://token.invalid');
      const scopes = url.searchParams
        .getAll('scope')
        .flatMap((s) => s.split(' '))
        .filter(Boolean);
      const m = /^Basic (.+)$/i.exec(req.headers.authorization ?? '');
      const [user, password] = m ? Buffer.from(m[1]!, 'base64').toString('utf8').split(/:(.*)/s) : [undefined, undefined];
      const known = user !== undefined && o.users[user] !== undefined && o.users[user] === password;
      if (url.pathname !== '/token' || (user !== undefined && !known) || (user === undefined && !o.anonymous)) {
        requests.push({ scopes });
        res.writeHead(401, { 'content-type': 'application/json' }).end(JSON.stringify({ details: 'incorrect username or password' }));
        return;
      }
      requests.push({ user, scopes });
      const access: TokenAccess[] = [];
      for (const scope of scopes) {
        // `repository:<name>:<a,b>`; names never hold a colon, the type may carry a class.
        const parts = scope.split(':');
        if (parts.length !== 3 || !parts[0]!.startsWith('repository')) continue;
        const actions = parts[2]!.split(',').filter((a) => o.allow(user, parts[1]!, a));
        if (actions.length > 0) access.push({ name: parts[1]!, actions });
      }
      const token = await issuer.sign(access, { service: o.service, subject: user ?? '' });
      res
        .writeHead(200, { 'content-type': 'application/json' })
        .end(JSON.stringify({ token, access_token: token, expires_in: 300, issued_at: new Date().toISOString() }));
    })().catch(() => res.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    realm: `http://127.0.0.1:${(server.address() as AddressInfo).port}/token`,
    requests,
    close: () =>
      new Promise((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
