/**
 * The schedule in memory: entries by key, and a binary min-heap of their expiries, so that the
 * next expiry is found in O(1), and an entry set, moved or removed in O(log n). Entries live in
 * slots of typed arrays (expiry, type, heap position, version) so that a million of them cost their
 * key strings plus about 40 bytes each, not an object and a `Date` apiece.
 *
 * The key strings are most of that cost (a million `repository@sha256:<64 hex>`, about 110 bytes
 * each), so the index holds a key of that shape compacted (`CompactKeys`, kept here: a module of
 * its own would lengthen every request's way through the schedule, spec/request-way.test.ts).
 */

import { packSha256Hex } from '../distribution/digest.js';
import type { ContentType } from '../stores.js';

/** The kind of content an entry expires (distribution's `EntryType` 0 and 1). */
export type EntryType = ContentType;

/** A slot's state, as the index reports it. */
export interface IndexedEntry {
  readonly key: string;
  /** Milliseconds since the epoch. */
  readonly expiry: number;
  readonly type: EntryType;
  /** Changes whenever the entry is set: tells an entry renewed meanwhile from the one taken. */
  readonly version: number;
}

const NONE = -1;

/** Marks a compacted key: no repository name starts with a control character. */
const COMPACT = '\u0001';
const SHA256 = '@sha256:';

/**
 * Spells keys `repository@sha256:<64 lower-case hex>` as `COMPACT`, the repository's number in
 * four characters (0-255 each: one byte per character) and the digest's 32 bytes, 37 in all;
 * every other key (another algorithm, upper-case hex) is its own spelling. Repository numbers are
 * counted and reused once no key holds them.
 */
class CompactKeys {
  private readonly scratch = Buffer.alloc(37);
  private readonly ids = new Map<string, number>();
  private names: Array<string | undefined> = [];
  private holders: number[] = [];
  private readonly freeIds: number[] = [];

  /** The spelling `key` is held under, if it is held (for lookups: numbers nothing). */
  find(key: string): string {
    const at = this.split(key);
    if (at < 0) return key;
    const id = this.ids.get(key.slice(0, at));
    // An unknown repository holds no key: its key spelt as given is found nowhere either.
    return id === undefined ? key : this.spell(id);
  }

  /** `key`'s compact spelling, numbering its repository if new (the key then holds it, until `release`). */
  intern(key: string): string {
    const at = this.split(key);
    if (at < 0) return key;
    const repository = key.slice(0, at);
    let id = this.ids.get(repository);
    if (id === undefined) {
      this.ids.set(repository, (id = this.freeIds.pop() ?? this.names.length));
      this.names[id] = repository;
    }
    this.holders[id] = (this.holders[id] ?? 0) + 1;
    return this.spell(id);
  }

  /** Forgets one holder of `compact`'s repository (the key left the index). */
  release(compact: string): void {
    if (compact[0] !== COMPACT) return;
    const id = this.idOf(compact);
    if (--this.holders[id]! > 0) return;
    this.ids.delete(this.names[id]!);
    this.names[id] = undefined;
    this.freeIds.push(id);
  }

  /** The key as it was given. */
  expand(compact: string): string {
    if (compact[0] !== COMPACT) return compact;
    return `${this.names[this.idOf(compact)]!}${SHA256}${Buffer.from(compact.slice(5), 'latin1').toString('hex')}`;
  }

  /** Forgets every key and repository. */
  clear(): void {
    this.ids.clear();
    this.names = [];
    this.holders = [];
    this.freeIds.length = 0;
  }

  /** Where `@sha256:` starts in a key of the compact shape (its digest then packed into the scratch bytes), or -1. */
  private split(key: string): number {
    const at = key.length - SHA256.length - 64;
    if (at <= 0 || !key.startsWith(SHA256, at) || key.charCodeAt(0) < 32) return -1;
    return packSha256Hex(key.slice(at + SHA256.length), this.scratch, 5) ? at : -1;
  }

  /** The compact key of repository `id` and the digest `split` packed. */
  private spell(id: number): string {
    // Made from bytes, the string is flat: joined with `+`, V8 would keep a rope of the parts.
    const b = this.scratch;
    b[0] = 1;
    b.writeUInt32BE(id, 1);
    return b.toString('latin1', 0, 37);
  }

  private idOf(compact: string): number {
    return ((compact.charCodeAt(1) << 24) | (compact.charCodeAt(2) << 16) | (compact.charCodeAt(3) << 8) | compact.charCodeAt(4)) >>> 0;
  }
}

/** Keys to expiries with an ordered view of the earliest. */
export class ExpiryIndex {
  private readonly codec = new CompactKeys();
  /** Slots by compacted key. */
  private readonly slots = new Map<string, number>();
  /** Compacted keys by slot. */
  private keys: Array<string | undefined> = [];
  private expiry = new Float64Array(1024);
  private kind = new Uint8Array(1024);
  private pos = new Int32Array(1024);
  private version = new Uint32Array(1024);
  private heap = new Int32Array(1024);
  private heapSize = 0;
  private readonly free: number[] = [];
  private versions = 0;

  /** The number of entries. */
  get size(): number {
    return this.slots.size;
  }

  /** Whether `key` is indexed. */
  has(key: string): boolean {
    return this.slots.has(this.codec.find(key));
  }

  /** The entry of `key`. */
  get(key: string): IndexedEntry | undefined {
    const s = this.slots.get(this.codec.find(key));
    return s === undefined ? undefined : this.entryAt(s);
  }

  /** `key`'s expiry (ms), without making an entry object: for hot paths. */
  expiryOf(key: string): number | undefined {
    const s = this.slots.get(this.codec.find(key));
    return s === undefined ? undefined : this.expiry[s];
  }

  /** Sets (adds or moves) `key`'s expiry; `queued: false` keeps it out of the ordered view (it is being expired). */
  set(key: string, expiry: number, type: EntryType, queued = true): IndexedEntry {
    let s = this.slots.get(this.codec.find(key));
    if (s === undefined) {
      const compact = this.codec.intern(key);
      s = this.allocate(compact);
      this.slots.set(compact, s);
    }
    this.expiry[s] = expiry;
    this.kind[s] = type === 'blob' ? 0 : 1;
    this.version[s] = ++this.versions;
    if (queued) this.enqueue(s);
    else this.dequeue(s);
    return this.entryAt(s);
  }

  /** Removes `key`; false when it was not there. */
  delete(key: string): boolean {
    const compact = this.codec.find(key);
    const s = this.slots.get(compact);
    if (s === undefined) return false;
    this.dequeue(s);
    this.slots.delete(compact);
    this.codec.release(compact);
    this.keys[s] = undefined;
    this.free.push(s);
    return true;
  }

  /** Takes `key` out of the ordered view (it stays indexed), or puts it back. */
  setQueued(key: string, queued: boolean): void {
    const s = this.slots.get(this.codec.find(key));
    if (s === undefined) return;
    if (queued) this.enqueue(s);
    else this.dequeue(s);
  }

  /** The queued entry that expires first. */
  peek(): IndexedEntry | undefined {
    return this.heapSize === 0 ? undefined : this.entryAt(this.heap[0]!);
  }

  /** Every entry, in no particular order (for a full write or a listing; O(n)). */
  *entries(): Generator<IndexedEntry> {
    for (const s of this.slots.values()) yield this.entryAt(s);
  }

  /** Removes every entry. */
  clear(): void {
    this.slots.clear();
    this.codec.clear();
    this.keys = [];
    this.free.length = 0;
    this.heapSize = 0;
  }

  private entryAt(s: number): IndexedEntry {
    return { key: this.codec.expand(this.keys[s]!), expiry: this.expiry[s]!, type: this.kind[s] === 0 ? 'blob' : 'manifest', version: this.version[s]! };
  }

  private allocate(key: string): number {
    const s = this.free.pop() ?? this.keys.length;
    if (s === this.keys.length) {
      this.keys.push(key);
      if (s >= this.expiry.length) this.grow();
    } else {
      this.keys[s] = key;
    }
    this.pos[s] = NONE;
    return s;
  }

  private grow(): void {
    const n = this.expiry.length * 2;
    const grown = <T extends Float64Array | Uint8Array | Int32Array | Uint32Array>(a: T, make: (n: number) => T): T => {
      const b = make(n);
      b.set(a);
      return b;
    };
    this.expiry = grown(this.expiry, (k) => new Float64Array(k));
    this.kind = grown(this.kind, (k) => new Uint8Array(k));
    this.pos = grown(this.pos, (k) => new Int32Array(k));
    this.version = grown(this.version, (k) => new Uint32Array(k));
    this.heap = grown(this.heap, (k) => new Int32Array(k));
  }

  private enqueue(s: number): void {
    const p = this.pos[s]!;
    if (p === NONE) {
      const i = this.heapSize++;
      this.heap[i] = s;
      this.pos[s] = i;
      this.up(i);
    } else {
      this.up(p);
      this.down(this.pos[s]!);
    }
  }

  private dequeue(s: number): void {
    const p = this.pos[s]!;
    if (p === NONE) return;
    this.pos[s] = NONE;
    const last = --this.heapSize;
    if (p === last) return;
    const moved = this.heap[last]!;
    this.heap[p] = moved;
    this.pos[moved] = p;
    this.up(p);
    this.down(this.pos[moved]!);
  }

  private up(i: number): void {
    const h = this.heap;
    const s = h[i]!;
    const e = this.expiry[s]!;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const ps = h[parent]!;
      if (this.expiry[ps]! <= e) break;
      h[i] = ps;
      this.pos[ps] = i;
      i = parent;
    }
    h[i] = s;
    this.pos[s] = i;
  }

  private down(i: number): void {
    const h = this.heap;
    const n = this.heapSize;
    const s = h[i]!;
    const e = this.expiry[s]!;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const c = r < n && this.expiry[h[r]!]! < this.expiry[h[l]!]! ? r : l;
      const cs = h[c]!;
      if (this.expiry[cs]! >= e) break;
      h[i] = cs;
      this.pos[cs] = i;
      i = c;
    }
    h[i] = s;
    this.pos[s] = i;
  }
}
