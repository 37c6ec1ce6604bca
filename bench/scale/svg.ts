/**
 * The scaling curves as one SVG (hand-written, no dependency): a panel per measure, the cache's
 * size on a logarithmic x axis, the measure on a logarithmic y axis, ours against each official.
 */
import { officialsIn, SCALE_METRICS, scaleName, scaleValue, sizeLabel, sizesOf, type ScaleMetricId, type ScaleSample } from './report.js';

const PANELS: ScaleMetricId[] = [
  'ready_s',
  'settle_s',
  'idle_cpu',
  'trickle_cpu',
  'rss_mib',
  'digest_rps',
  'digest_p99_ms',
  'catalog_s',
  'tags_s',
  'gc_s',
  'page_first_byte_s',
];
const COLS = 4;
const W = 250;
const H = 190;
const PAD = { left: 48, right: 12, top: 30, bottom: 34 };
/** The officials' line styles, in their order (ours: solid blue). */
const OFFICIAL_STYLES = [
  { color: '#d0641a', dash: '5,4' },
  { color: '#2a9d3a', dash: '2,3' },
  { color: '#8a3fb0', dash: '8,3,2,3' },
];

/** Ours and every official in `samples`, each with its line style. */
function series(samples: readonly ScaleSample[]): Array<{ who: ScaleSample['who']; color: string; dash: string }> {
  return [
    { who: 'ours' as const, color: '#1f5fbf', dash: '' },
    ...officialsIn(samples).map((who, i) => ({ who, ...OFFICIAL_STYLES[i % OFFICIAL_STYLES.length]! })),
  ];
}

const esc = (s: string): string => s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);

/** A short number for an axis label. */
function short(v: number): string {
  if (v >= 1000) return `${Number((v / 1000).toPrecision(3))}k`;
  return String(Number(v.toPrecision(2)));
}

function panel(samples: readonly ScaleSample[], metric: ScaleMetricId, x0: number, y0: number): string {
  const m = SCALE_METRICS.find((x) => x.id === metric)!;
  const sizes = sizesOf(samples);
  const points = series(samples).map((s) => ({
    ...s,
    values: sizes.map((n) => ({ n, v: scaleValue(samples, n, s.who, metric) })).filter((p) => Number.isFinite(p.v)),
  }));
  const all = points.flatMap((p) => p.values.map((x) => x.v));
  const out = [
    `<g transform="translate(${x0},${y0})">`,
    `<text x="${W / 2}" y="16" text-anchor="middle" class="title">${esc(m.label.trim())} (${esc(m.unit)})</text>`,
  ];
  const iw = W - PAD.left - PAD.right;
  const ih = H - PAD.top - PAD.bottom;
  out.push(`<rect x="${PAD.left}" y="${PAD.top}" width="${iw}" height="${ih}" class="frame"/>`);
  if (all.length === 0 || sizes.length === 0) {
    out.push(`<text x="${W / 2}" y="${H / 2}" text-anchor="middle" class="note">not measured</text></g>`);
    return out.join('\n');
  }
  // Log axes; a y range of at least one decade, values at or below zero drawn at the floor.
  const positive = all.filter((v) => v > 0);
  let hi = Math.log10(Math.max(...positive, 1e-3));
  let lo = Math.log10(Math.min(...positive, 10 ** hi));
  if (hi - lo < 1) lo = hi - 1;
  lo = Math.floor(lo);
  hi = Math.ceil(hi);
  const [sx0, sx1] = [Math.log10(sizes[0]!), Math.log10(sizes[sizes.length - 1]!)];
  const x = (n: number): number => PAD.left + (sx1 === sx0 ? iw / 2 : ((Math.log10(n) - sx0) / (sx1 - sx0)) * iw);
  const y = (v: number): number => PAD.top + ih - ((Math.log10(Math.max(v, 10 ** lo)) - lo) / (hi - lo)) * ih;
  for (let e = lo; e <= hi; e++) {
    out.push(`<line x1="${PAD.left}" x2="${PAD.left + iw}" y1="${y(10 ** e)}" y2="${y(10 ** e)}" class="grid"/>`);
    out.push(`<text x="${PAD.left - 4}" y="${y(10 ** e) + 3}" text-anchor="end" class="tick">${short(10 ** e)}</text>`);
  }
  for (const n of sizes) out.push(`<text x="${x(n)}" y="${PAD.top + ih + 14}" text-anchor="middle" class="tick">${sizeLabel(n)}</text>`);
  for (const p of points) {
    if (p.values.length === 0) continue;
    const d = p.values.map((q, i) => `${i === 0 ? 'M' : 'L'}${x(q.n).toFixed(1)},${y(q.v).toFixed(1)}`).join(' ');
    out.push(`<path d="${d}" fill="none" stroke="${p.color}" stroke-width="2" ${p.dash ? `stroke-dasharray="${p.dash}"` : ''}/>`);
    for (const q of p.values)
      out.push(
        `<circle cx="${x(q.n).toFixed(1)}" cy="${y(q.v).toFixed(1)}" r="3" fill="${p.color}"><title>${p.who} ${sizeLabel(q.n)}: ${Number(q.v.toPrecision(3))} ${esc(m.unit)}</title></circle>`,
      );
  }
  out.push(`<text x="${PAD.left + iw / 2}" y="${H - 4}" text-anchor="middle" class="axis">schedule entries</text>`, '</g>');
  return out.join('\n');
}

/** The whole picture. */
export function scaleSvg(samples: readonly ScaleSample[]): string {
  const rows = Math.ceil(PANELS.length / COLS);
  const width = COLS * W;
  const height = rows * H + 40;
  const legend = series(samples).map(
    (s, i) =>
      `<g transform="translate(${20 + i * 160},16)"><line x1="0" x2="28" y1="0" y2="0" stroke="${s.color}" stroke-width="2" ${s.dash ? `stroke-dasharray="${s.dash}"` : ''}/><text x="34" y="4" class="legend">${esc(scaleName(s.who))}</text></g>`,
  );
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif">
<style>
.title { font-size: 11px; font-weight: bold; } .tick { font-size: 9px; fill: #444; } .axis { font-size: 9px; fill: #666; }
.legend { font-size: 12px; } .note { font-size: 11px; fill: #888; } .frame { fill: none; stroke: #999; } .grid { stroke: #e3e3e3; }
</style>
<rect width="100%" height="100%" fill="#fff"/>
${legend.join('\n')}
<text x="${width - 10}" y="20" text-anchor="end" class="axis">both axes logarithmic; median over rounds</text>
${PANELS.map((p, i) => panel(samples, p, (i % COLS) * W, 40 + Math.floor(i / COLS) * H)).join('\n')}
</svg>
`;
}
