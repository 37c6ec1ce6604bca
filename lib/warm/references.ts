/**
 * What `registry warm` is asked for: image references (parsed by lib/distribution), the upstream
 * namespace each one goes to, reference files, and platforms.
 */
import { parseDigest, type Digest } from '../distribution/digest.js';
import { parseImageReference } from '../distribution/reference.js';
import { registryHostOf } from '../distribution/registry-host.js';
import { MirrorError } from '../errors.js';
import type { NamespaceRouter } from '../services/serving.js';
import type { ProxyNamespace } from '../proxy/namespace.js';

/** A platform as `os/architecture[/variant]`. */
export interface Platform {
  readonly os: string;
  readonly architecture: string;
  readonly variant?: string;
}

/** A reference resolved to the namespace that serves it. */
export interface WarmReference {
  /** The reference as written. */
  readonly text: string;
  readonly namespace: ProxyNamespace;
  /** The repository name at the upstream (`library/busybox` on Docker Hub). */
  readonly name: string;
  /** The digest to pull by (it wins over a tag, as in docker), else the tag (default `latest`). */
  readonly target: { readonly digest: Digest } | { readonly tag: string };
}

/** A reference that cannot be warmed, with the reason. */
class BadReferenceError extends MirrorError {
  constructor(message: string) {
    super('ERR_BAD_REFERENCE', message);
  }
}

/**
 * Resolves `busybox`, `library/busybox:1.36`, `docker.io/library/alpine:3.19`,
 * `ghcr.io/org/app@sha256:...`: no host or a Docker Hub host is `docker.io`; any other host must be
 * served by this mirror (`proxy.remoteurl`'s own host or one of `proxy.upstreams`), and the name
 * it is stored under must not be hosted (`proxy.hosted`: pushed to, never pulled from an upstream).
 */
export function resolveReference(text: string, router: NamespaceRouter, isHosted: (storedName: string) => boolean): WarmReference {
  const ref = parseImageReference(text);
  if (!ref) throw new BadReferenceError('not a valid image reference (like busybox, library/busybox:1.36 or ghcr.io/org/app@sha256:...)');
  // `index.docker.io`, `registry-1.docker.io`: Docker Hub too.
  const host = ref.host === undefined ? 'docker.io' : registryHostOf(`https://${ref.host}`);
  const namespace = router.forHost(host);
  if (!namespace) throw new BadReferenceError(`this mirror has no upstream for ${host} (see proxy.upstreams)`);
  let target: WarmReference['target'] = { tag: ref.tag ?? 'latest' };
  if (ref.digest !== undefined) {
    const digest = parseDigest(ref.digest);
    if (!digest) throw new BadReferenceError(`unsupported digest ${ref.digest} (sha256, sha384 or sha512)`);
    target = { digest };
  }
  const name = namespace.upstreamName(ref.name);
  const stored = namespace.storedName(name);
  if (isHosted(stored)) throw new BadReferenceError(`${stored} is a hosted repository (proxy.hosted): it is pushed to, not fetched from an upstream`);
  return { text, namespace, name, target };
}

/** The references in a file's text: one per line, blank lines and `#` comments ignored. */
export function referencesIn(text: string): string[] {
  return text
    .split('\n')
    .map((l) => l.replace(/#.*/, '').trim())
    .filter((l) => l.length > 0);
}

/** Parses `linux/arm64` or `linux/arm/v7`; undefined when it is not of that form. */
export function parsePlatform(text: string): Platform | undefined {
  const [os, architecture, variant, extra] = text.split('/');
  if (!os || !architecture || variant === '' || extra !== undefined) return undefined;
  return { os, architecture, variant };
}

/** `linux/arm64/v8`. */
export function platformText(p: { os?: string; architecture?: string; variant?: string }): string {
  return [p.os ?? 'unknown', p.architecture ?? 'unknown', p.variant].filter(Boolean).join('/');
}

/** Whether an index entry's platform is `wanted` (any variant when `wanted` names none). */
export function platformMatches(p: { os?: string; architecture?: string; variant?: string } | undefined, wanted: Platform): boolean {
  return p?.os === wanted.os && p.architecture === wanted.architecture && (!wanted.variant || p.variant === wanted.variant);
}
