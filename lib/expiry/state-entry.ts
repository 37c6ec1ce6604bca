/**
 * One entry of `scheduler-state.json` as text, in distribution's format
 * (`registry/proxy/expiry/scheduler.go`): the member `"<repo>@<digest>":{"Key":"<repo>@<digest>",
 * "ExpiryData":"<RFC 3339>","EntryType":<0 blob, 1 manifest>}`, read in place from the scanner's
 * buffer when it has the shape distribution and we write (no string is made) and parsed as JSON
 * otherwise; and Go's time format, in which `ExpiryData` is written.
 */
import type { ScannedMember } from './state-scanner.js';
import type { EntryType } from './expiry-index.js';

/** An entry as stored and sent between threads: expiry in milliseconds since the epoch. */
export interface StoredEntry {
  readonly key: string;
  readonly expiry: number;
  readonly type: EntryType;
}

/** Go's RFC3339Nano: UTC with `Z`, fraction trimmed of trailing zeros. */
export function formatGoTime(d: Date): string {
  return d.toISOString().replace(/\.(\d*?)0*Z$/, (_m, frac: string) => (frac ? `.${frac}Z` : 'Z'));
}

const GO_TIME = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$/;

/** Parses RFC 3339 with up to nine fractional digits and any offset; undefined if invalid. */
export function parseGoTime(s: unknown): Date | undefined {
  const ms = parseGoTimeMs(s);
  return ms === undefined ? undefined : new Date(ms);
}

function parseGoTimeMs(s: unknown): number | undefined {
  if (typeof s !== 'string') return undefined;
  const m = GO_TIME.exec(s);
  if (!m) return undefined;
  const frac = m[2] ? `.${m[2].padEnd(3, '0').slice(0, 3)}` : '';
  const t = Date.parse(`${m[1]}${frac}${m[3]}`);
  return Number.isNaN(t) ? undefined : t;
}

const KEY_OPEN = Buffer.from('{"Key":"');
const EXPIRY_OPEN = Buffer.from('","ExpiryData":"');
const TYPE_OPEN = Buffer.from('","EntryType":');

/** The decimal number of `buf[i, i + n)`, or NaN when not all digits. */
function digits(buf: Buffer, i: number, n: number): number {
  let v = 0;
  for (let k = i; k < i + n; k++) {
    const c = buf[k]! - 0x30;
    if (c < 0 || c > 9) return NaN;
    v = v * 10 + c;
  }
  return v;
}

/** RFC 3339 in `buf[i, end)`, parsed in place (no string is made); undefined if invalid. */
function timeAt(buf: Buffer, i: number, end: number): number | undefined {
  if (end - i < 20 || buf[i + 4] !== 0x2d || buf[i + 7] !== 0x2d || buf[i + 10] !== 0x54 || buf[i + 13] !== 0x3a || buf[i + 16] !== 0x3a) return undefined;
  const [y, mo, d, h, mi, se] = [
    digits(buf, i, 4),
    digits(buf, i + 5, 2),
    digits(buf, i + 8, 2),
    digits(buf, i + 11, 2),
    digits(buf, i + 14, 2),
    digits(buf, i + 17, 2),
  ];
  if (!(mo >= 1 && mo <= 12 && d >= 1 && d <= 31 && h <= 23 && mi <= 59 && se <= 60)) return undefined;
  let j = i + 19;
  let ms = 0;
  if (buf[j] === 0x2e) {
    const start = ++j;
    while (j < end && buf[j]! >= 0x30 && buf[j]! <= 0x39) j++;
    const n = j - start;
    if (n < 1 || n > 9) return undefined;
    ms = digits(buf, start, Math.min(n, 3)) * 10 ** (3 - Math.min(n, 3));
  }
  let offset = 0;
  if (buf[j] === 0x5a && j + 1 === end) offset = 0;
  else if ((buf[j] === 0x2b || buf[j] === 0x2d) && j + 6 === end && buf[j + 3] === 0x3a) {
    const oh = digits(buf, j + 1, 2);
    const om = digits(buf, j + 4, 2);
    if (Number.isNaN(oh) || Number.isNaN(om)) return undefined;
    offset = (buf[j] === 0x2b ? 1 : -1) * (oh * 60 + om) * 60_000;
  } else return undefined;
  const t = Date.UTC(y, mo - 1, d, h, mi, se, ms) - offset;
  // Date.UTC rolls 31 February over into March: refuse what does not round-trip.
  return new Date(Date.UTC(y, mo - 1, d)).getUTCDate() === d ? t : undefined;
}

/** The value in the shape distribution and we write (`{"Key":"...","ExpiryData":"...","EntryType":N}`), read in place; undefined when it has another shape. */
function fastEntry(m: ScannedMember): StoredEntry | undefined {
  const { buf, valueStart: v, end } = m;
  if (buf.compare(KEY_OPEN, 0, KEY_OPEN.length, v, v + KEY_OPEN.length) !== 0 || buf[end - 1] !== 0x7d) return undefined;
  const e = buf.indexOf(EXPIRY_OPEN, v + KEY_OPEN.length);
  if (e < 0 || e >= end) return undefined;
  const ts = e + EXPIRY_OPEN.length;
  const te = buf.indexOf(0x22, ts);
  if (te < 0 || te >= end || buf.compare(TYPE_OPEN, 0, TYPE_OPEN.length, te, te + TYPE_OPEN.length) !== 0) return undefined;
  const t = te + TYPE_OPEN.length;
  if (t + 2 !== end || (buf[t] !== 0x30 && buf[t] !== 0x31)) return undefined;
  const expiry = timeAt(buf, ts, te);
  return expiry === undefined ? undefined : { key: m.key, expiry, type: buf[t] === 0x30 ? 'blob' : 'manifest' };
}

/** A member's entry, or undefined when it is malformed. */
export function entryOf(m: ScannedMember): StoredEntry | undefined {
  if (!m.key.includes('@')) return undefined;
  const fast = fastEntry(m);
  if (fast) return fast;
  let v: { ExpiryData?: unknown; EntryType?: unknown } | null;
  try {
    v = JSON.parse(m.buf.toString('utf8', m.valueStart, m.end)) as typeof v;
  } catch {
    return undefined;
  }
  if (v === null || typeof v !== 'object') return undefined;
  const expiry = parseGoTimeMs(v.ExpiryData);
  if (expiry === undefined || (v.EntryType !== 0 && v.EntryType !== 1)) return undefined;
  return { key: m.key, expiry, type: v.EntryType === 0 ? 'blob' : 'manifest' };
}

/** One member in distribution's format. */
export function member(key: string, expiry: number, type: EntryType): string {
  const k = JSON.stringify(key);
  return `${k}:{"Key":${k},"ExpiryData":"${formatGoTime(new Date(expiry))}","EntryType":${type === 'blob' ? 0 : 1}}`;
}
