/**
 * Go `time.Duration` values as distribution's YAML accepts them: a string in `time.ParseDuration`
 * syntax (`168h`, `1h30m`, `5m30s`, `300ms`, `1.5h`, `-1h`, `0`), or a YAML integer, which Go
 * decodes as a count of nanoseconds. Results are in milliseconds (fractional below 1 ms).
 */
import { ConfigError } from '../errors.js';

/** Milliseconds per unit; both spellings of micro (U+00B5 and U+03BC) as in Go. */
const UNIT_MS: Readonly<Record<string, number>> = {
  ns: 1e-6,
  us: 1e-3,
  µs: 1e-3,
  μs: 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

/**
 * One `<number><unit>` component. `ms` is listed before `m` and `s` so that `5ms` is not read as
 * five minutes followed by a stray `s`. The micro signs are escaped: a regular expression is the one
 * place the bundler keeps non-ASCII as is, and one such character makes Node decode and compile the
 * whole bundle as a two-byte string.
 */
const COMPONENT = /(\d+\.?\d*|\.\d+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)/gy;

/**
 * Parses a Go duration into milliseconds, or returns `undefined` when `value` is not one.
 * Numbers must be integers (nanoseconds); floats are rejected as Go's YAML decoder does.
 */
export function tryParseDuration(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isSafeInteger(value) ? value / 1e6 : undefined;
  if (typeof value !== 'string') return undefined;
  let text = value;
  let sign = 1;
  if (text.startsWith('-') || text.startsWith('+')) {
    sign = text.startsWith('-') ? -1 : 1;
    text = text.slice(1);
  }
  // Go's special case: a bare zero needs no unit (any other unitless number is an error).
  if (text === '0') return 0;
  if (text === '') return undefined;
  let total = 0;
  let at = 0;
  COMPONENT.lastIndex = 0;
  for (let m = COMPONENT.exec(text); m !== null; m = COMPONENT.exec(text)) {
    total += Number(m[1]) * (UNIT_MS[m[2] as string] as number);
    at = COMPONENT.lastIndex;
  }
  if (at !== text.length || !Number.isFinite(total)) return undefined;
  // `-0` is not a useful distinction for callers comparing with 0.
  return total === 0 ? 0 : sign * total;
}

/** True when `value` is a duration distribution would accept. */
export function isDuration(value: unknown): boolean {
  return tryParseDuration(value) !== undefined;
}

/**
 * Parses a Go duration into milliseconds; throws `ERR_CONFIG_INVALID` with an example of the
 * expected syntax otherwise (for example for `7 days`).
 */
export function parseDuration(value: string | number): number {
  const ms = tryParseDuration(value);
  if (ms === undefined) throw new ConfigError(`${JSON.stringify(value)} is not a duration like 168h`);
  return ms;
}
