/**
 * The cache page at the mirror's root: what the cache holds, how much it saves, the upstreams'
 * status and the disk, as plain server-side HTML with a little JavaScript (relative times, and a
 * filter of the rows shown). The cached images come a page at a time (`?n=` rows, `?after=` the
 * last row of the previous page) and a filter (`?q=`) is applied by the server, so the page stays
 * quick and useful with 100,000 tags. Only a browser asking for `text/html` gets it; every other
 * client (load-balancer probes) gets distribution's empty 200. With `auth` configured it needs the
 * same credentials as the catalog.
 */
import type { Request, Response } from 'express';
import { formatBytes } from '../config/size.js';
import { PAGE_ROWS, type CacheReport, type ImageRow, type TagReport, type UpstreamReport } from './cache-report.js';

const escapeHtml = (s: string): string => s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

/** A `<time>` the script shows relative to now; the ISO text stays for scripts that do not run. */
const time = (d: Date | undefined, none: string): string => (d ? `<time datetime="${d.toISOString()}">${d.toISOString()}</time>` : none);

/** True when the request comes from a browser (it names `text/html` in `Accept`). */
export function wantsHtml(req: Request): boolean {
  return /\btext\/html\b/.test(req.headers.accept ?? '');
}

/** Sends the page. */
export function sendCachePage(res: Response, report: CacheReport): void {
  const html = renderCachePage(report);
  res.status(200);
  res.setHeader('Content-Type', 'text/html; charset=utf-8');
  res.setHeader('Cache-Control', 'no-store');
  res.setHeader('Content-Length', Buffer.byteLength(html));
  res.end(res.req.method === 'HEAD' ? undefined : html);
}

/** The page's HTML. */
export function renderCachePage(r: CacheReport): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Registry mirror cache</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; }
h1 { font-size: 1.4rem; } h2 { font-size: 1.1rem; margin-top: 2rem; }
.cards { display: flex; gap: 1rem; flex-wrap: wrap; }
.card { border: 1px solid #ccc; border-radius: 6px; padding: .8rem 1.2rem; min-width: 12rem; }
.card strong { display: block; font-size: 1.3rem; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .3rem .6rem; border-bottom: 1px solid #eee; }
td.num { text-align: right; } code { font-size: .85rem; }
.ok { color: #176b1a; } .bad { color: #a4161a; }
</style>
</head>
<body>
<h1>Registry mirror cache</h1>
<p>Generated ${time(r.generatedAt, '')}.</p>
<section aria-label="Summary" class="cards">
${summaryCards(r)}
</section>
<h2>Upstreams</h2>
${upstreamTable(r.upstreams)}
<h2>Cached images</h2>
<p>${countsText(r.counts)}</p>
<form method="get" action="">
<label>Filter <input id="filter" name="q" type="search" placeholder="repository or tag" value="${escapeHtml(r.page.q ?? '')}"></label>
${r.page.n !== PAGE_ROWS ? `<input type="hidden" name="n" value="${r.page.n}">` : ''}<button type="submit">Search the whole cache</button>
</form>
${imageTable(r.rows)}
${pager(r)}
<script>
(function () {
  var rtf = typeof Intl !== 'undefined' && Intl.RelativeTimeFormat ? new Intl.RelativeTimeFormat('en', { numeric: 'auto' }) : null;
  var steps = [[60, 'second'], [60, 'minute'], [24, 'hour'], [365, 'day'], [Infinity, 'year']];
  document.querySelectorAll('time').forEach(function (t) {
    var s = (new Date(t.getAttribute('datetime')) - Date.now()) / 1000;
    for (var i = 0; i < steps.length; i++) {
      if (Math.abs(s) < steps[i][0] || i === steps.length - 1) {
        if (rtf) { t.title = t.textContent; t.textContent = rtf.format(Math.round(s), steps[i][1]); }
        break;
      }
      s /= steps[i][0];
    }
  });
  // Typing filters the rows of this page at once; Enter asks the server for the whole cache.
  var filter = document.getElementById('filter');
  filter.addEventListener('input', function () {
    var q = filter.value.trim().toLowerCase();
    document.querySelectorAll('#images tbody tr').forEach(function (row) {
      row.hidden = q !== '' && row.getAttribute('data-ref').indexOf(q) < 0;
    });
  });
})();
</script>
</body>
</html>
`;
}

function summaryCards(r: CacheReport): string {
  const { requests, hits, bytesServed, bytesFetched } = r.stats;
  const ratio = requests > 0 ? `${((100 * hits) / requests).toFixed(1)} %` : 'no requests yet';
  const cards = [
    ['Hit ratio', ratio, `${hits} of ${requests} requests served from the cache`],
    [
      'Bytes saved',
      formatBytes(Math.max(0, bytesServed - bytesFetched)),
      `${formatBytes(bytesServed)} served, ${formatBytes(bytesFetched)} fetched from upstreams`,
    ],
    ['Disk', diskText(r.disk), volumeText(r.disk)],
  ];
  return cards
    .map(([title, value, detail]) => `<div class="card"><span>${title}</span><strong>${escapeHtml(value!)}</strong><small>${escapeHtml(detail!)}</small></div>`)
    .join('\n');
}

function diskText(d: CacheReport['disk']): string {
  if (d.capBytes !== undefined) return `${formatBytes(d.cacheBytes ?? 0)} of ${formatBytes(d.capBytes)} cap`;
  if (d.cacheBytes !== undefined) return `${formatBytes(d.cacheBytes)} cached`;
  return 'unknown';
}

function volumeText(d: CacheReport['disk']): string {
  const volume =
    d.volumeBytes === undefined || d.volumeFree === undefined ? '' : `${formatBytes(d.volumeFree)} free of ${formatBytes(d.volumeBytes)} on the volume`;
  if (d.capBytes !== undefined) return volume;
  return volume ? `no size cap (proxy.maxsize); ${volume}` : 'no size cap (proxy.maxsize)';
}

function upstreamTable(upstreams: readonly UpstreamReport[]): string {
  const rows = upstreams.map((u) => {
    const state = u.circuitOpen
      ? `<span class="bad">unreachable: circuit open, next try in ${Math.ceil(u.retryInMs / 1000)} s</span>`
      : u.lastFailure && (!u.lastAnswer || u.lastFailure.at > u.lastAnswer)
        ? '<span class="bad">failing</span>'
        : u.lastAnswer
          ? '<span class="ok">reachable</span>'
          : 'not asked yet';
    return `<tr><td>${escapeHtml(u.host)}</td><td><code>${escapeHtml(u.url)}</code></td><td>${state}</td><td>${time(u.lastAnswer, 'never')}</td><td>${
      u.lastFailure ? `${time(u.lastFailure.at, '')}: ${escapeHtml(u.lastFailure.message)}` : 'none'
    }</td><td>${escapeHtml(u.rateLimitRemaining ?? 'not reported')}</td><td>${budgetText(u.budget)}</td></tr>`;
  });
  return `<table id="upstreams"><thead><tr><th>Registry</th><th>URL</th><th>Status</th><th>Last answer</th><th>Last failure</th><th>Rate limit remaining</th><th>Budget spent</th></tr></thead>
<tbody>${rows.join('\n')}</tbody></table>`;
}

/** The budget's state and what was spent of it: charged pulls, pulls the cache saved, free requests, requests answered 429 here. */
function budgetText(b: UpstreamReport['budget']): string {
  if (!b) return 'not tracked';
  const state = b.state === 'low' || b.state === 'exhausted' ? `<span class="bad">${b.state}</span>` : b.state;
  return `${state}: ${b.charged} charged pulls, ${b.saved} served from the cache, ${b.free} free requests, ${b.refused} refused here`;
}

function countsText(c: CacheReport['counts']): string {
  if (!c) return '';
  const text = `${c.repositories} repositories, ${c.tags} tags`;
  return c.complete ? `${text}.` : `${text} so far (the cache is still being counted).`;
}

/** Links to the first and the next page, keeping the filter and the page size. */
function pager(r: CacheReport): string {
  const link = (after: string | undefined): string => {
    const params = new URLSearchParams();
    if (r.page.q) params.set('q', r.page.q);
    if (r.page.n !== PAGE_ROWS) params.set('n', String(r.page.n));
    if (after) params.set('after', after);
    const qs = params.toString();
    return escapeHtml(qs ? `?${qs}` : '?');
  };
  const parts: string[] = [];
  if (r.page.after) parts.push(`<a href="${link(undefined)}" rel="first">First page</a>`);
  if (r.page.next) parts.push(`<a href="${link(r.page.next)}" rel="next">${r.page.stoppedEarly ? 'Search further' : 'Next page'}</a>`);
  const note = r.page.stoppedEarly ? '<p>The search stopped for now to answer quickly; it goes on from there on the next page.</p>\n' : '';
  return `${note}<nav aria-label="Pages">${parts.join(' ')}</nav>`;
}

function imageTable(found: readonly ImageRow[]): string {
  const rows: string[] = [];
  for (const row of found) {
    if ('untagged' in row) {
      rows.push(
        `<tr data-ref="${escapeHtml(row.repo)}"><td>${escapeHtml(row.repo)}</td><td colspan="6">${row.untagged} manifest(s) cached by digest only</td></tr>`,
      );
    } else rows.push(tagRow(row.repo, row.tag));
  }
  if (rows.length === 0) rows.push('<tr><td colspan="7">Nothing here: pull an image through the mirror, or change the filter.</td></tr>');
  return `<table id="images"><thead><tr><th>Repository</th><th>Tag</th><th>Kind</th><th>Size</th><th>Digest</th><th>Last pulled</th><th>Expires</th></tr></thead>
<tbody>${rows.join('\n')}</tbody></table>`;
}

function tagRow(repo: string, t: TagReport): string {
  const kind = t.kind === 'index' ? `index (${t.platforms} platforms)` : t.kind;
  return `<tr data-ref="${escapeHtml(`${repo}:${t.tag}`.toLowerCase())}"><td>${escapeHtml(repo)}</td><td>${escapeHtml(t.tag)}</td><td>${kind}</td><td class="num">${formatBytes(
    t.size,
  )}</td><td><code title="${escapeHtml(t.digest)}">${escapeHtml(t.digest.slice(0, 19))}</code></td><td>${time(t.lastPulled, 'unknown')}</td><td>${time(t.expires, 'never')}</td></tr>`;
}
