/** The sha256 digest of bytes or a string, as `sha256:<hex>`. */
import { createHash } from 'node:crypto';

export const sha256 = (b: Buffer | string): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
