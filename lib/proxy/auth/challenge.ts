/**
 * `WWW-Authenticate` parsing (RFC 9110 §11.6.1, distribution `registry/client/auth/challenge`):
 * several challenges, quoted strings with escapes, commas inside quotes.
 */

/** One challenge: the scheme (lower-cased) and its parameters (names lower-cased). */
export interface Challenge {
  readonly scheme: string;
  readonly params: Readonly<Record<string, string>>;
}

/** Parses one or more `WWW-Authenticate` header values. */
export function parseChallenges(header: string | string[] | undefined): Challenge[] {
  if (header === undefined) return [];
  const text = Array.isArray(header) ? header.join(', ') : header;
  const result: Array<{ scheme: string; params: Record<string, string> }> = [];
  const token = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+/;
  let i = 0;
  const skip = (): void => {
    while (i < text.length && /[\s,]/.test(text[i]!)) i++;
  };
  while (i < text.length) {
    skip();
    const scheme = token.exec(text.slice(i));
    if (!scheme) break;
    i += scheme[0].length;
    const current = { scheme: scheme[0].toLowerCase(), params: {} as Record<string, string> };
    result.push(current);
    for (;;) {
      skip();
      const start = i;
      const name = token.exec(text.slice(i));
      if (!name) break;
      i += name[0].length;
      while (text[i] === ' ') i++;
      if (text[i] !== '=') {
        // A bare token starts the next challenge.
        i = start;
        break;
      }
      i++;
      while (text[i] === ' ') i++;
      let value = '';
      if (text[i] === '"') {
        i++;
        while (i < text.length && text[i] !== '"') {
          if (text[i] === '\\' && i + 1 < text.length) i++;
          value += text[i];
          i++;
        }
        i++;
      } else {
        const v = /^[^\s,]*/.exec(text.slice(i))![0];
        value = v;
        i += v.length;
      }
      current.params[name[0].toLowerCase()] = value;
    }
  }
  return result;
}
