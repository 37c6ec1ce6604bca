/**
 * Slot numbers for digests, without a string or a map entry per digest: a company mirror's indexes
 * (the schedule, who links each blob, each blob's size) hold hundreds of thousands to a million
 * digests, which as V8 strings in `Map`s cost about 100 bytes each. Here a sha256 digest (`sha256:`
 * and 64 lower-case hex) is its 32 bytes in a typed array beside the number it is held under (a
 * repository's, for keys of the schedule; 0 where the digest alone is the key), found through an
 * open-addressing table of slot numbers: 45 bytes each. A lookup reads the table and one record
 * (the digest and its number side by side): at a million digests each read is a cache miss, so
 * what one lookup touches is kept to those two. Any other digest text (another algorithm,
 * upper-case hex: another digest for distribution too) is held as a string in a map of its own.
 *
 * The holder keeps what it knows of each digest in its own arrays, indexed by the slot number.
 */

/** The typed arrays kept by slot number, here and by the table's holders. */
export type SlotArray = Float64Array | Int32Array | Uint32Array | Uint8Array;

/** `a` copied into a new array of its kind, `length` long (a slot array that has filled up). */
export function grown<T extends SlotArray>(a: T, length: number): T {
  const b = new (a.constructor as new (n: number) => T)(length);
  b.set(a);
  return b;
}

/** A slot's state: held by no digest, by a sha256 digest (a record), by another digest's text (`others`). */
const FREE = 0;
const RECORD = 1;
const TEXT = 2;
/** A record: the digest's 8 words, then the number it is held under. */
const STRIDE = 9;
const SHA256 = 'sha256:';

/** Slot numbers for (number, digest) pairs. Slot numbers are dense: a freed one is given out again first. */
export class DigestTable {
  /** Each slot's state. */
  private state = new Uint8Array(1024);
  /** Each slot's record (`STRIDE` words), for sha256 digests. */
  private records = new Int32Array(1024 * STRIDE);
  /** Slot + 1 of the sha256 digests, by hash; 0 is empty (linear probing, at most half full). */
  private table = new Int32Array(2048);
  private inTable = 0;
  private next = 0;
  private readonly freeSlots: number[] = [];
  /** Digests held as text, by `<number>/<text>`, and their slots' keys. */
  private readonly others = new Map<string, number>();
  private readonly otherKeys = new Map<number, string>();
  private readonly seed = (Math.random() * 2 ** 32) | 0;
  /** The digest being looked up, as 8 words of its hex. */
  private readonly wanted = new Int32Array(8);

  /** The number of digests held. */
  get size(): number {
    return this.inTable + this.others.size;
  }

  /** One past the highest slot number given out so far (the length a slot-indexed array needs). */
  get extent(): number {
    return this.next;
  }

  /**
   * The slot of the digest `text` spells from `from` on (the whole of it by default: a key's tail
   * is read in place, not cut out) held under `n` (0 or more), or -1.
   */
  find(n: number, text: string, from = 0): number {
    return this.parse(text, from) ? this.probe(n) : (this.others.get(`${n}/${text.slice(from)}`) ?? -1);
  }

  /** The slot of the digest `text` spells from `from` on, under `n` (0 or more), given a new one if it has none (`added` then). */
  add(n: number, text: string, from = 0): { slot: number; added: boolean } {
    if (!this.parse(text, from)) {
      const key = `${n}/${text.slice(from)}`;
      const s = this.others.get(key);
      if (s !== undefined) return { slot: s, added: false };
      const slot = this.allocate(TEXT);
      this.others.set(key, slot);
      this.otherKeys.set(slot, key);
      return { slot, added: true };
    }
    const s = this.probe(n);
    if (s >= 0) return { slot: s, added: false };
    const slot = this.allocate(RECORD);
    this.records.set(this.wanted, slot * STRIDE);
    this.records[slot * STRIDE + 8] = n;
    if (2 * ++this.inTable > this.table.length) this.rehash(this.table.length * 2);
    else this.place(slot);
    return { slot, added: true };
  }

  /** Frees `slot`. */
  remove(slot: number): void {
    const state = this.state[slot];
    if (state === FREE) return;
    if (state === TEXT) {
      this.others.delete(this.otherKeys.get(slot)!);
      this.otherKeys.delete(slot);
    } else {
      this.unplace(slot);
      this.inTable--;
    }
    this.state[slot] = FREE;
    this.freeSlots.push(slot);
  }

  /** Whether `slot` holds a digest. */
  holds(slot: number): boolean {
    return slot < this.next && this.state[slot] !== FREE;
  }

  /** The number `slot`'s digest is held under. */
  numberOf(slot: number): number {
    if (this.state[slot] === RECORD) return this.records[slot * STRIDE + 8]!;
    const key = this.otherKeys.get(slot)!;
    return Number(key.slice(0, key.indexOf('/')));
  }

  /** The digest of `slot`, spelt as it was given. */
  digestOf(slot: number): string {
    if (this.state[slot] === RECORD) {
      let hex = SHA256;
      for (let o = slot * STRIDE, end = o + 8; o < end; o++) hex += (this.records[o]! >>> 0).toString(16).padStart(8, '0');
      return hex;
    }
    const key = this.otherKeys.get(slot)!;
    return key.slice(key.indexOf('/') + 1);
  }

  /** Forgets every digest. */
  clear(): void {
    this.state.fill(FREE);
    this.table.fill(0);
    this.inTable = this.next = 0;
    this.freeSlots.length = 0;
    this.others.clear();
    this.otherKeys.clear();
  }

  /**
   * True, with its value in `wanted`, when `text` from `from` on is a sha256 digest's text (`sha256:`
   * and 64 lower-case hex digits). Read in place, a character at a time: no slice, no native call.
   */
  private parse(text: string, from: number): boolean {
    if (text.length - from !== SHA256.length + 64 || !text.startsWith(SHA256, from)) return false;
    let at = from + SHA256.length;
    for (let i = 0; i < 8; i++) {
      let word = 0;
      for (let j = 0; j < 8; j++) {
        const c = text.charCodeAt(at++);
        const digit = c >= 48 && c <= 57 ? c - 48 : c >= 97 && c <= 102 ? c - 87 : -1;
        if (digit < 0) return false;
        word = (word << 4) | digit;
      }
      this.wanted[i] = word;
    }
    return true;
  }

  private allocate(state: number): number {
    let slot = this.freeSlots.pop();
    if (slot === undefined) {
      slot = this.next++;
      if (slot >= this.state.length) {
        this.state = grown(this.state, this.state.length * 2);
        this.records = grown(this.records, this.records.length * 2);
      }
    }
    this.state[slot] = state;
    return slot;
  }

  /** The table position the digest in `words` from `o` on, under `n`, starts its probe at. */
  private home(n: number, words: Int32Array, o: number): number {
    // Every word mixed in: a sha256 digest is uniform, but made-up ones (tests, zero-padded
    // numbers) are not, and with the process's own seed no chosen set of digests crowds one run.
    let h = Math.imul(n ^ this.seed, 0x9e3779b1);
    for (let i = o; i < o + 8; i++) {
      h = Math.imul(h ^ words[i]!, 0x85ebca6b);
      h ^= h >>> 15;
    }
    return (h ^ (h >>> 16)) & (this.table.length - 1);
  }

  /** The slot holding the digest in `wanted` under `n`, or -1. */
  private probe(n: number): number {
    const t = this.table;
    const w = this.wanted;
    const r = this.records;
    const mask = t.length - 1;
    for (let i = this.home(n, w, 0); ; i = (i + 1) & mask) {
      const entry = t[i]!;
      if (entry === 0) return -1;
      const o = (entry - 1) * STRIDE;
      if (
        r[o] === w[0] &&
        r[o + 1] === w[1] &&
        r[o + 2] === w[2] &&
        r[o + 3] === w[3] &&
        r[o + 4] === w[4] &&
        r[o + 5] === w[5] &&
        r[o + 6] === w[6] &&
        r[o + 7] === w[7] &&
        r[o + 8] === n
      )
        return entry - 1;
    }
  }

  private homeOf(slot: number): number {
    const o = slot * STRIDE;
    return this.home(this.records[o + 8]!, this.records, o);
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
    for (let s = 0; s < this.next; s++) if (this.state[s] === RECORD) this.place(s);
  }
}
