/**
 * libtrust key IDs (`github.com/docker/libtrust`), which distribution's token auth matches against
 * a token's `kid` header: the SHA-256 of the public key's DER SubjectPublicKeyInfo, truncated to
 * 240 bits, base32-encoded, in twelve colon-separated groups of four.
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
