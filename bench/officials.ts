/**
 * The official registries the bench compares ours with (`BENCH_OFFICIAL_BIN`): one or more
 * executables of distribution's registry (2.8 as Debian's docker-registry, a v3 built from its
 * source, ...), each run with the same configuration file and the same loads as ours, side by side
 * in the same rounds.
 */
import { execFileSync } from 'node:child_process';
import { DISTRIBUTION_BIN } from '../spec/helpers/interop.js';

/** One official contender. */
export interface Official {
  /** Its key in the samples (results.json): `official` for the first, `official-<label>` for the others. */
  readonly id: OfficialId;
  /** How the report names it: `2.8.2`, `3.0.0`, or the label given in the setting. */
  readonly label: string;
  /** Its executable (`serve <config>`, `garbage-collect --dry-run <config>`, `--version`). */
  readonly bin: string;
}

/** The key of an official contender. */
export type OfficialId = 'official' | `official-${string}`;

/** Debian's package for the default contender, which the bench installs when it is missing. */
export const DEFAULT_OFFICIAL_PACKAGE = 'docker-registry';

/** The first line of `bin --version` (`<bin> github.com/docker/distribution v2.8.2+ds1`), or `unknown`. */
export function officialVersion(bin: string): string {
  try {
    return execFileSync(bin, ['--version'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
      .trim()
      .split('\n')[0]!;
  } catch {
    return 'unknown';
  }
}

/** `v2.8.2+ds1` in a version line becomes `2.8.2`; without one, the executable's file name. */
function labelOf(bin: string): string {
  const m = /\sv?(\d+\.\d+\.\d+[\w.-]*)(?:\+\S*)?\s*$/.exec(officialVersion(bin));
  return m ? m[1]! : (bin.split('/').pop() ?? bin);
}

const LABEL = /^[A-Za-z0-9._-]+$/;

/**
 * `BENCH_OFFICIAL_BIN=[label=]path,[label=]path`: the official contenders in report order (default:
 * Debian's docker-registry, or `DOCKER_REGISTRY_BIN`). A label defaults to the version the
 * executable prints. Labels must differ: they name the contenders in the samples and the report.
 */
export function parseOfficials(text: string | undefined, labelFor: (bin: string) => string = labelOf): Official[] {
  const entries = (text ?? DISTRIBUTION_BIN)
    .split(',')
    .map((e) => e.trim())
    .filter((e) => e.length > 0);
  if (entries.length === 0) throw new Error('BENCH_OFFICIAL_BIN names no executable');
  const seen = new Set<string>();
  return entries.map((entry, i) => {
    const eq = entry.indexOf('=');
    const bin = eq >= 0 ? entry.slice(eq + 1) : entry;
    const label = eq >= 0 ? entry.slice(0, eq) : labelFor(bin);
    if (!LABEL.test(label)) throw new Error(`BENCH_OFFICIAL_BIN: the label "${label}" of ${bin} is not [A-Za-z0-9._-]+ (give one as label=path)`);
    if (seen.has(label)) throw new Error(`BENCH_OFFICIAL_BIN: two contenders labelled "${label}" (give labels as label=path)`);
    seen.add(label);
    return { id: i === 0 ? 'official' : `official-${label}`, label, bin };
  });
}

let cached: Official[] | undefined;

/** The official contenders of this run (read once from the environment). */
export function officials(): Official[] {
  return (cached ??= parseOfficials(process.env.BENCH_OFFICIAL_BIN));
}

/** The official contender `id`. */
export function official(id: OfficialId): Official {
  const o = officials().find((x) => x.id === id);
  if (!o)
    throw new Error(
      `no official contender ${id} (BENCH_OFFICIAL_BIN names ${officials()
        .map((x) => x.id)
        .join(', ')})`,
    );
  return o;
}
