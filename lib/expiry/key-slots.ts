/**
 * The schedule's keys, each numbered as a slot, without a string or a map entry per key: a company
 * mirror's schedule holds a million keys `repository@sha256:<64 hex>`, which as V8 strings in a
 * `Map` cost about 100 bytes each. Here a key of that shape is its repository's number (the name is
 * held once, counted, and its number reused once no key holds it) and its digest's 32 bytes, in
 * typed arrays, found through an open-addressing table of slot numbers: 44 bytes a key. Any other
 * shape (another algorithm, upper-case hex) is held as its own string in a map of its own.
 */

import { packSha256Hex } from '../distribution/digest.js';

const SHA256 = '@sha256:';
/** A slot no key holds. */
const FREE = -1;
/** A slot whose key has another shape (in `others`). */
const OTHER = -2;

/** Keys to slot numbers and back. Slot numbers are dense: a freed one is given out again first. */
export class KeySlots {
  /** The repository's number of each slot, or `FREE`, or `OTHER`. */
  private owner = new Int32Array(1024).fill(FREE);
  /** Each slot's digest, 8 words a slot. */
  private digest = new Int32Array(1024 * 8);
  /** Slot + 1 of the keys of the compact shape, by hash; 0 is empty (linear probing). */
  private table = new Int32Array(2048);
  private inTable = 0;
  private next = 0;
  private readonly freeSlots: number[] = [];
  /** Keys of other shapes, both ways. */
  private readonly others = new Map<string, number>();
  private readonly otherKeys = new Map<number, string>();
  /** Repository numbers by name, and each number's name and count of keys. */
  private readonly ids = new Map<string, number>();
  private names: Array<string | undefined> = [];
  private holders: number[] = [];
  private readonly freeIds: number[] = [];
  /** The digest of the key being looked up: its bytes written as hex is parsed, read as words. */
  private readonly words = new Int32Array(8);
  private readonly bytes = Buffer.from(this.words.buffer);

  /** The number of keys held. */
  get size(): number {
    return this.inTable + this.others.size;
  }

  /** One past the highest slot number given out so far (the length a slot-indexed array needs). */
  get extent(): number {
    return this.next;
  }

  /** The slot of `key`, or -1. */
  find(key: string): number {
    const at = this.split(key);
    if (at < 0) return this.others.get(key) ?? -1;
    const id = this.ids.get(key.slice(0, at));
    return id === undefined ? -1 : this.probe(id);
  }

  /** The slot of `key`, given a new one if it has none (true in `added` then). */
  add(key: string): { slot: number; added: boolean } {
    const at = this.split(key);
    if (at < 0) {
      const s = this.others.get(key);
      if (s !== undefined) return { slot: s, added: false };
      const slot = this.allocate(OTHER);
      this.others.set(key, slot);
      this.otherKeys.set(slot, key);
      return { slot, added: true };
    }
    const repository = key.slice(0, at);
    let id = this.ids.get(repository);
    if (id !== undefined) {
      const s = this.probe(id);
      if (s >= 0) return { slot: s, added: false };
    } else {
      this.ids.set(repository, (id = this.freeIds.pop() ?? this.names.length));
      this.names[id] = repository;
    }
    this.holders[id] = (this.holders[id] ?? 0) + 1;
    const slot = this.allocate(id);
    this.digest.set(this.words, slot * 8);
    if (2 * ++this.inTable > this.table.length) this.rehash(this.table.length * 2);
    else this.place(slot);
    return { slot, added: true };
  }

  /** Frees `slot` (its key is no longer held). */
  remove(slot: number): void {
    const id = this.owner[slot]!;
    if (id === FREE) return;
    if (id === OTHER) {
      this.others.delete(this.otherKeys.get(slot)!);
      this.otherKeys.delete(slot);
    } else {
      this.unplace(slot);
      this.inTable--;
      if (--this.holders[id]! === 0) {
        this.ids.delete(this.names[id]!);
        this.names[id] = undefined;
        this.freeIds.push(id);
      }
    }
    this.owner[slot] = FREE;
    this.freeSlots.push(slot);
  }

  /** The key of `slot`, spelt as it was given. */
  keyOf(slot: number): string {
    const id = this.owner[slot]!;
    if (id < 0) return this.otherKeys.get(slot)!;
    return `${this.names[id]!}${SHA256}${Buffer.from(this.digest.buffer, slot * 32, 32).toString('hex')}`;
  }

  /** Whether `slot` holds a key. */
  holds(slot: number): boolean {
    return slot < this.next && this.owner[slot] !== FREE;
  }

  /** Forgets every key. */
  clear(): void {
    this.owner.fill(FREE);
    this.table.fill(0);
    this.inTable = this.next = 0;
    this.freeSlots.length = 0;
    this.others.clear();
    this.otherKeys.clear();
    this.ids.clear();
    this.names = [];
    this.holders = [];
    this.freeIds.length = 0;
  }

  /** Where `@sha256:` starts in a key of the compact shape (its digest then parsed into `words`), or -1. */
  private split(key: string): number {
    const at = key.length - SHA256.length - 64;
    if (at <= 0 || !key.startsWith(SHA256, at)) return -1;
    return packSha256Hex(key.slice(at + SHA256.length), this.bytes, 0) ? at : -1;
  }

  private allocate(owner: number): number {
    let slot = this.freeSlots.pop();
    if (slot === undefined) {
      slot = this.next++;
      if (slot >= this.owner.length) {
        const owners = new Int32Array(this.owner.length * 2).fill(FREE);
        owners.set(this.owner);
        this.owner = owners;
        const digests = new Int32Array(this.digest.length * 2);
        digests.set(this.digest);
        this.digest = digests;
      }
    }
    this.owner[slot] = owner;
    return slot;
  }

  /** The table position a key of repository `id` and digest words `w0`, `w1` starts its probe at. */
  private home(id: number, w0: number, w1: number): number {
    // The digest is a hash already; mixing keeps one digest under many repositories apart.
    return (Math.imul(w0 ^ Math.imul(id, 0x9e3779b1), 0x85ebca6b) ^ w1) & (this.table.length - 1);
  }

  /** The slot holding repository `id` and the digest in `words`, or -1. */
  private probe(id: number): number {
    const t = this.table;
    const w = this.words;
    const d = this.digest;
    const mask = t.length - 1;
    for (let i = this.home(id, w[0]!, w[1]!); ; i = (i + 1) & mask) {
      const entry = t[i]!;
      if (entry === 0) return -1;
      const s = entry - 1;
      const o = s * 8;
      if (
        this.owner[s] === id &&
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
    return this.home(this.owner[slot]!, this.digest[slot * 8]!, this.digest[slot * 8 + 1]!);
  }

  private place(slot: number): void {
    const mask = this.table.length - 1;
    let i = this.homeOf(slot);
    while (this.table[i] !== 0) i = (i + 1) & mask;
    this.table[i] = slot + 1;
  }

  /** Takes `slot` out of the table, moving later keys of its run back (no tombstones to pile up). */
  private unplace(slot: number): void {
    const t = this.table;
    const mask = t.length - 1;
    let hole = this.homeOf(slot);
    while (t[hole] !== slot + 1) hole = (hole + 1) & mask;
    for (let j = (hole + 1) & mask; t[j] !== 0; j = (j + 1) & mask) {
      const h = this.homeOf(t[j]! - 1);
      // The key at j may fill the hole unless its home lies cyclically in (hole, j].
      if (hole <= j ? h <= hole || h > j : h <= hole && h > j) {
        t[hole] = t[j]!;
        hole = j;
      }
    }
    t[hole] = 0;
  }

  private rehash(size: number): void {
    this.table = new Int32Array(size);
    for (let s = 0; s < this.next; s++) if (this.owner[s]! >= 0) this.place(s);
  }
}
