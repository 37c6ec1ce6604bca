/**
 * `auth.htpasswd` (distribution `registry/auth/htpasswd`): Basic credentials checked against an
 * Apache htpasswd file of bcrypt hashes (`htpasswd -Bbn user password`), re-read when it changes.
 * A missing file is created with a user `docker` and a random password, logged once, as distribution does.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import bcrypt from 'bcryptjs';
import { AuthConfigError } from '../errors.js';
import { AuthChallenge, type Access, type AccessController, type AuthRequest } from './access.js';

/**
 * bcrypt of a random password: compared against when the user is unknown, so timing tells nothing.
 * Made on first use: hashing costs ~100 ms, which a registry without `auth.htpasswd` need not pay.
 */
let dummyHash: string | undefined;
const dummy = (): string => (dummyHash ??= bcrypt.hashSync(randomBytes(16).toString('hex'), 10));

/** bcrypt's input limit: bytes past it are not part of the hash. */
const BCRYPT_MAX_BYTES = 72;

/** Verified credentials remembered at most (users times the passwords they use); past it the memory starts anew. */
const MAX_VERIFIED = 10_000;

/** Parses htpasswd text into user → hash; fails on a line without `:` (naming the line). */
function parseHtpasswd(text: string): Map<string, string> {
  const entries = new Map<string, string>();
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const colon = line.indexOf(':');
    if (colon < 0) throw new AuthConfigError(`htpasswd: invalid entry at line ${i + 1}`);
    entries.set(line.slice(0, colon), line.slice(colon + 1));
  });
  return entries;
}

/** The htpasswd access controller. */
export class HtpasswdAccessController implements AccessController {
  private entries: Map<string, string>;
  private mtimeMs: number;
  /**
   * Credentials already verified against the current file, by a hash of user, password and stored
   * hash: bcrypt costs ~100 ms in JavaScript, and a pull sends the same Basic header dozens of times.
   */
  private readonly verified = new Set<string>();

  constructor(
    private readonly options: { realm: string; path: string },
    onProvisioned?: (user: string, password: string) => void,
  ) {
    if (!exists(options.path)) {
      const password = randomBytes(32).toString('base64url');
      mkdirSync(dirname(options.path), { recursive: true, mode: 0o700 });
      writeFileSync(options.path, `docker:${bcrypt.hashSync(password, 10)}`, { mode: 0o600, flag: 'wx' });
      onProvisioned?.('docker', password);
    }
    // Read at start-up so that a malformed file fails the start, naming the line.
    this.entries = parseHtpasswd(readFileSync(options.path, 'utf8'));
    this.mtimeMs = statSync(options.path).mtimeMs;
  }

  async authorized(request: AuthRequest, _access: readonly Access[]): Promise<{ user: string }> {
    const credentials = parseBasic(request.authorization);
    if (!credentials) throw this.challenge('authorization required');
    const entries = await this.load();
    const hash = entries.get(credentials.user);
    // bcrypt reads the first 72 bytes of a password only: every longer variant verifies the same,
    // so they are one entry, not one each that a user could multiply at will.
    const verifiable = Buffer.from(credentials.password, 'utf8').subarray(0, BCRYPT_MAX_BYTES);
    const key = createHash('sha256')
      .update(`${credentials.user}\0`)
      .update(verifiable)
      .update(`\0${hash ?? ''}`)
      .digest('hex');
    if (hash !== undefined && this.verified.has(key)) return { user: credentials.user };
    const ok = await bcrypt.compare(credentials.password, hash ?? dummy());
    if (!ok || hash === undefined) throw this.challenge(`authentication failed for user ${JSON.stringify(credentials.user)}`);
    if (this.verified.size >= MAX_VERIFIED) this.verified.clear();
    this.verified.add(key);
    return { user: credentials.user };
  }

  private challenge(reason: string): AuthChallenge {
    return new AuthChallenge(`Basic realm="${this.options.realm}"`, reason);
  }

  /** The entries, re-read when the file's modification time changed. */
  private async load(): Promise<Map<string, string>> {
    // One stat per request, as distribution does, but without blocking the event loop.
    const { mtimeMs } = await stat(this.options.path);
    if (mtimeMs !== this.mtimeMs) {
      this.entries = parseHtpasswd(await readFile(this.options.path, 'utf8'));
      this.mtimeMs = mtimeMs;
      this.verified.clear();
    }
    return this.entries;
  }
}

function exists(path: string): boolean {
  try {
    statSync(path);
    return true;
  } catch {
    return false;
  }
}

/** `Basic base64(user:password)`, or undefined. */
function parseBasic(header: string | undefined): { user: string; password: string } | undefined {
  const m = /^Basic\s+([A-Za-z0-9+/=]+)$/i.exec(header?.trim() ?? '');
  if (!m) return undefined;
  const decoded = Buffer.from(m[1]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return undefined;
  return { user: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}
