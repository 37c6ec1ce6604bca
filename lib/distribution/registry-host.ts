/**
 * Registry hosts as clients name them in image references (`docker.io/library/busybox`,
 * `ghcr.io/org/app`), and Docker Hub's peculiarities.
 */

/** Hosts under which the registry is Docker Hub, where `busybox` means `library/busybox`. */
const DOCKER_HUB_HOSTS = new Set(['registry-1.docker.io', 'index.docker.io', 'docker.io', 'registry.hub.docker.com']);

/** True when `url` points at Docker Hub. */
export function isDockerHub(url: string): boolean {
  return DOCKER_HUB_HOSTS.has(new URL(url).hostname);
}

/** The host clients use for the registry at `url`: `docker.io` for Docker Hub, else `host[:port]`. */
export function registryHostOf(url: string): string {
  return isDockerHub(url) ? 'docker.io' : new URL(url).host.toLowerCase();
}

/**
 * The repository path component under which a registry's content is stored (`ghcr.io`;
 * `registry.local:5000` becomes `registry.local_5000`, since `:` is not allowed in a name).
 */
export function storageComponentOf(host: string): string {
  return host.replace(':', '_');
}

/**
 * What a registry's repository names are prefixed with in storage: nothing for the default upstream
 * (distribution's layout exactly), `ghcr.io/` for another (extension `proxy.upstreams`).
 */
export function storagePrefixOf(host: string, isDefault: boolean): string {
  return isDefault ? '' : `${storageComponentOf(host)}/`;
}

/** Docker Hub's official images live under `library/`: `busybox` is `library/busybox`. */
export function dockerHubName(name: string): string {
  return name.includes('/') ? name : `library/${name}`;
}
