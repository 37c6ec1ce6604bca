/**
 * Which stores serve a name: the one resolution of a client's repository name that the hosted
 * check, authorization, mounts and storage all use, and the choice of its upstream. A hosted name
 * (`CachePolicy.isHosted`, the only place that decides it) is served by the hosted stores under
 * the name as written; any other by its upstream's proxy stores, stored under that namespace's
 * prefix. A proxied spelling whose stored name is hosted (`docker.io/corp/app` for a hosted
 * `corp/`, `busybox` for a hosted `library/`) or belongs to another registry here is refused, so
 * no name is reached by a second spelling that skips the first one's rules.
 *
 * The upstream (`NamespaceRouter`): with only `proxy.remoteurl` configured every name goes to it,
 * as in distribution. With the extension `proxy.upstreams`, a request selects a registry by
 * containerd's `?ns=<registry>` query parameter, or by a path prefix (`/v2/ghcr.io/org/app/...`);
 * anything else goes to the default upstream, which also answers for `docker.io` unless that is
 * listed itself.
 */
import type { BlobService, ManifestService, ReferrersService, TagService } from '../stores.js';
import { storageComponentOf } from '../distribution/registry-host.js';
import type { ProxyNamespace } from '../proxy/namespace.js';

const DOCKER_HUB = 'docker.io';

/** A request's upstream and its name there. */
interface Resolved {
  readonly namespace: ProxyNamespace;
  /** The repository name at the upstream (`library/busybox`, `org/app`). */
  readonly name: string;
  /** The one name its content is stored under (`library/busybox`, `ghcr.io/org/app`). */
  readonly storedName: string;
  /**
   * Set when the stored name belongs to another registry of this mirror: a default-upstream name
   * whose first component is another upstream's storage component or a host alias
   * (`ghcr.io/org/app?ns=docker.io`, `host_5000/org/app`). Such a request is refused, never
   * fetched from the default upstream into that registry's storage.
   */
  readonly conflict?: string;
}

/** The upstreams of the mirror, by registry host. */
export class NamespaceRouter {
  private readonly byHost: Map<string, ProxyNamespace>;
  /** First components of a name that spell another registry here (storage components and host aliases). */
  private readonly reserved: Map<string, string>;

  constructor(
    readonly defaultNamespace: ProxyNamespace,
    readonly others: readonly ProxyNamespace[],
  ) {
    this.byHost = new Map([defaultNamespace, ...others].map((n) => [n.host, n]));
    // `proxy.remoteurl` is Docker Hub's mirror setting: it often points at another Hub mirror
    // (`https://mirror.gcr.io`), whose content containerd asks for as `ns=docker.io`.
    if (!this.byHost.has(DOCKER_HUB)) this.byHost.set(DOCKER_HUB, defaultNamespace);
    this.reserved = new Map();
    if (others.length > 0) {
      for (const [host, n] of this.byHost) this.reserved.set(host, n.host);
      for (const n of others) this.reserved.set(storageComponentOf(n.host), n.host);
    }
  }

  /** Every namespace, the default first. */
  get all(): ProxyNamespace[] {
    return [this.defaultNamespace, ...this.others];
  }

  /**
   * The upstream for the client's `name` and `ns` parameter; undefined when `ns` names a registry
   * this mirror does not serve (the client then falls back to the registry itself).
   */
  resolve(name: string, ns: string | undefined): Resolved | undefined {
    if (this.others.length === 0) return this.at(this.defaultNamespace, name);
    if (ns !== undefined) {
      const chosen = this.byHost.get(ns.toLowerCase());
      return chosen && this.at(chosen, name);
    }
    const slash = name.indexOf('/');
    const prefixed = slash > 0 ? this.byHost.get(name.slice(0, slash)) : undefined;
    return prefixed ? this.at(prefixed, name.slice(slash + 1)) : this.at(this.defaultNamespace, name);
  }

  /**
   * The namespace of the registry `host` as image references name it (`docker.io`, `ghcr.io`,
   * `proxy.remoteurl`'s own host); undefined for a registry this mirror does not serve.
   */
  forHost(host: string): ProxyNamespace | undefined {
    return this.byHost.get(host.toLowerCase());
  }

  private at(namespace: ProxyNamespace, name: string): Resolved {
    const upstreamName = namespace.upstreamName(name);
    const storedName = namespace.storedName(upstreamName);
    if (namespace.storagePrefix !== '') return { namespace, name: upstreamName, storedName };
    const slash = storedName.indexOf('/');
    const first = slash < 0 ? storedName : storedName.slice(0, slash);
    const other = this.reserved.get(first);
    return other === undefined
      ? { namespace, name: upstreamName, storedName }
      : { namespace, name: upstreamName, storedName, conflict: `${first}/ is the registry ${other} here` };
  }
}

/** The read side of one repository. */
interface RepositoryStores {
  readonly manifests: ManifestService;
  readonly blobs: BlobService;
  readonly tags: TagService;
  /** The referrers API (OCI 1.1); undefined: not served for this repository. */
  readonly referrers?: ReferrersService;
}

/** A client's name resolved: the stores that serve it, or why that spelling is refused. */
type Served =
  | {
      /** The name the stores know (`library/busybox` for a client's `busybox` on Docker Hub). */
      readonly name: string;
      /** The one name its content is stored under (`ghcr.io/org/app` for `org/app?ns=ghcr.io`). */
      readonly storedName: string;
      readonly stores: RepositoryStores;
      /** True for a hosted repository (pushed to here, never asked of an upstream). */
      readonly hosted: boolean;
    }
  | { readonly refused: string };

/** Resolves names against the upstream namespaces and the hosted repositories. */
export class ServedNames {
  constructor(
    private readonly router: NamespaceRouter,
    private readonly isHosted: (name: string) => boolean,
    private readonly hosted: RepositoryStores | undefined,
  ) {}

  /** A client's (valid) name and containerd's `ns` parameter; undefined: no upstream for that `ns`. */
  resolve(name: string, ns: string | undefined): Served | undefined {
    if (this.hosted && this.isHosted(name)) return { name, storedName: name, stores: this.hosted, hosted: true };
    const found = this.router.resolve(name, ns);
    if (!found) return undefined;
    if (found.conflict) return { refused: found.conflict };
    if (this.isHosted(found.storedName)) return { refused: `${found.storedName} is a hosted repository; name it as such` };
    return { name: found.name, storedName: found.storedName, stores: storesOf(found.namespace), hosted: false };
  }

  /** The one stored name of a repository as a client names it (mount sources); undefined: not served here, or refused. */
  storedName(clientName: string): string | undefined {
    const found = this.resolve(clientName, undefined);
    return found && 'storedName' in found ? found.storedName : undefined;
  }
}

function storesOf(n: ProxyNamespace): RepositoryStores {
  return { manifests: n.manifests, blobs: n.blobs, tags: n.tags, referrers: n.referrers };
}
