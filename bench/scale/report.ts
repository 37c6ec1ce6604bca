/** The scaling scenario's samples, table (Markdown) and targets (issue 15). */
import { median } from '../results.js';
import { officials, type OfficialId } from '../officials.js';

/** One contender's measures at one size in one round. */
export interface ScaleSample {
  readonly size: number;
  readonly who: 'ours' | OfficialId;
  readonly round: number;
  readonly values: Partial<Record<ScaleMetricId, number>>;
}

/** The measures, in table order. */
export const SCALE_METRICS = [
  { id: 'ready_s', label: 'start until /v2/ answers', unit: 's', digits: 2 },
  { id: 'settle_s', label: 'background start-up work after that', unit: 's', digits: 1 },
  { id: 'idle_cpu', label: 'CPU, no client, nothing expiring', unit: '% core', digits: 1 },
  { id: 'trickle_cpu', label: 'CPU, no client, 10 expiries/s', unit: '% core', digits: 1 },
  { id: 'rss_mib', label: 'RSS when idle', unit: 'MiB', digits: 0 },
  { id: 'rss_later_mib', label: 'RSS idle a minute later', unit: 'MiB', digits: 0 },
  { id: 'digest_rps', label: 'manifest by digest, 16 conn., expiries trickling', unit: 'req/s', digits: 0 },
  { id: 'digest_p50_ms', label: '  p50', unit: 'ms', digits: 2 },
  { id: 'digest_p99_ms', label: '  p99', unit: 'ms', digits: 1 },
  { id: 'digest_max_ms', label: '  max', unit: 'ms', digits: 0 },
  { id: 'catalog_s', label: 'catalog walk, n=1000 pages', unit: 's', digits: 2 },
  { id: 'tags_s', label: 'tags list, 10,000 tags', unit: 's', digits: 3 },
  { id: 'gc_s', label: 'garbage-collect --dry-run', unit: 's', digits: 1 },
  { id: 'page_first_byte_s', label: 'cache page, first byte', unit: 's', digits: 3 },
  { id: 'entries', label: 'schedule entries', unit: '', digits: 0 },
] as const;

export type ScaleMetricId = (typeof SCALE_METRICS)[number]['id'];

/** The median over rounds of `metric` for `who` at `size` (NaN when not measured). */
export function scaleValue(samples: readonly ScaleSample[], size: number, who: ScaleSample['who'], metric: ScaleMetricId): number {
  return median(samples.filter((s) => s.size === size && s.who === who && s.values[metric] !== undefined).map((s) => s.values[metric]!));
}

/** A target of issue 15, for the sizes it names. */
interface ScaleTarget {
  readonly label: string;
  readonly sizes: readonly number[];
  value(samples: readonly ScaleSample[], size: number): number;
  readonly limit: (size: number) => number;
  readonly op: '<=' | '<' | '>=';
}

const ours = (m: ScaleMetricId) => (x: readonly ScaleSample[], size: number) => scaleValue(x, size, 'ours', m);
const BIG = [100_000, 1_000_000];

/** The official contenders in `samples`, in their order (the first is `official`). */
export function officialsIn(samples: readonly ScaleSample[]): OfficialId[] {
  return [...new Set(samples.map((s) => s.who))]
    .filter((w): w is OfficialId => w !== 'ours')
    .sort((a, b) => (a === 'official' ? -1 : b === 'official' ? 1 : a.localeCompare(b)));
}

/** How the table names `who`: `official 2.8.2` (its label in this run's BENCH_OFFICIAL_BIN, or its id). */
export function scaleName(who: ScaleSample['who']): string {
  return who === 'ours' ? 'ours' : `official ${officials().find((o) => o.id === who)?.label ?? who.replace(/^official-?/, '')}`.trim();
}

/** Issue 15's targets against each official contender in `samples`. */
function versus(samples: readonly ScaleSample[]): ScaleTarget[] {
  return officialsIn(samples).flatMap((o): ScaleTarget[] => {
    const vs = (m: ScaleMetricId) => (x: readonly ScaleSample[], size: number) => scaleValue(x, size, 'ours', m) / scaleValue(x, size, o, m);
    return [
      { label: `catalog walk ours/${scaleName(o)}`, sizes: BIG, value: vs('catalog_s'), op: '<=', limit: () => 0.5 },
      { label: `GC --dry-run ours/${scaleName(o)}`, sizes: BIG, value: vs('gc_s'), op: '<=', limit: () => 0.5 },
    ];
  });
}

/** The targets on ours alone (those against the officials: `versus`). */
export const SCALE_TARGETS: ScaleTarget[] = [
  { label: 'ready (s)', sizes: BIG, value: ours('ready_s'), op: '<=', limit: (n) => (n >= 1_000_000 ? 2 : 1) },
  { label: 'idle CPU, nothing expiring (% core)', sizes: BIG, value: ours('idle_cpu'), op: '<', limit: () => 2 },
  { label: 'idle CPU, 10 expiries/s (% core)', sizes: BIG, value: ours('trickle_cpu'), op: '<', limit: () => 10 },
  { label: 'RSS (MiB)', sizes: BIG, value: ours('rss_mib'), op: '<=', limit: (n) => (n >= 1_000_000 ? 400 : 200) },
  { label: 'p99 manifest by digest (ms)', sizes: BIG, value: ours('digest_p99_ms'), op: '<=', limit: () => 10 },
  {
    label: 'req/s vs the smallest cache',
    sizes: BIG,
    value: (x, size) => scaleValue(x, size, 'ours', 'digest_rps') / scaleValue(x, Math.min(...x.map((s) => s.size)), 'ours', 'digest_rps'),
    op: '>=',
    limit: () => 0.8,
  },
  { label: 'cache page first byte (s)', sizes: BIG, value: ours('page_first_byte_s'), op: '<=', limit: () => 1 },
];

/** The sizes measured, ascending. */
export function sizesOf(samples: readonly ScaleSample[]): number[] {
  return [...new Set(samples.map((s) => s.size))].sort((a, b) => a - b);
}

/** `1k`, `100k`, `1M`. */
export function sizeLabel(n: number): string {
  return n >= 1_000_000 ? `${n / 1_000_000}M` : n >= 1000 ? `${n / 1000}k` : String(n);
}

/** The table (ours and each official per size) and the targets, as Markdown. */
export function formatScaleReport(samples: readonly ScaleSample[]): string {
  const sizes = sizesOf(samples);
  const fmt = (v: number, d: number): string => (Number.isFinite(v) ? v.toFixed(d) : 'n/a');
  const whos: Array<ScaleSample['who']> = ['ours', ...officialsIn(samples)];
  const lines = [
    `| measure | unit | ${sizes.flatMap((n) => whos.map((w) => `${sizeLabel(n)} ${scaleName(w)}`)).join(' | ')} |`,
    `| --- | --- | ${sizes.flatMap(() => whos.map(() => '---:')).join(' | ')} |`,
  ];
  for (const m of SCALE_METRICS) {
    const cells = sizes.flatMap((n) => whos.map((w) => fmt(scaleValue(samples, n, w, m.id), m.digits)));
    lines.push(`| ${m.label} | ${m.unit} | ${cells.join(' | ')} |`);
  }
  lines.push('', '| target | size | measured | wanted | |', '| --- | --- | ---: | --- | --- |');
  for (const t of [...SCALE_TARGETS, ...versus(samples)]) {
    for (const n of t.sizes) {
      if (!sizes.includes(n)) continue;
      const v = t.value(samples, n);
      const limit = t.limit(n);
      const pass = !Number.isFinite(v) ? null : t.op === '<=' ? v <= limit : t.op === '<' ? v < limit : v >= limit;
      lines.push(`| ${t.label} | ${sizeLabel(n)} | ${fmt(v, 3)} | ${t.op} ${limit} | ${pass === null ? 'not measured' : pass ? 'PASS' : 'MISS'} |`);
    }
  }
  return lines.join('\n');
}
