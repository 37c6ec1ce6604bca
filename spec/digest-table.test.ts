/**
 * The digest table the large in-memory indexes number their digests with (`DigestTable`): every
 * digest given back as it was given, sha256 digests held as bytes and any other text as it is, one
 * slot per (number, digest), slots freed and reused; and the indexes built on it (the link index,
 * the size cap's measure) answer by digest value for every kind of digest.
 */
import { DigestTable } from '../lib/distribution/digest-table.js';
import { parseDigest } from '../lib/distribution/digest.js';
import { LinkIndex } from '../lib/storage/link-index.js';
import { SizeCap } from '../lib/retention/size-cap.js';
import { createLogger } from '../lib/log/logger.js';
import type { BlobStore } from '../lib/storage/blob-store.js';
import type { StorageDriver } from '../lib/storage/driver.js';
import { PassThrough } from 'node:stream';

const sha = (c: string): string => `sha256:${c.repeat(64 / c.length)}`;

describe('DigestTable', () => {
  test('gives every digest back as it was given, under its number: sha256, upper-case hex, other algorithms, malformed text', () => {
    const table = new DigestTable();
    const given: Array<[number, string]> = [
      [0, sha('ab')],
      [1, sha('ab')],
      [0, sha('AB')],
      [0, `sha512:${'cd'.repeat(64)}`],
      [2, `sha256:${'a'.repeat(63)}`],
      [0, 'sha256:'],
      [7, ''],
    ];
    const slots = given.map(([n, d]) => table.add(n, d));
    expect(slots.every((s) => s.added)).toBe(true);
    expect(new Set(slots.map((s) => s.slot)).size).toBe(given.length);
    expect(table.size).toBe(given.length);
    given.forEach(([n, d], i) => {
      const { slot } = slots[i]!;
      expect(table.find(n, d)).toBe(slot);
      expect(table.add(n, d)).toEqual({ slot, added: false });
      expect(table.digestOf(slot)).toBe(d);
      expect(table.numberOf(slot)).toBe(n);
    });
    // A digest under another number, or in another case, is another entry.
    expect(table.find(3, sha('ab'))).toBe(-1);
    expect(table.find(0, sha('Ab'))).toBe(-1);
    expect(table.find(0, sha('ba'))).toBe(-1);
  });

  test('a freed slot is found no more and given out again; clear forgets everything', () => {
    const table = new DigestTable();
    const a = table.add(0, sha('01')).slot;
    const b = table.add(0, `sha512:${'01'.repeat(64)}`).slot;
    table.remove(a);
    table.remove(b);
    expect(table.size).toBe(0);
    expect(table.holds(a)).toBe(false);
    expect(table.find(0, sha('01'))).toBe(-1);
    expect(table.find(0, `sha512:${'01'.repeat(64)}`)).toBe(-1);
    const c = table.add(5, sha('02')).slot;
    expect([a, b]).toContain(c);
    expect(table.digestOf(c)).toBe(sha('02'));
    expect(table.extent).toBe(2);
    for (let i = 0; i < 5000; i++) table.add(i % 3, `sha256:${i.toString(16).padStart(64, '0')}`);
    expect(table.size).toBe(5001);
    expect(table.find(4999 % 3, `sha256:${(4999).toString(16).padStart(64, '0')}`)).toBeGreaterThanOrEqual(0);
    table.clear();
    expect(table.size).toBe(0);
    expect(table.find(5, sha('02'))).toBe(-1);
    expect(table.add(0, sha('03'))).toEqual({ slot: 0, added: true });
  });
});

describe('the indexes numbered by it', () => {
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
    // The slot freed is reused by the next digest, which starts with no linkers of its own.
    links.linked('d/four', sha('ef'));
    expect(links.linkers(sha('ef'))).toEqual(['d/four']);
    expect(links.linkers(values[0]!)).toEqual([]);
    expect(links.counts.repositories).toBe(3);
  });

  test("the size cap's measure counts each blob's data once, by digest value, and takes it off when forgotten", () => {
    const sizes: number[] = [];
    const cap = new SizeCap({
      // Without a cap, storing only measures: the storage is never asked.
      maxBytes: Infinity,
      driver: {} as StorageDriver,
      blobs: {} as BlobStore,
      repository: () => {
        throw new Error('not asked');
      },
      logger: createLogger({ level: 'error', formatter: 'text', fields: {}, accesslog: { disabled: true } }, new PassThrough()),
      onSize: (bytes) => sizes.push(bytes),
    });
    const digests = [sha('ab'), `sha512:${'cd'.repeat(64)}`, sha('cd')].map((v) => parseDigest(v)!);
    expect(digests.every(Boolean)).toBe(true);
    digests.forEach((d, i) => cap.stored('blob', 'a/one', d, 10 ** i));
    cap.stored('blob', 'b/two', digests[0]!, 1);
    expect(cap.bytes).toBe(111);
    cap.forget(digests[1]!);
    expect(cap.bytes).toBe(101);
    cap.forget(digests[1]!);
    expect(cap.bytes).toBe(101);
    cap.stored('blob', 'a/one', parseDigest(sha('ef'))!, 1000);
    cap.stored('blob', 'a/one', digests[1]!, 10);
    expect(cap.bytes).toBe(1111);
    expect(sizes).toEqual([1, 11, 111, 101, 1101, 1111]);
  });
});
