/**
 * The schedule in memory: entries by key, and a binary min-heap of their expiries, so that the
 * next expiry is found in O(1), and an entry set, moved or removed in O(log n). Entries live in
 * slots of typed arrays (expiry, type, heap position, version) numbered by a `DigestTable`, a key
 * `repository@digest` held as its digest under its repository's number (the name held once,
 * counted, its number reused once no key holds it), so that a million entries cost about 65 bytes
 * each, not a key string, a map entry, an object and a `Date` apiece.
 */

import { DigestTable, grown } from '../distribution/digest-table.js';
import type { ContentType } from '../stores.js';
import type { Entry } from './state-file.js';

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

/** An index entry as the schedule's users see it (its expiry a `Date`). */
export const toEntry = (e: IndexedEntry): Entry => ({ key: e.key, expiry: new Date(e.expiry), type: e.type });

const NONE = -1;
/** The number a key without `@` is held under, as its whole text; repositories count from 1. */
const WHOLE = 0;

/** Keys to expiries with an ordered view of the earliest. */
export class ExpiryIndex {
  /** Slots by key. */
  private readonly keys = new DigestTable();
  /** Repository numbers by name, and each number's name and count of keys. */
  private readonly ids = new Map<string, number>();
  private names: Array<string | undefined> = [undefined];
  private holders: number[] = [];
  private readonly freeIds: number[] = [];
  private expiry = new Float64Array(1024);
  private kind = new Uint8Array(1024);
  private pos = new Int32Array(1024);
  private version = new Uint32Array(1024);
  private heap = new Int32Array(1024);
  private heapSize = 0;
  private versions = 0;

  /** The number of entries. */
  get size(): number {
    return this.keys.size;
  }

  /** Whether `key` is indexed. */
  has(key: string): boolean {
    return this.find(key) >= 0;
  }

  /** The entry of `key`. */
  get(key: string): IndexedEntry | undefined {
    const s = this.find(key);
    return s < 0 ? undefined : this.entryAt(s);
  }

  /** `key`'s expiry (ms), without making an entry object: for hot paths. */
  expiryOf(key: string): number | undefined {
    const s = this.find(key);
    return s < 0 ? undefined : this.expiry[s];
  }

  /** Sets (adds or moves) `key`'s expiry; `queued: false` keeps it out of the ordered view (it is being expired). */
  set(key: string, expiry: number, type: EntryType, queued = true): void {
    const at = key.lastIndexOf('@');
    let n = WHOLE;
    if (at > 0) {
      const repository = key.slice(0, at);
      n = this.ids.get(repository) ?? this.number(repository);
    }
    const { slot: s, added } = this.keys.add(n, key, at > 0 ? at + 1 : 0);
    // A new repository's number is held from its first key on (a new number holds no key yet).
    if (added && n !== WHOLE) this.holders[n]!++;
    if (added) {
      if (s >= this.expiry.length) this.grow();
      this.pos[s] = NONE;
    }
    this.expiry[s] = expiry;
    this.kind[s] = type === 'blob' ? 0 : 1;
    this.version[s] = ++this.versions;
    if (queued) this.enqueue(s);
    else this.dequeue(s);
  }

  /** Removes `key`; false when it was not there. */
  delete(key: string): boolean {
    const s = this.find(key);
    if (s < 0) return false;
    this.dequeue(s);
    const n = this.keys.numberOf(s);
    this.keys.remove(s);
    if (n !== WHOLE && --this.holders[n]! === 0) this.release(n);
    return true;
  }

  /** Takes `key` out of the ordered view (it stays indexed), or puts it back. */
  setQueued(key: string, queued: boolean): void {
    const s = this.find(key);
    if (s < 0) return;
    if (queued) this.enqueue(s);
    else this.dequeue(s);
  }

  /** The queued entry that expires first. */
  peek(): IndexedEntry | undefined {
    return this.heapSize === 0 ? undefined : this.entryAt(this.heap[0]!);
  }

  /** Every entry, in no particular order (for a full write or a listing; O(n)). */
  *entries(): Generator<IndexedEntry> {
    for (let s = 0; s < this.keys.extent; s++) if (this.keys.holds(s)) yield this.entryAt(s);
  }

  /** Removes every entry. */
  clear(): void {
    this.keys.clear();
    this.ids.clear();
    this.names = [undefined];
    this.holders = [];
    this.freeIds.length = 0;
    this.heapSize = 0;
  }

  /** The slot of `key`, or -1. */
  private find(key: string): number {
    const at = key.lastIndexOf('@');
    if (at <= 0) return this.keys.find(WHOLE, key);
    const n = this.ids.get(key.slice(0, at));
    return n === undefined ? -1 : this.keys.find(n, key, at + 1);
  }

  /** The key of slot `s`, as it was set. */
  private keyOf(s: number): string {
    const n = this.keys.numberOf(s);
    return n === WHOLE ? this.keys.digestOf(s) : `${this.names[n]!}@${this.keys.digestOf(s)}`;
  }

  /** A number for `repository`, held by no key yet. */
  private number(repository: string): number {
    const n = this.freeIds.pop() ?? this.names.length;
    this.ids.set(repository, n);
    this.names[n] = repository;
    this.holders[n] = 0;
    return n;
  }

  /** `n` is held by no key any more: its name is forgotten and the number given out again. */
  private release(n: number): void {
    this.ids.delete(this.names[n]!);
    this.names[n] = undefined;
    this.freeIds.push(n);
  }

  private entryAt(s: number): IndexedEntry {
    return { key: this.keyOf(s), expiry: this.expiry[s]!, type: this.kind[s] === 0 ? 'blob' : 'manifest', version: this.version[s]! };
  }

  private grow(): void {
    const n = this.expiry.length * 2;
    this.expiry = grown(this.expiry, n);
    this.kind = grown(this.kind, n);
    this.pos = grown(this.pos, n);
    this.version = grown(this.version, n);
    this.heap = grown(this.heap, n);
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
