/** The samples a run collects: one value per metric, server and round. */
import type { OfficialId } from './officials.js';

/** Who a sample was measured on: a contender, or a ceiling. */
export type Who = 'ours' | OfficialId | 'nginx' | 'nginx-wrk' | 'express' | 'node-http';

/** Samples by metric id, then server, indexed by round. */
export class Results {
  readonly samples: Record<string, Partial<Record<Who, Array<number | null>>>> = {};
  /** Notes worth reading next to the numbers (errors, failed runs). */
  readonly notes: string[] = [];

  /** Records `value` for `metric` measured on `who` in `round`. */
  add(metric: string, who: Who, round: number, value: number): void {
    const byWho = (this.samples[metric] ??= {});
    const list = (byWho[who] ??= []);
    while (list.length <= round) list.push(null);
    list[round] = value;
  }

  /** The values of `metric` on `who` (rounds without one left out). */
  values(metric: string, who: Who): number[] {
    return (this.samples[metric]?.[who] ?? []).filter((v): v is number => v !== null);
  }

  /** Per-round `a / b` for rounds where both were measured. */
  ratios(metric: string, a: Who, b: Who): number[] {
    const xs = this.samples[metric]?.[a] ?? [];
    const ys = this.samples[metric]?.[b] ?? [];
    const out: number[] = [];
    for (let i = 0; i < Math.min(xs.length, ys.length); i++) {
      const x = xs[i];
      const y = ys[i];
      if (x != null && y != null && y !== 0) out.push(x / y);
    }
    return out;
  }
}

/** The median of `xs` (NaN when empty). */
export function median(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}
