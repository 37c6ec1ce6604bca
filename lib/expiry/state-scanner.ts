/**
 * A streaming reader of one JSON object's top-level members, fed bytes in chunks of any size:
 * `scheduler-state.json` is read and rewritten this way (25 MB at 100,000 entries, 250 MB at a
 * million) without ever holding the whole text or its parsed tree. It checks the object's structure
 * (strings, nesting, commas, nothing after the end); each member's value is handed over as its raw
 * bytes, which the reader parses (small) or copies verbatim (a rewrite keeps unchanged members).
 */

/** One member: its decoded key, and where its raw bytes are in `buf` (valid during the callback). */
export interface ScannedMember {
  readonly key: string;
  readonly buf: Buffer;
  /** The member (`"key":value`) is `buf[start, end)`; its value starts at `valueStart`. */
  readonly start: number;
  readonly valueStart: number;
  readonly end: number;
}

/** The bytes are not one JSON object; `notObject` when they start as some other JSON value. */
export class StateSyntaxError extends Error {
  constructor(
    message: string,
    readonly notObject = false,
  ) {
    super(message);
  }
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const COMMA = 0x2c;
const COLON = 0x3a;

const isSpace = (c: number): boolean => c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;

/** Where the scanner is between members. */
type Phase = 'start' | 'first' | 'member' | 'after' | 'done';

/**
 * Scans a JSON object's members across chunks. The caller owns the buffer: `scan` reports how far
 * it consumed, and the caller moves the rest (an incomplete member) to the front before reading on,
 * so that no chunk is ever copied whole.
 */
class MemberScanner {
  private phase: Phase = 'start';
  private sawContent = false;
  private pendingAt = -1;

  /**
   * Scans `buf[0, end)`; calls `onMember` for each member completed in it; returns the number of
   * bytes consumed (the rest begins an incomplete member, to be presented again with more bytes).
   */
  scan(buf: Buffer, end: number, onMember: (m: ScannedMember) => void): number {
    let i = 0;
    this.pendingAt = -1;
    while (i < end) {
      const c = buf[i]!;
      if (isSpace(c)) {
        i++;
        continue;
      }
      this.sawContent = true;
      switch (this.phase) {
        case 'start':
          if (c !== OPEN_BRACE)
            throw new StateSyntaxError(
              'not a JSON object',
              c === OPEN_BRACKET || c === QUOTE || (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x74 || c === 0x66 || c === 0x6e,
            );
          this.phase = 'first';
          i++;
          continue;
        case 'first':
        case 'member': {
          if (c === CLOSE_BRACE && this.phase === 'first') {
            this.phase = 'done';
            i++;
            continue;
          }
          if (c !== QUOTE) throw new StateSyntaxError(`expected a member name at byte ${i}`);
          const stop = memberEnd(buf, i, end);
          if (stop === undefined) {
            this.pendingAt = i;
            return i;
          }
          const keyEnd = stringEnd(buf, i, end)!;
          let v = keyEnd;
          while (isSpace(buf[v]!)) v++;
          v++; // the colon, checked by memberEnd
          while (isSpace(buf[v]!)) v++;
          onMember({ key: decodeKey(buf, i, keyEnd), buf, start: i, valueStart: v, end: stop });
          this.phase = 'after';
          i = stop;
          continue;
        }
        case 'after':
          if (c === COMMA) this.phase = 'member';
          else if (c === CLOSE_BRACE) this.phase = 'done';
          else throw new StateSyntaxError(`expected , or } at byte ${i}`);
          i++;
          continue;
        case 'done':
          throw new StateSyntaxError(`content after the end of the object at byte ${i}`);
      }
    }
    return end;
  }

  /** Call after the last chunk: throws unless exactly one complete object was read. */
  end(): void {
    if (this.phase === 'done' && this.pendingAt < 0) return;
    throw new StateSyntaxError(this.sawContent ? 'the object is incomplete' : 'empty');
  }
}

/**
 * Reads `read` chunk by chunk through a scanner, into one buffer that grows only for a member
 * larger than it: calls `onMember` for each member and `onChunk` after each chunk.
 */
export async function scanStream(
  read: (buf: Buffer, offset: number, length: number) => Promise<number>,
  chunkBytes: number,
  onMember: (m: ScannedMember) => void,
  onChunk: () => Promise<boolean | void>,
): Promise<void> {
  const scanner = new MemberScanner();
  let buf = Buffer.allocUnsafe(chunkBytes);
  let held = 0;
  for (;;) {
    if (held === buf.length) {
      const grown = Buffer.allocUnsafe(buf.length * 2);
      buf.copy(grown, 0, 0, held);
      buf = grown;
    }
    const n = await read(buf, held, buf.length - held);
    if (n === 0) break;
    const end = held + n;
    const consumed = scanner.scan(buf, end, onMember);
    held = end - consumed;
    if (held > 0) buf.copy(buf, 0, consumed, end);
    if ((await onChunk()) === false) return;
  }
  scanner.end();
}

/** The index after the closing quote of the string starting at `i`, or undefined if the buffer ends first. */
function stringEnd(buf: Buffer, i: number, limit: number): number | undefined {
  let j = i + 1;
  for (;;) {
    const q = buf.indexOf(QUOTE, j);
    if (q < 0 || q >= limit) return undefined;
    // A quote preceded by an odd number of backslashes is escaped.
    let k = q - 1;
    while (k > i && buf[k] === BACKSLASH) k--;
    if ((q - 1 - k) % 2 === 0) return q + 1;
    j = q + 1;
  }
}

/**
 * The index after the member `"key" : value` starting at `i`, or undefined when the buffer ends
 * first. Checks the colon and the nesting of the value; the value's scalars are checked by whoever
 * parses it.
 */
function memberEnd(buf: Buffer, i: number, n: number): number | undefined {
  let j = stringEnd(buf, i, n);
  if (j === undefined) return undefined;
  while (j < n && isSpace(buf[j]!)) j++;
  if (j >= n) return undefined;
  if (buf[j] !== COLON) throw new StateSyntaxError(`expected : at byte ${j}`);
  j++;
  while (j < n && isSpace(buf[j]!)) j++;
  if (j >= n) return undefined;
  const first = buf[j]!;
  if (first === QUOTE) return stringEnd(buf, j, n);
  if (first !== OPEN_BRACE && first !== OPEN_BRACKET) {
    // A number or literal ends at the next structural byte; it cannot end the buffer.
    while (j < n && !isSpace(buf[j]!) && buf[j] !== COMMA && buf[j] !== CLOSE_BRACE) j++;
    return j < n ? j : undefined;
  }
  const stack: number[] = [];
  while (j < n) {
    const c = buf[j]!;
    if (c === QUOTE) {
      const e = stringEnd(buf, j, n);
      if (e === undefined) return undefined;
      j = e;
      continue;
    }
    if (c === OPEN_BRACE || c === OPEN_BRACKET) stack.push(c);
    else if (c === CLOSE_BRACE || c === CLOSE_BRACKET) {
      const open = stack.pop();
      if ((c === CLOSE_BRACE && open !== OPEN_BRACE) || (c === CLOSE_BRACKET && open !== OPEN_BRACKET))
        throw new StateSyntaxError(`unbalanced ${String.fromCharCode(c)} at byte ${j}`);
      if (stack.length === 0) return j + 1;
    }
    j++;
  }
  return undefined;
}

/** The member name of the string at `[start, end)`; only names with escapes go through JSON.parse. */
function decodeKey(buf: Buffer, start: number, end: number): string {
  const body = buf.subarray(start + 1, end - 1);
  if (body.indexOf(BACKSLASH) < 0) return body.toString('utf8');
  try {
    return JSON.parse(buf.toString('utf8', start, end)) as string;
  } catch {
    throw new StateSyntaxError(`invalid member name at byte ${start}`);
  }
}
