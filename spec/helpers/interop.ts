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

/** `describe` for interop suites. */
export const describeInterop: (name: string, fn: () => void) => void = interopAvailable()
  ? describe
  : process.env.CI
    ? (name, _fn) =>
        describe(name, () => {
          test('interop prerequisites', () => {
            throw new Error('interop tier requires docker-registry and skopeo (.ci/run installs them)');
          });
        })
    : describe.skip;
