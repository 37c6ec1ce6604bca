/**
 * The contracts between the router and the route modules of lib/api/handlers: what a route serves
 * from (`RouteServices`, wired by lib/server.ts), the repository it answers for (`Target`), and
 * what a route module exports (`Resource`). Types only; the router imports the handlers and both
 * import this, so neither imports the other.
 */
import type { Request, Response } from 'express';
import type { Logger } from 'winston';
import type { AccessController } from '../auth/access.js';
import type { BlobService, ManifestService, ReferrersService, TagService } from '../stores.js';
import type { Writable } from './writable.js';
import type { RouteEvents } from './events.js';

/** The stores that serve one repository, and its name there. */
export interface Target {
  /** The name the stores know (`library/busybox` for a client's `busybox` on Docker Hub). */
  readonly name: string;
  /** The one name its content is stored under (`ghcr.io/org/app` for `org/app?ns=ghcr.io`). */
  readonly storedName: string;
  readonly manifests: ManifestService;
  readonly blobs: BlobService;
  readonly tags: TagService;
  /** The referrers API (OCI 1.1); undefined: not served for this repository. */
  readonly referrers?: ReferrersService;
  /** The write side (hosted repositories, extension `proxy.hosted`); undefined: read only. */
  readonly writable?: Writable;
}

/** The read side of one repository. */
interface RepositoryStores {
  readonly manifests: ManifestService;
  readonly blobs: BlobService;
  readonly tags: TagService;
  /** The referrers API (OCI 1.1); undefined: not served for this repository. */
  readonly referrers?: ReferrersService;
}

/** A client's name resolved (lib/services/serving.ts): the stores that serve it, or why that spelling is refused. */
type ResolvedName =
  { readonly name: string; readonly storedName: string; readonly stores: RepositoryStores; readonly hosted: boolean } | { readonly refused: string };

/** Which stores serve a name. */
interface NameResolver {
  /** A client's (valid) name and containerd's `ns` parameter; undefined: no upstream for that `ns`. */
  resolve(name: string, ns: string | undefined): ResolvedName | undefined;
}

/** What the routes serve from (wired by lib/server.ts). */
export interface RouteServices {
  /** Cached repository names in lexical order, after `last`, at most `n`. */
  listRepositories(page: { n: number; last?: string }): Promise<string[]>;
  /** Which stores serve a client's name (hosted, or which upstream's), decided once per request. */
  readonly names: NameResolver;
  /** The write side of every hosted name (extension `proxy.hosted`); undefined: none. */
  readonly writable?: Writable;
  readonly maxCatalogEntries: number;
  /** `tags.maxtags`: a larger `n` on a tag list is lowered to it (with a `Link` to the rest). */
  readonly maxTags: number;
  readonly logger: Logger;
  /** The configured `auth` controller; undefined when the registry is open. */
  readonly access?: AccessController;
  /** `notifications:` with an enabled endpoint; undefined: no events. */
  readonly events?: RouteEvents;
}

/** One method's handler of a route, with the route's parsed parameters. */
type Handler<P> = (req: Request, res: Response, params: P) => Promise<void> | void;

/** The methods a route serves for one target; any other is `405 UNSUPPORTED`. */
export type MethodTable<P> = Readonly<Partial<Record<'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH' | 'DELETE', Handler<P>>>>;

/** What a route does (one module of lib/api/handlers each). */
export interface Resource<P> {
  /** The route's methods for `target` (undefined for `base` and `catalog`); undefined: the route is not served for it. */
  methods(s: RouteServices, target: Target | undefined): MethodTable<P> | undefined;
  /** Parses and validates the path's parameters (after the access check, as distribution). */
  params(groups: RegExpExecArray): P;
  /**
   * Every method but `GET` and `HEAD` writes (uploads): the router asks whether the client may write
   * before anything else about the request is looked at; for other routes it asks once the method
   * is known to be served (a write method of a writable target).
   */
  readonly writesFirst?: boolean;
}
