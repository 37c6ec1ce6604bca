/**
 * `http:`, defined and converted in one place: the listener (`addr`, `net`, `prefix`), TLS as
 * distribution 3 reads it, the debug server, headers added to every response, the drain on a stop.
 * Let's Encrypt without a certificate and HTTP/2 cleartext are settled before validation (`load.ts`).
 */
import { GO_CIPHER_SUITES } from './tls-ciphers.js';
import { parseDuration } from './duration.js';
import { ConfigError } from '../errors.js';
import { converted, extension, ignored as I, key, map, section, type Raw } from './key-def.js';

const bool = { type: 'boolean' };
const str = { type: 'string' };
const duration = { goDuration: true };
/** Header values: one string or a list. */
export const HEADERS_SCHEMA = { type: 'object', additionalProperties: { type: ['string', 'array'], items: str } };
/** `http.tls.clientauth`: Go's `tls.ClientAuthType` names, as distribution 3. */
const CLIENT_AUTH_MODES = ['request-client-cert', 'require-any-client-cert', 'verify-client-cert-if-given', 'require-and-verify-client-cert'] as const;

/** `http.tls:` */
export interface TlsConfig {
  readonly certificate?: string;
  readonly key?: string;
  readonly clientcas: readonly string[];
  /**
   * How client certificates are asked for (Go's names, as distribution 3); only with `clientcas`,
   * default `require-and-verify-client-cert`.
   */
  readonly clientauth: (typeof CLIENT_AUTH_MODES)[number];
  readonly minimumtls?: string;
  /** Go's names of the TLS 1.2 cipher suites allowed (`config/tls-ciphers.ts`); undefined: node's defaults. */
  readonly ciphersuites?: readonly string[];
}

/** `http:` */
export interface HttpConfig {
  /** `host:port`, `:port`, or a socket path when `net` is `unix`. Default `:5000`. */
  readonly addr: string;
  readonly net: 'tcp' | 'unix';
  /** Route prefix, normalised to start and end with `/` (default `/`). */
  readonly prefix: string;
  readonly host?: string;
  readonly secret?: string;
  /** Extra headers added to every response. */
  readonly headers: Readonly<Record<string, readonly string[]>>;
  readonly tls?: TlsConfig;
  readonly debug?: { readonly addr: string; readonly prometheus: { readonly enabled: boolean; readonly path: string } };
  /** On a stop, how long busy connections may finish before they are cut (`http.draintimeout`, 1 s by default; `0` cuts them at once). */
  readonly draintimeoutms: number;
  /** Extension `http.cachepage` (default true): the cache page for browsers at the root. */
  readonly cachepage: boolean;
}

/** Header values as lists (a single string is a list of one). */
export function headerLists(headers: Raw | undefined): Record<string, string[]> {
  return Object.fromEntries(Object.entries(headers ?? {}).map(([k, v]) => [k, Array.isArray(v) ? v.map(String) : [String(v)]]));
}

/** `http:` and its conversion. */
export const HTTP_KEYS = converted(
  section(
    {
      addr: key({ type: ['string', 'number'], default: ':5000' }),
      net: key({ enum: ['tcp', 'unix'], default: 'tcp' }),
      prefix: key({ ...str, default: '/' }),
      host: key(str),
      secret: key(str),
      relativeurls: I,
      draintimeout: key({ ...duration, default: '1s' }),
      cachepage: extension(key({ ...bool, default: true })),
      headers: map({ ...HEADERS_SCHEMA, default: {} }),
      // `letsencrypt` without a certificate refuses to start (load.ts): this registry does no ACME.
      tls: section({
        certificate: key(str),
        key: key(str),
        clientcas: key({ type: 'array', items: str, default: [] }),
        clientauth: key({ enum: CLIENT_AUTH_MODES, default: 'require-and-verify-client-cert' }),
        ciphersuites: key({ type: 'array', items: { enum: Object.keys(GO_CIPHER_SUITES) } }),
        minimumtls: key({ enum: ['tls1.2', 'tls1.3'] }),
        letsencrypt: section({ cachefile: I, email: I, hosts: I, directoryurl: I }),
      }),
      debug: section({
        addr: key(str),
        prometheus: section({ enabled: key({ ...bool, default: false }), path: key({ ...str, default: '/metrics' }) }, { default: {} }),
      }),
      http2: section({ disabled: I }),
      h2c: section({ enabled: I }),
    },
    { default: {} },
  ),
  (http): HttpConfig => {
    const net = http.net as HttpConfig['net'];
    if (net === 'tcp' && !/^(?:\[[^\]]*\]|[^:]*):\d+$/.test(String(http.addr))) {
      throw new ConfigError(`http.addr: ${JSON.stringify(http.addr)} is not an address like :5000 or host:port`);
    }
    const tls = http.tls as Raw | undefined;
    return {
      addr: String(http.addr),
      net,
      prefix: `/${String(http.prefix).replace(/^\/+|\/+$/g, '')}/`.replace(/^\/\/$/, '/'),
      host: http.host,
      secret: http.secret,
      headers: headerLists(http.headers),
      tls: tls
        ? {
            certificate: tls.certificate,
            key: tls.key,
            clientcas: tls.clientcas,
            clientauth: tls.clientauth,
            minimumtls: tls.minimumtls,
            ciphersuites: tls.ciphersuites,
          }
        : undefined,
      debug: http.debug?.addr ? { addr: http.debug.addr, prometheus: http.debug.prometheus } : undefined,
      draintimeoutms: parseDuration(http.draintimeout),
      cachepage: http.cachepage,
    };
  },
);
