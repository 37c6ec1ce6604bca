/**
 * The compact keys of the large in-memory maps (`digestKey`): one key per digest value, never the
 * same key for two values, and the maps keyed by them (the link index) answer as before for every
 * kind of digest.
 */
import { digestKey } from '../lib/distribution/digest.js';
import { LinkIndex } from '../lib/storage/link-index.js';

const sha = (c: string): string => `sha256:${c.repeat(64 / c.length)}`;

describe('digestKey', () => {
  test('a sha256 value becomes 33 one-byte characters; other values stay as they are', () => {
    expect(digestKey(sha('ab'))).toHaveLength(33);
    expect(
      Buffer.from(digestKey(sha('ab')), 'latin1')
        .subarray(1)
        .toString('hex'),
    ).toBe('ab'.repeat(32));
    for (const other of [`sha512:${'c'.repeat(128)}`, sha('AB'), `sha256:${'a'.repeat(63)}`, `sha256:${'g'.repeat(64)}`, 'sha256:', ''])
      expect(digestKey(other)).toBe(other);
  });

  test('distinct values give distinct keys, the same value the same key', () => {
    const values = [sha('ab'), sha('AB'), sha('ba'), sha('00'), sha('0f'), `sha512:${'ab'.repeat(64)}`];
    const keys = values.map(digestKey);
    expect(new Set(keys).size).toBe(values.length);
    expect(values.map(digestKey)).toEqual(keys);
  });

  test('the link index answers by digest value for every kind of digest', () => {
    const links = new LinkIndex();
    const values = [sha('ab'), sha('AB'), `sha512:${'cd'.repeat(64)}`];
    links.linked('a/one', values[0]!);
    links.linked('b/two', values[0]!);
    links.linked('a/one', values[1]!);
    links.linked('c/three', values[2]!);
    links.markBuilt();
    expect(links.linkers(values[0]!)).toEqual(['a/one', 'b/two']);
    expect(links.linkers(values[1]!)).toEqual(['a/one']);
    expect(links.linkers(values[2]!)).toEqual(['c/three']);
    expect(links.linkers(sha('ba'))).toEqual([]);
    links.unlinked('a/one', values[0]!);
    expect(links.linkers(values[0]!)).toEqual(['b/two']);
    links.unlinked('b/two', values[0]!);
    expect(links.linkers(values[0]!)).toEqual([]);
    expect(links.counts.repositories).toBe(2);
  });
});
