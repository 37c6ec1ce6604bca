/** Reads a V8 `.cpuprofile` (from `node --cpu-prof`) and sums self time per function. */
import { readFile } from 'node:fs/promises';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** One function's share of the samples. */
export interface SelfTime {
  readonly name: string;
  readonly ms: number;
  readonly share: number;
}

/** Self time per function (`name file:line`), largest first, idle left out of the shares. */
export async function selfTimes(path: string): Promise<SelfTime[]> {
  const profile = JSON.parse(await readFile(path, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const totals = new Map<string, number>();
  profile.samples.forEach((id, i) => {
    const f = byId.get(id)!.callFrame;
    const file = f.url.replace(/^file:\/\/.*?\/(node_modules|dist)\//, '$1/').replace(/^node:/, 'node:');
    const name = `${f.functionName || '(anonymous)'} ${file ? `${file}:${f.lineNumber + 1}` : ''}`.trim();
    totals.set(name, (totals.get(name) ?? 0) + (profile.timeDeltas[i] ?? 0) / 1000);
  });
  const busy = [...totals].filter(([n]) => n !== '(idle)').reduce((s, [, ms]) => s + ms, 0);
  return [...totals].map(([name, ms]) => ({ name, ms, share: name === '(idle)' ? NaN : ms / busy })).sort((a, b) => b.ms - a.ms);
}

/**
 * The share of a profile's busy samples taken with one of `functions` on the stack (their
 * inclusive time), counting only the samples taken between `from` and `to` (microseconds of the
 * system's monotonic clock, as `process.hrtime` gives them in any process: V8 stamps its samples
 * with that clock). Samples are counted, not weighed by the time since the previous one: on a
 * busy machine a process descheduled for a while gets one sample with a long delta, which would
 * give whatever it was doing then all of that time.
 */
export async function inclusiveShare(path: string, functions: ReadonlySet<string>, from: number, to: number): Promise<{ busy: number; under: number }> {
  const profile = JSON.parse(await readFile(path, 'utf8')) as CpuProfile & { startTime: number; nodes: Array<ProfileNode & { children?: number[] }> };
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const under = new Map<number, boolean>();
  const isUnder = (id: number): boolean => {
    let known = under.get(id);
    if (known === undefined) {
      const p = parent.get(id);
      known = functions.has(byId.get(id)!.callFrame.functionName) || (p !== undefined && isUnder(p));
      under.set(id, known);
    }
    return known;
  };
  let t = profile.startTime;
  let busy = 0;
  let inside = 0;
  profile.samples.forEach((id, i) => {
    t += profile.timeDeltas[i] ?? 0;
    if (t < from || t > to || byId.get(id)!.callFrame.functionName === '(idle)') return;
    busy++;
    if (isUnder(id)) inside++;
  });
  return { busy, under: inside };
}
