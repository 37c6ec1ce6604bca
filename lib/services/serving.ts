/**
 * Which stores serve a name: the one resolution of a client's repository name that the hosted
 * check, authorization, mounts and storage all use. A hosted name (`CachePolicy.isHosted`, the only
 * place that decides it) is served by the hosted stores under the name as written; any other by its
 * upstream's proxy stores, stored under that namespace's prefix. A proxied spelling whose stored
 * name is hosted (`docker.io/corp/app` for a hosted `corp/`, `busybox` for a hosted `library/`) or
 * belongs to another registry here is refused, so no name is reached by a second spelling that
 * skips the first one's rules.
 */
import type { BlobService, ManifestService, ReferrersService, TagService } from '../stores.js';
import type { NamespaceRouter } from '../proxy/namespace-router.js';
import type { ProxyNamespace } from '../proxy/namespace.js';

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
