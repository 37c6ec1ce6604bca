/**
 * Which token realms may receive the upstream's credentials, as distribution v3.1's `realmAllowed`
 * (`registry/proxy/proxyauth.go`): a realm on the upstream's own host and port, or, for named
 * hosts, on the same registrable domain of the public suffix list; never an IP address or
 * `localhost` other than the upstream's own authority, and never downgraded from https to http.
 * The public suffix list comes from `tldts` (kept current by its maintainers, private section
 * included, so `github.io` or `herokuapp.com` tenants are not one domain). Stricter than
 * distribution on registry hosting domains the list does not cover, whose tenants are strangers.
 */
import { isIP } from 'node:net';
import { getDomain } from 'tldts';

/** Domains (and their subdomains) whose hosts are different customers' registries, not all of them on the public suffix list. */
const MULTI_TENANT: readonly string[] = ['azurecr.io', 'amazonaws.com'];

/** May the credentials of the upstream at `remote` go to the token realm `realm`? */
export function realmAllowed(remote: URL, realm: URL): boolean {
  if (remote.protocol === 'https:' && realm.protocol !== 'https:') return false;
  if (remote.host === '' || realm.host === '') return false;
  // `URL.host` is lower-cased and leaves out the scheme's default port.
  if (remote.host === realm.host) return true;
  if (literalOrLocal(remote.hostname) || literalOrLocal(realm.hostname)) return false;
  const domain = registrableDomain(realm.hostname);
  return domain !== undefined && domain === registrableDomain(remote.hostname) && !MULTI_TENANT.some((d) => domain === d || domain.endsWith(`.${d}`));
}

/** The registrable domain of `host` on the public suffix list (`docker.io` for `auth.docker.io`); undefined for IPs and suffixes. */
export function registrableDomain(host: string): string | undefined {
  return getDomain(host, { allowPrivateDomains: true }) ?? undefined;
}

function literalOrLocal(hostname: string): boolean {
  const bare = hostname.replace(/^\[|\]$/g, '');
  return bare === 'localhost' || isIP(bare) !== 0;
}
