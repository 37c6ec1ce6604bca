/**
 * The route-name table of the `/v2/` API (distribution's `registry/api/v2/routes.go`): each route's
 * name and path pattern, in the order they are tried. Paths are matched on the raw (undecoded) URL;
 * the name in a path is validated before anything uses it, so percent-encoded tricks fail validation
 * instead of naming another path.
 */
import type { Subject } from './request-state.js';

/** The routes of the API, by distribution's route names. */
export type RouteName = 'base' | 'catalog' | 'blob-upload' | 'blob-upload-chunk' | 'manifest' | 'blob' | 'tags' | 'referrers';

/** One entry of the table. */
interface RouteEntry {
  readonly name: RouteName;
  /** Group 1 is the repository name for every route but `base` and `catalog`. */
  readonly pattern: RegExp;
  /** What an upstream 404 on this route means (the error handler picks `*_UNKNOWN` by it). */
  readonly subject?: Subject;
}

/** The table, in matching order (uploads before blobs: `/blobs/uploads/` is not a digest). */
const ROUTES: readonly RouteEntry[] = [
  { name: 'base', pattern: /^\/v2\/?$/ },
  { name: 'catalog', pattern: /^\/v2\/_catalog$/ },
  { name: 'blob-upload', pattern: /^\/v2\/(.+)\/blobs\/uploads\/?$/ },
  { name: 'blob-upload-chunk', pattern: /^\/v2\/(.+)\/blobs\/uploads\/(.+)$/ },
  { name: 'manifest', pattern: /^\/v2\/(.+)\/manifests\/([^/]+)$/, subject: 'manifest' },
  { name: 'blob', pattern: /^\/v2\/(.+)\/blobs\/([^/]+)$/, subject: 'blob' },
  { name: 'tags', pattern: /^\/v2\/(.+)\/tags\/list$/, subject: 'tags' },
  { name: 'referrers', pattern: /^\/v2\/(.+)\/referrers\/([^/]+)$/ },
];

/** A matched route and its path groups. */
export interface RouteMatch {
  readonly route: RouteEntry;
  readonly groups: RegExpExecArray;
}

/** The first route whose pattern matches `path` (without query), or undefined. */
export function matchRoute(path: string): RouteMatch | undefined {
  for (const route of ROUTES) {
    const groups = route.pattern.exec(path);
    if (groups) return { route, groups };
  }
  return undefined;
}
