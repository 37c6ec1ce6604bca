/**
 * The one place each cache event is fanned out: what the proxy stores, the expiry schedule and the
 * size cap report goes on to metrics, the schedule, the size cap and the notification endpoints.
 * The schedule and the size cap know each other only through here: an expiry is counted off the
 * cap (`expired`), a replica taking the scheduler lease over enforces the cap (`leaseTaken`), the
 * cap evicts only on the replica that runs the schedule for all (`runsForAll`).
 */
import type http from 'node:http';
import type { Logger } from 'winston';
import type { Digest } from '../distribution/digest.js';
import type { ContentType } from '../stores.js';
import type { Metrics } from '../metrics/metrics.js';
import type { Notifier } from '../notifications/notifier.js';
import type { NamespaceEvents } from '../proxy/namespace.js';
import type { RaceEvent } from '../proxy/blob-fetch.js';
import { BlobFetchStoppedError } from '../proxy/blob-fetch.js';
import { formatRate } from '../proxy/overtake.js';
import { isCharged, parseRateHeader } from '../proxy/upstream-guards.js';
import type { CacheLifetime } from '../expiry/cache-lifetime.js';
import type { SizeCap } from '../retention/size-cap.js';

/** An upstream's answer, as the namespaces report it. */
interface UpstreamResponse {
  readonly host: string;
  readonly method: string;
  readonly path: string;
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
}

/**
 * The fan-out of one registry process. Built first (it reports to metrics and notifications only);
 * the schedule and the size cap are built with its methods as their callbacks and `attach`ed once
 * both exist, so that no event can reach a part that does not exist yet.
 */
export class CacheEventFanOut {
  /** For the cache page: each upstream host's last `RateLimit-Remaining`. */
  readonly rateLimits = new Map<string, string>();
  private lifetime?: CacheLifetime;
  private sizeCap?: SizeCap;

  /**
   * `notifier`: undefined when no endpoint is enabled, so that no cache event goes further than a
   * check (decided once, as the request side's events in lib/server.ts).
   */
  constructor(
    private readonly metrics: Metrics,
    private readonly notifier: Notifier | undefined,
    private readonly logger: Logger,
  ) {}

  /** Connects the schedule and the size cap; events of the stores reach them from then on. */
  attach(lifetime: CacheLifetime, sizeCap: SizeCap): void {
    this.lifetime = lifetime;
    this.sizeCap = sizeCap;
  }

  /** What the proxy stores of every upstream report, for both kinds of content. */
  readonly stores: NamespaceEvents = {
    stored: (type, repo, digest, size) => {
      this.metrics.fetchedBytes.inc({ type }, size);
      this.lifetime?.schedule(type, repo, digest.value);
      this.sizeCap?.stored(type, repo, digest, size);
      this.notifier?.cache('cached', type, repo, digest, size);
    },
    hit: (type, repo, digest) => {
      this.metrics.hit(type);
      this.lifetime?.touch(type, repo, digest.value);
      this.sizeCap?.hit(type, repo, digest);
    },
    miss: (type) => this.metrics.miss(type),
    cacheWriteFailed: (type, repo, digest, err) => {
      this.metrics.cacheWriteFailures.inc({ type });
      const fields = { type, 'vars.name': repo, 'vars.digest': digest.value, 'err.message': err.message };
      if (err instanceof BlobFetchStoppedError) return void this.logger.warn('cache write abandoned', fields);
      const code = (err as NodeJS.ErrnoException).code;
      this.logger.error('cache write abandoned: the client is served from the upstream', { ...fields, 'err.code': code });
    },
    checkSkipped: (_repo, _tag, reason) => this.metrics.tagChecksSkipped.inc({ reason }),
    manifestRefused: (repo, reference, reason, detail) => {
      this.metrics.manifestsRefused.inc({ reason });
      this.logger.warn('upstream manifest refused as unverified, nothing stored', {
        'vars.name': repo,
        'vars.reference': reference,
        reason,
        'err.detail': detail,
      });
    },
  };

  /** The schedule expired content: counted, taken off the size cap's measure, announced. */
  readonly expired = (type: ContentType, freed: number, digest: Digest, repo: string): void => {
    this.metrics.expirations.inc({ type });
    this.sizeCap?.expired(repo, digest, freed);
    this.notifier?.cache('evicted', type, repo, digest, undefined);
  };

  /** The size cap evicted content: counted and announced. */
  readonly evicted = (type: ContentType, freed: number, repo: string, digest: Digest): void => {
    this.metrics.evictions.inc({ type });
    this.metrics.evictedBytes.inc(freed);
    this.notifier?.cache('evicted', type, repo, digest, undefined);
  };

  /** The size cap's measure changed. */
  readonly sized = (bytes: number): void => this.metrics.cacheBytes.set(bytes);

  /** Replicas: one cache-wide figure, kept and enforced by the scheduler-lease holder alone. */
  readonly runsForAll = (): boolean => this.lifetime?.runsForAll ?? true;

  /** A replica taking the lease over enforces the cap at once (its own figure may be over it). */
  readonly leaseTaken = (): void => void this.sizeCap?.enforce();

  /** The lease holder learnt content another replica stored: the size cap counts it. */
  readonly learnt = (type: ContentType, repo: string, digest: Digest, renewed: boolean): void =>
    void this.sizeCap
      ?.learnt(type, repo, digest, renewed)
      .catch((err: Error) => this.logger.warn('size cap: measuring failed', { 'vars.name': repo, 'vars.digest': digest.value, 'err.message': err.message }));

  /** What racing a crawling blob fetch did (`proxy.overtake`). */
  readonly blobRace = (repo: string, digest: Digest, event: RaceEvent) => {
    const blob = `blob ${repo}@${digest.value}`;
    switch (event.kind) {
      case 'started':
        return this.logger.info(
          `${blob}: the upstream sends ${formatRate(event.rate)}, below proxy.overtake.minrate: racing a second connection from byte ${event.offset}`,
        );
      case 'won':
      case 'lost':
        this.metrics.blobRaces.inc({ outcome: event.kind });
        return this.logger.info(
          `${blob}: the second connection ${event.kind} (${formatRate(event.racerRate)} against ${formatRate(event.rate)}); the ${event.kind === 'won' ? 'first' : 'second'} is cancelled`,
        );
      case 'failed':
        this.metrics.blobRaces.inc({ outcome: 'failed' });
        return this.logger.warn(`${blob}: a second upstream connection could not be used: ${event.error.message}`);
      case 'stopped':
        this.metrics.blobRaces.inc({ outcome: 'stopped' });
        return this.logger.warn(
          `${blob}: upstream fetch stopped: no client reads it and it crawls at ${formatRate(event.rate)}; the next request fetches it anew`,
        );
    }
  };

  /** Every upstream answer: metrics, and Docker Hub's rate-limit headroom. */
  readonly upstreamResponse = ({ host, method, path, status, headers }: UpstreamResponse): void => {
    this.logger.debug('upstream response', { 'upstream.host': host, 'http.request.method': method, 'http.request.uri': path, 'http.response.status': status });
    this.metrics.upstreamResponses.inc({ method, status: String(status) });
    // What Docker Hub charges: a manifest GET it answered; everything else is free.
    this.metrics.upstreamRequests.inc({ upstream: host, charged: String(isCharged(method, path) && status >= 200 && status < 300) });
    const remaining = headers['ratelimit-remaining'];
    // Docker Hub sends `RateLimit-Remaining: 76;w=21600`; a malformed or empty one says nothing
    // (read as the budget reads it: not a zero that would alarm).
    const left = parseRateHeader(remaining);
    if (left && typeof remaining === 'string') {
      this.metrics.rateLimitRemaining.set(left.n);
      this.rateLimits.set(host, remaining);
      this.logger.info('upstream rate limit remaining', {
        'upstream.host': host,
        'ratelimit.remaining': remaining,
        'ratelimit.limit': headers['ratelimit-limit'],
      });
    }
  };
}
