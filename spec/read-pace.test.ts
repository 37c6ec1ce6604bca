/**
 * The chunk size of a client of a stored file (`chunkFor`, lib/storage/driver.ts): small until it has taken
 * `GROW_AFTER` bytes, then large while its average rate is `FAST_CLIENT` or more, small again when
 * its average falls below.
 */
import { chunkFor, FAST_CLIENT, GROW_AFTER } from '../lib/storage/driver.js';

const SMALL = 64 * 1024;
const LARGE = 256 * 1024;

describe("a reader's chunk size", () => {
  test('small for the first GROW_AFTER bytes, however fast', () => {
    expect(chunkFor(0, 0, SMALL, LARGE)).toBe(SMALL);
    expect(chunkFor(GROW_AFTER - 1, 1, SMALL, LARGE)).toBe(SMALL);
  });

  test('large past GROW_AFTER at FAST_CLIENT or more, small below it', () => {
    const ms = (bytes: number, perSecond: number): number => (bytes / perSecond) * 1000;
    expect(chunkFor(GROW_AFTER, ms(GROW_AFTER, FAST_CLIENT), SMALL, LARGE)).toBe(LARGE);
    expect(chunkFor(GROW_AFTER, ms(GROW_AFTER, FAST_CLIENT) + 1, SMALL, LARGE)).toBe(SMALL);
    expect(chunkFor(GROW_AFTER * 4, ms(GROW_AFTER * 4, FAST_CLIENT * 10), SMALL, LARGE)).toBe(LARGE);
    // A client that slowed down: its average since the start falls below, and it is small again.
    expect(chunkFor(GROW_AFTER * 4, ms(GROW_AFTER * 4, FAST_CLIENT / 2), SMALL, LARGE)).toBe(SMALL);
  });
});
