/**
 * The gate of the interop tier: it runs when Debian's docker-registry and skopeo are installed;
 * in CI (CI=true) their absence fails the suite instead of skipping it.
 */
import { existsSync } from 'node:fs';

export const DISTRIBUTION_BIN = process.env.DOCKER_REGISTRY_BIN ?? '/usr/bin/docker-registry';
export const SKOPEO_BIN = '/usr/bin/skopeo';

/** True when both real peers are installed. */
export function interopAvailable(): boolean {
  return existsSync(DISTRIBUTION_BIN) && existsSync(SKOPEO_BIN);
}

/**
 * `describe` for interop suites; `extra` names a further prerequisite (containerd) with its check.
 * Missing prerequisites skip the suite on a developer machine and fail it in CI.
 */
export function describeInterop(name: string, fn: () => void, extra?: { what: string; available: () => boolean }): void {
  if (interopAvailable() && (extra?.available() ?? true)) {
    describe(name, fn);
  } else if (process.env.CI) {
    describe(name, () => {
      test('interop prerequisites', () => {
        throw new Error(
          `interop tier requires docker-registry and skopeo${extra ? ` and ${extra.what}` : ''} (.ci/prerequisites, run by npm test, installs them)`,
        );
      });
    });
  } else {
    describe.skip(name, fn);
  }
}
