/**
 * Prometheus metrics with distribution's proxy metric names
 * (`registry_proxy_{requests,hits,misses,pulled_bytes,pushed_bytes}_total{type}`) plus ours. Uses
 * prom-client: a well-kept implementation of the exposition format and histograms.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { ContentType } from '../stores.js';

/** All metrics of one registry process, in their own registry (tests start several processes' worth). */
export class Metrics {
  readonly registry = new Registry();
  readonly proxyRequests: Counter<'type'>;
  readonly proxyHits: Counter<'type'>;
  readonly proxyMisses: Counter<'type'>;
  /** Bytes fetched from the upstreams (distribution's `pulled_bytes`: pulled by the proxy). */
  readonly fetchedBytes: Counter<'type'>;
  /** Bytes served to clients (distribution's `pushed_bytes`: pushed by the proxy to its clients). */
  readonly servedBytes: Counter<'type'>;
  readonly httpDuration: Histogram<'route' | 'method' | 'status'>;
  readonly upstreamResponses: Counter<'method' | 'status'>;
  /** Upstream answers by upstream host, `charged` true for what Docker Hub counts as a pull (a manifest GET). */
  readonly upstreamRequests: Counter<'upstream' | 'charged'>;
  /** Cached tags served without an upstream check, by reason (`fresh`: its freshness window; `budget`: the rate limit is low). */
  readonly tagChecksSkipped: Counter<'reason'>;
  readonly inflightFetches: Gauge;
  readonly expirations: Counter<'type'>;
  readonly rateLimitRemaining: Gauge;
  readonly evictions: Counter<'type'>;
  readonly evictedBytes: Counter;
  readonly cacheBytes: Gauge;
  readonly cacheWriteFailures: Counter<'type'>;
  readonly manifestsRefused: Counter<'reason'>;
  readonly blobRaces: Counter<'outcome'>;
  readonly redisUp: Gauge;
  readonly uncoordinated: Counter;
  /** distribution's notification metrics: events by `type` (`Events` queued, `Successes`, `Failures`, `Errors`) and endpoint. */
  readonly notificationEvents: Counter<'type' | 'endpoint'>;
  readonly notificationPending: Gauge<'endpoint'>;
  readonly notificationStatus: Counter<'code' | 'endpoint'>;
  /** Ours: events never sent (a full queue, or still queued at shutdown). */
  readonly notificationsDropped: Counter<'endpoint' | 'reason'>;

  constructor() {
    const registers = [this.registry];
    const counter = <L extends string>(name: string, help: string, labelNames: L[]) => new Counter<L>({ name, help, labelNames, registers });
    this.proxyRequests = counter('registry_proxy_requests_total', 'The number of total incoming proxy request received.', ['type']);
    this.proxyHits = counter('registry_proxy_hits_total', 'The number of total proxy request hits.', ['type']);
    this.proxyMisses = counter('registry_proxy_misses_total', 'The number of total proxy request misses.', ['type']);
    this.fetchedBytes = counter('registry_proxy_pulled_bytes_total', 'The size of total bytes pulled from the upstream.', ['type']);
    this.servedBytes = counter('registry_proxy_pushed_bytes_total', 'The size of total bytes pushed to the client.', ['type']);
    this.upstreamResponses = counter('registry_mirror_upstream_responses_total', 'Upstream answers by method and status.', ['method', 'status']);
    this.upstreamRequests = counter(
      'registry_mirror_upstream_requests_total',
      'Upstream answers by upstream; charged="true" for manifest GETs, what Docker Hub counts as pulls.',
      ['upstream', 'charged'],
    );
    this.tagChecksSkipped = counter('registry_mirror_tag_checks_skipped_total', 'Cached tags served without asking the upstream, by reason (fresh, budget).', [
      'reason',
    ]);
    this.expirations = counter('registry_mirror_expirations_total', 'Cached content expired by the TTL scheduler.', ['type']);
    this.evictions = counter('registry_mirror_evictions_total', 'Cached content evicted to stay under proxy.maxsize.', ['type']);
    this.evictedBytes = new Counter({ name: 'registry_mirror_evicted_bytes_total', help: 'Blob data deleted to stay under proxy.maxsize.', registers });
    this.cacheWriteFailures = counter(
      'registry_mirror_cache_write_failures_total',
      'Content served to clients but not cached because the storage refused the write (a full disk).',
      ['type'],
    );
    this.manifestsRefused = counter(
      'registry_mirror_manifests_refused_total',
      "Upstream manifests refused (a 503, nothing stored) because they could not be verified as the upstream's, by reason.",
      ['reason'],
    );
    this.blobRaces = counter(
      'registry_mirror_blob_races_total',
      'Crawling blob fetches raced by a second upstream connection (proxy.overtake), by outcome: won (the new connection took over), lost, failed (it could not start), stopped (nobody read the fetch and it stayed slow).',
      ['outcome'],
    );
    for (const outcome of ['won', 'lost', 'failed', 'stopped']) this.blobRaces.inc({ outcome }, 0);
    this.redisUp = new Gauge({
      name: 'registry_mirror_redis_up',
      help: 'With redis: configured, 1 while Redis answers, 0 while it does not (the replicas then fetch without coordination).',
      registers,
    });
    this.uncoordinated = new Counter({
      name: 'registry_mirror_uncoordinated_fetches_total',
      help: 'Upstream fetches started without coordination across replicas because Redis did not answer.',
      registers,
    });
    this.notificationEvents = counter('registry_notifications_events_total', 'The number of total events', ['type', 'endpoint']);
    this.notificationPending = new Gauge({
      name: 'registry_notifications_pending_total',
      help: 'The gauge of pending events in queue',
      labelNames: ['endpoint'],
      registers,
    });
    this.notificationStatus = counter('registry_notifications_status_total', 'The number of status code', ['code', 'endpoint']);
    this.notificationsDropped = counter(
      'registry_notifications_dropped_total',
      'Events dropped for an endpoint, by reason: queue_full (notifications.endpoints[].queuelimit events were waiting for it) or shutdown (still queued when the registry stopped).',
      ['endpoint', 'reason'],
    );
    this.cacheBytes = new Gauge({ name: 'registry_mirror_cache_bytes', help: 'Blob data in the cache, in bytes.', registers });
    this.httpDuration = new Histogram({
      name: 'registry_mirror_http_request_duration_seconds',
      help: 'Time to answer a request, by route, method and status.',
      labelNames: ['route', 'method', 'status'],
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120],
      registers,
    });
    this.inflightFetches = new Gauge({ name: 'registry_mirror_inflight_fetches', help: 'Blob fetches from the upstream under way.', registers });
    this.rateLimitRemaining = new Gauge({
      name: 'registry_mirror_upstream_ratelimit_remaining',
      help: 'The upstream RateLimit-Remaining last seen.',
      registers,
    });
    for (const type of ['blob', 'manifest'] as const) {
      for (const c of [this.proxyRequests, this.proxyHits, this.proxyMisses, this.fetchedBytes, this.servedBytes, this.cacheWriteFailures]) c.inc({ type }, 0);
    }
    collectDefaultMetrics({ register: this.registry });
  }

  /** A cache hit of `type`. */
  hit(type: ContentType): void {
    this.proxyRequests.inc({ type });
    this.proxyHits.inc({ type });
  }

  /** A cache miss of `type`. */
  miss(type: ContentType): void {
    this.proxyRequests.inc({ type });
    this.proxyMisses.inc({ type });
  }
}
