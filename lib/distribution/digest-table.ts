/**
 * Slot numbers for digests, without a string or a map entry per digest: a company mirror's indexes
 * (the schedule, who links each blob, each blob's size) hold hundreds of thousands to a million
 * digests, which as V8 strings in `Map`s cost about 100 bytes each. Here a sha256 digest (`sha256:`
 * and 64 lower-case hex) is its 32 bytes in a typed array, with a number it is held under (a
 * repository's, for keys of the schedule; 0 where the digest alone is the key), found through an
 * open-addressing table of slot numbers: 44 bytes each. Any other digest text (another algorithm,
 * upper-case hex: another digest for distribution too) is held as a string in a map of its own.
 *
 * The holder keeps what it knows of each digest in its own arrays, indexed by the slot number.
 */

import { packSha256Hex } from './digest.js';

/** A slot no digest holds. */
const FREE = -1;
/** A slot whose digest is held as its text (`others`). */
const TEXT = -2;
const SHA256 = 'sha256:';

/** Slot numbers for (number, digest) pairs. Slot numbers are dense: a freed one is given out again first. */
export class DigestTable {
  /** The number each slot's digest is held under, or `FREE`, or `TEXT`. */
  private under = new Int32Array(1024).fill(FREE);
  /** Each slot's sha256 digest, 8 words a slot. */
  private words = new Int32Array(1024 * 8);
  /** Slot + 1 of the sha256 digests, by hash; 0 is empty (linear probing, at most half full). */
  private table = new Int32Array(2048);
  private inTable = 0;
  private next = 0;
  private readonly freeSlots: number[] = [];
  /** Digests held as text, by `<number>/<text>`, and their slots' keys. */
  private readonly others = new Map<string, number>();
  private readonly otherKeys = new Map<number, string>();
  /** The digest being looked up: the hex is written as bytes, compared as words. */
  private readonly wanted = new Int32Array(8);
  private readonly wantedBytes = Buffer.from(this.wanted.buffer);

  /** The number of digests held. */
  get size(): number {
    return this.inTable + this.others.size;
  }

  /** One past the highest slot number given out so far (the length a slot-indexed array needs). */
  get extent(): number {
    return this.next;
  }

  /** The slot of `digest` held under `n` (0 or more), or -1. */
  find(n: number, digest: string): number {
    return this.parse(digest) ? this.probe(n) : (this.others.get(`${n}/${digest}`) ?? -1);
  }

  /** The slot of `digest` under `n` (0 or more), given a new one if it has none (`added` then). */
  add(n: number, digest: string): { slot: number; added: boolean } {
    if (!this.parse(digest)) {
      const key = `${n}/${digest}`;
      const s = this.others.get(key);
      if (s !== undefined) return { slot: s, added: false };
      const slot = this.allocate(TEXT);
      this.others.set(key, slot);
      this.otherKeys.set(slot, key);
      return { slot, added: true };
    }
    const s = this.probe(n);
    if (s >= 0) return { slot: s, added: false };
    const slot = this.allocate(n);
    this.words.set(this.wanted, slot * 8);
    if (2 * ++this.inTable > this.table.length) this.rehash(this.table.length * 2);
    else this.place(slot);
    return { slot, added: true };
  }

  /** Frees `slot`. */
  remove(slot: number): void {
    const n = this.under[slot]!;
    if (n === FREE) return;
    if (n === TEXT) {
      this.others.delete(this.otherKeys.get(slot)!);
      this.otherKeys.delete(slot);
    } else {
      this.unplace(slot);
      this.inTable--;
    }
    this.under[slot] = FREE;
    this.freeSlots.push(slot);
  }

  /** Whether `slot` holds a digest. */
  holds(slot: number): boolean {
    return slot < this.next && this.under[slot] !== FREE;
  }

  /** The number `slot`'s digest is held under. */
  numberOf(slot: number): number {
    const n = this.under[slot]!;
    if (n !== TEXT) return n;
    const key = this.otherKeys.get(slot)!;
    return Number(key.slice(0, key.indexOf('/')));
  }

  /** The digest of `slot`, spelt as it was given. */
  digestOf(slot: number): string {
    if (this.under[slot] !== TEXT) return `${SHA256}${Buffer.from(this.words.buffer, slot * 32, 32).toString('hex')}`;
    const key = this.otherKeys.get(slot)!;
    return key.slice(key.indexOf('/') + 1);
  }

  /** Forgets every digest. */
  clear(): void {
    this.under.fill(FREE);
    this.table.fill(0);
    this.inTable = this.next = 0;
    this.freeSlots.length = 0;
    this.others.clear();
    this.otherKeys.clear();
  }

  /** True, with its bytes in `wanted`, when `digest` is a sha256 digest's text. */
  private parse(digest: string): boolean {
    return digest.length === SHA256.length + 64 && digest.startsWith(SHA256) && packSha256Hex(digest.slice(SHA256.length), this.wantedBytes, 0);
  }

  private allocate(n: number): number {
    let slot = this.freeSlots.pop();
    if (slot === undefined) {
      slot = this.next++;
      if (slot >= this.under.length) {
        const under = new Int32Array(this.under.length * 2).fill(FREE);
        under.set(this.under);
        this.under = under;
        const words = new Int32Array(this.words.length * 2);
        words.set(this.words);
        this.words = words;
      }
    }
    this.under[slot] = n;
    return slot;
  }

  /** The table position a digest under `n` whose first words are `w0`, `w1` starts its probe at. */
  private home(n: number, w0: number, w1: number): number {
    // The digest is a hash already; mixing in `n` keeps one digest under many numbers apart.
    return (Math.imul(w0 ^ Math.imul(n, 0x9e3779b1), 0x85ebca6b) ^ w1) & (this.table.length - 1);
  }

  /** The slot holding the digest in `wanted` under `n`, or -1. */
  private probe(n: number): number {
    const t = this.table;
    const w = this.wanted;
    const d = this.words;
    const mask = t.length - 1;
    for (let i = this.home(n, w[0]!, w[1]!); ; i = (i + 1) & mask) {
      const entry = t[i]!;
      if (entry === 0) return -1;
      const s = entry - 1;
      const o = s * 8;
      if (
        this.under[s] === n &&
        d[o] === w[0] &&
        d[o + 1] === w[1] &&
        d[o + 2] === w[2] &&
        d[o + 3] === w[3] &&
        d[o + 4] === w[4] &&
        d[o + 5] === w[5] &&
        d[o + 6] === w[6] &&
        d[o + 7] === w[7]
      )
        return s;
    }
  }

  private homeOf(slot: number): number {
    return this.home(this.under[slot]!, this.words[slot * 8]!, this.words[slot * 8 + 1]!);
  }

  private place(slot: number): void {
    const mask = this.table.length - 1;
    let i = this.homeOf(slot);
    while (this.table[i] !== 0) i = (i + 1) & mask;
    this.table[i] = slot + 1;
  }

  /** Takes `slot` out of the table, moving later digests of its run back (no tombstones to pile up). */
  private unplace(slot: number): void {
    const t = this.table;
    const mask = t.length - 1;
    let hole = this.homeOf(slot);
    while (t[hole] !== slot + 1) hole = (hole + 1) & mask;
    for (let j = (hole + 1) & mask; t[j] !== 0; j = (j + 1) & mask) {
      const h = this.homeOf(t[j]! - 1);
      // The digest at j may fill the hole unless its home lies cyclically in (hole, j].
      if (hole <= j ? h <= hole || h > j : h <= hole && h > j) {
        t[hole] = t[j]!;
        hole = j;
      }
    }
    t[hole] = 0;
  }

  private rehash(size: number): void {
    this.table = new Int32Array(size);
    for (let s = 0; s < this.next; s++) if (this.under[s]! >= 0) this.place(s);
  }
}
