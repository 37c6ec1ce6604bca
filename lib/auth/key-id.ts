/**
 * The key IDs distribution's token auth matches against a token's `kid` header for the keys of its
 * `rootcertbundle`: 2.8's libtrust IDs (`github.com/docker/libtrust`: the SHA-256 of the public
 * key's DER SubjectPublicKeyInfo, truncated to 240 bits, base32-encoded, in twelve colon-separated
 * groups of four) and 3.x's JWK thumbprints (RFC 7638, `GetJWKThumbprint`).
 */
import { createHash, type KeyObject } from 'node:crypto';

const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

/** The libtrust key ID of a public key. */
export function libtrustKeyId(key: KeyObject): string {
  const der = key.export({ type: 'spki', format: 'der' });
  const digest = createHash('sha256').update(der).digest().subarray(0, 30);
  let bits = 0;
  let value = 0;
  let out = '';
  for (const byte of digest) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += BASE32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  return out.match(/.{4}/g)!.join(':');
}

/** Base64url of the big-endian integer `b64url` holds, leading zero bytes dropped (Go's `big.Int.Bytes`). */
function minimal(b64url: string): string {
  const bytes = Buffer.from(b64url, 'base64url');
  let i = 0;
  while (i < bytes.length - 1 && bytes[i] === 0) i++;
  return bytes.subarray(i).toString('base64url');
}

/**
 * The JWK thumbprint of a public key as distribution 3 computes it (`GetJWKThumbprint`): RFC 7638's
 * members in lexicographic order, hashed with SHA-256, base64url; numbers written without leading
 * zero bytes, as Go's `big.Int` gives them. Undefined for a key of another kind.
 */
export function jwkThumbprint(key: KeyObject): string | undefined {
  const jwk = key.export({ format: 'jwk' });
  let payload: string;
  if (jwk.kty === 'RSA') payload = `{"e":"${minimal(jwk.e!)}","kty":"RSA","n":"${minimal(jwk.n!)}"}`;
  else if (jwk.kty === 'EC') payload = `{"crv":"${jwk.crv}","kty":"EC","x":"${minimal(jwk.x!)}","y":"${minimal(jwk.y!)}"}`;
  else if (jwk.kty === 'OKP' && jwk.crv === 'Ed25519') payload = `{"crv":"Ed25519","kty":"OKP","x":"${jwk.x}"}`;
  else return undefined;
  return createHash('sha256').update(payload).digest('base64url');
}
