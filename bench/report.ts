/** Turns the samples into the table (medians, ratios ours/official per official contender) and the PASS/MISS targets. */
import { median, type Results, type Who } from './results.js';
import { officials, type Official } from './officials.js';

/** How a metric is shown. */
export interface MetricView {
  readonly id: string;
  readonly label: string;
  readonly unit: string;
  readonly scale: number;
  readonly digits: number;
}

const MiB = 2 ** 20;

/** Every metric, in table order. */
export const METRICS: MetricView[] = [
  { id: 'warm_blob', label: '1. warm 256 MiB blob, 4 readers', unit: 'MiB/s', scale: 1 / MiB, digits: 0 },
  { id: 'warm_blob_cpu', label: '   (server CPU per GiB served)', unit: 's/GiB', scale: 1, digits: 3 },
  { id: 'manifest_tag', label: '2. manifest by tag, 16 clients', unit: 'req/s', scale: 1, digits: 0 },
  { id: 'manifest_digest', label: '3. manifest by digest, 16 clients', unit: 'req/s', scale: 1, digits: 0 },
  { id: 'cold_pull', label: '4. cold pull (skopeo), wall time', unit: 's', scale: 1, digits: 2 },
  { id: 'upstream_x', label: '5. upstream bytes, 10 cold pulls', unit: 'x image', scale: 1, digits: 3 },
  { id: 'concurrent_pulls_s', label: '   (10 cold pulls, wall time)', unit: 's', scale: 1, digits: 2 },
  { id: 'rss_streams', label: '6a. peak RSS, cold streams', unit: 'MiB', scale: 1 / MiB, digits: 0 },
  { id: 'streams_s', label: '    (cold streams, wall time)', unit: 's', scale: 1, digits: 1 },
  { id: 'rss_slow', label: '6b. peak RSS, 200 slow clients', unit: 'MiB', scale: 1 / MiB, digits: 0 },
  { id: 's3_cold_pull_s3', label: 's3. cold pull on S3 (Ceph RGW)', unit: 's', scale: 1, digits: 2 },
  { id: 's3_cold_pull_fs', label: '    (same pull, filesystem)', unit: 's', scale: 1, digits: 2 },
  { id: 's3_cold_pull_ratio', label: '    (S3 / filesystem, per round)', unit: 'x', scale: 1, digits: 2 },
  { id: 's3_redirect_p50_ms', label: '    307 redirect, p50', unit: 'ms', scale: 1, digits: 2 },
  { id: 's3_redirect_p99_ms', label: '    307 redirect, p99', unit: 'ms', scale: 1, digits: 2 },
  { id: 's3_streamed_mibs', label: '    warm blob streamed (no redirect)', unit: 'MiB/s', scale: 1, digits: 0 },
  { id: 's3_direct_mibs', label: '    (same object, direct gateway GET)', unit: 'MiB/s', scale: 1, digits: 0 },
];

/** A target (issue 7's, and the scenarios' that register more). */
export interface Target {
  readonly label: string;
  /** The value compared: a median per-round ratio, or ours' worst round. */
  value(r: Results): number;
  readonly op: '>=' | '<=' | '<';
  readonly limit: number;
}

const ratio = (metric: string, b: Who) => (r: Results) => median(r.ratios(metric, 'ours', b));
const worst = (metric: string) => (r: Results) => Math.max(...r.values(metric, 'ours')) / MiB;
/** Per-round ratio of two metrics of ours (the S3 scenario compares ours with itself and the gateway). */
const between = (a: string, b: string) => (r: Results) => {
  const xs = r.samples[a]?.ours ?? [];
  const ys = r.samples[b]?.ours ?? [];
  return median(xs.flatMap((x, i) => (x != null && ys[i] != null && ys[i] !== 0 ? [x / ys[i]!] : [])));
};

/** Issue 7's targets against one official contender (the same for each of them, labelled with its label). */
function versus(o: Official): Target[] {
  const name = `ours/official ${o.label}`;
  return [
    { label: `warm blob ${name}`, value: ratio('warm_blob', o.id), op: '>=', limit: 1 },
    { label: `manifest by tag ${name}`, value: ratio('manifest_tag', o.id), op: '>=', limit: 5 },
    { label: `manifest by digest ${name}`, value: ratio('manifest_digest', o.id), op: '>=', limit: 3 },
    { label: `cold pull time ${name}`, value: ratio('cold_pull', o.id), op: '<=', limit: 1 },
  ];
}

/** The targets that compare ours with itself or a ceiling (those against the officials: `versus`). */
export const TARGETS: Target[] = [
  { label: 'warm blob ours/nginx ceiling', value: ratio('warm_blob', 'nginx'), op: '>=', limit: 0.8 },
  // Issue 17: the hot path at its ceiling (a bare express handler sending the same bytes, same run).
  { label: 'manifest by digest ours/bare express', value: ratio('manifest_digest', 'express'), op: '>=', limit: 0.9 },
  // Issue 33: past express, half of a bare `node:http` handler sending the same bytes (same run).
  { label: 'manifest by digest ours/bare node:http', value: ratio('manifest_digest', 'node-http'), op: '>=', limit: 0.5 },
  { label: 'manifest by tag / by digest (ours)', value: between('manifest_tag', 'manifest_digest'), op: '>=', limit: 0.8 },
  // Body bytes exactly once; 0.1% leaves room for nothing but manifest re-reads.
  { label: 'upstream bytes, 10 pulls (x image)', value: (r) => median(r.values('upstream_x', 'ours')), op: '<=', limit: 1.001 },
  { label: 'peak RSS cold streams (MiB, worst)', value: worst('rss_streams'), op: '<', limit: 200 },
  { label: 'peak RSS slow clients (MiB, worst)', value: worst('rss_slow'), op: '<', limit: 200 },
  // Issue 16, BENCH_ONLY=s3.
  { label: 'cold pull on S3 / on filesystem', value: between('s3_cold_pull_s3', 's3_cold_pull_fs'), op: '<=', limit: 1.1 },
  { label: '307 redirect p99 (ms, worst)', value: (r) => Math.max(...r.values('s3_redirect_p99_ms', 'ours')), op: '<=', limit: 2 },
  { label: 'streamed / direct gateway GET', value: between('s3_streamed_mibs', 's3_direct_mibs'), op: '>=', limit: 0.8 },
];

/** Adds a scenario's metrics (after the built-in ones, in the order given) and targets to the report. */
export function registerReport(more: { metrics: MetricView[]; targets: Target[] }): void {
  METRICS.push(...more.metrics);
  TARGETS.push(...more.targets);
}

/** One target's outcome. */
export interface TargetOutcome {
  readonly label: string;
  readonly value: number;
  readonly target: string;
  /** null when the scenario was not run. */
  readonly pass: boolean | null;
}

/** Evaluates every target: those against each official contender first, in their order. */
export function evaluate(r: Results): TargetOutcome[] {
  return [...officials().flatMap(versus), ...TARGETS].map((t) => {
    const v = t.value(r);
    const pass = !Number.isFinite(v) ? null : t.op === '>=' ? v >= t.limit : t.op === '<=' ? v <= t.limit : v < t.limit;
    return { label: t.label, value: v, target: `${t.op} ${t.limit}`, pass };
  });
}

/** An official contender's cell of a row: its median and the median per-round ratio ours/it. */
export interface OfficialCell {
  readonly id: string;
  readonly label: string;
  readonly value: number;
  readonly ratio: number;
}

/** One table row: medians per server, and per official contender the median per-round ratio ours/it. */
export interface Row {
  readonly metric: string;
  readonly label: string;
  readonly unit: string;
  readonly ours: number;
  readonly officials: OfficialCell[];
  readonly nginx?: number;
  /** The bare `node:http` handler (the manifest by digest's second ceiling). */
  readonly nodeHttp?: number;
  readonly rounds: number;
}

/** The table rows (in the metric's display unit). */
export function rows(r: Results): Row[] {
  return METRICS.filter((m) => r.samples[m.id]).map((m) => {
    const med = (who: Who) => median(r.values(m.id, who)) * m.scale;
    // The ceiling column: nginx for the warm blob, the bare express handler for the manifest by digest.
    const ceiling = r.values(m.id, 'nginx').length ? 'nginx' : 'express';
    const nginx = r.values(m.id, ceiling).length ? med(ceiling) : undefined;
    const cells = officials().map((o) => ({ id: o.id, label: o.label, value: med(o.id), ratio: median(r.ratios(m.id, 'ours', o.id)) }));
    const nodeHttp = r.values(m.id, 'node-http').length ? med('node-http') : undefined;
    return { metric: m.id, label: m.label, unit: m.unit, ours: med('ours'), officials: cells, nginx, nodeHttp, rounds: r.values(m.id, 'ours').length };
  });
}

/** The table and targets as Markdown (printed, and pasted into docs/performance.md). */
export function formatReport(r: Results): string {
  const digits = new Map(METRICS.map((m) => [m.id, m.digits]));
  const fmt = (v: number | undefined, d: number): string => (v === undefined || !Number.isFinite(v) ? '' : v.toFixed(d));
  const heads = officials().map((o) => `official ${o.label} | ours/${o.label}`);
  const lines = [
    `| scenario | unit | ours | ${heads.join(' | ')} | ceiling (nginx; bare express) | bare node:http |`,
    `| --- | --- | ---: | ${heads.map(() => '---: | ---:').join(' | ')} | ---: | ---: |`,
  ];
  for (const row of rows(r)) {
    const d = digits.get(row.metric) ?? 2;
    const cells = row.officials.map((c) => `${fmt(c.value, d)} | ${fmt(c.ratio, 2)}`);
    lines.push(`| ${row.label} | ${row.unit} | ${fmt(row.ours, d)} | ${cells.join(' | ')} | ${fmt(row.nginx, d)} | ${fmt(row.nodeHttp, d)} |`);
  }
  lines.push('', '| target | measured | wanted | |', '| --- | ---: | --- | --- |');
  for (const t of evaluate(r)) lines.push(`| ${t.label} | ${fmt(t.value, 3)} | ${t.target} | ${t.pass === null ? 'not run' : t.pass ? 'PASS' : 'MISS'} |`);
  if (r.notes.length) lines.push('', ...r.notes.map((n) => `- ${n}`));
  return lines.join('\n');
}
