/**
 * What the endpoints report, turned into distribution's notification metrics and our log lines (a
 * short message, the endpoint and the rest as fields: `endpoint`, `err.message`, ...): a
 * failing endpoint is logged once when it starts backing off and once when it delivers again, and
 * dropped events at most once per endpoint every 10 seconds (with how many), so a dead endpoint
 * under load neither floods the log nor goes unnoticed.
 */
import { STATUS_CODES } from 'node:http';
import type { Logger } from 'winston';
import type { Metrics } from '../metrics/metrics.js';
import type { DropReason, EndpointListener } from './endpoint.js';

const DROP_LOG_INTERVAL_MS = 10_000;

/** The listener the endpoints of one registry report to. */
export function reportingListener(metrics: Metrics, logger: Logger): EndpointListener {
  const failing = new Set<string>();
  const drops = new Map<string, { logged: number; since: Record<DropReason, number> }>();
  const status = (endpoint: string, code: number): void =>
    void metrics.notificationStatus.inc({ code: `${code} ${STATUS_CODES[code] ?? ''}`.trim(), endpoint });
  return {
    queued: (endpoint) => {
      metrics.notificationEvents.inc({ type: 'Events', endpoint });
      metrics.notificationPending.inc({ endpoint });
    },
    dequeued: (endpoint) => void metrics.notificationPending.dec({ endpoint }),
    delivered: (endpoint, code) => {
      status(endpoint, code);
      metrics.notificationEvents.inc({ type: 'Successes', endpoint });
      if (failing.delete(endpoint)) logger.info('notifications: endpoint accepts events again', { endpoint });
    },
    rejected: (endpoint, code) => {
      status(endpoint, code);
      metrics.notificationEvents.inc({ type: 'Failures', endpoint });
      logger.debug('notifications: endpoint refused the events, retrying', { endpoint, 'http.response.status': code });
    },
    failed: (endpoint, err) => {
      metrics.notificationEvents.inc({ type: 'Errors', endpoint });
      logger.debug('notifications: delivery failed, retrying', { endpoint, 'err.message': err.message });
    },
    backingOff: (endpoint, failures, err) => {
      failing.add(endpoint);
      logger.warn('notifications: endpoint failing, retrying every backoff; events queue up to its queuelimit', {
        endpoint,
        failures,
        'err.message': err.message,
      });
    },
    dropped: (endpoint, reason, count) => {
      metrics.notificationsDropped.inc({ endpoint, reason }, count);
      const d = drops.get(endpoint) ?? { logged: 0, since: { queue_full: 0, shutdown: 0 } };
      drops.set(endpoint, d);
      d.since[reason] += count;
      const now = Date.now();
      if (reason !== 'shutdown' && now - d.logged < DROP_LOG_INTERVAL_MS) return;
      d.logged = now;
      // One field per reason with drops since the last line (`dropped.queue_full`, `dropped.shutdown`).
      const counts = Object.fromEntries((Object.entries(d.since) as [DropReason, number][]).filter(([, n]) => n > 0).map(([r, n]) => [`dropped.${r}`, n]));
      d.since = { queue_full: 0, shutdown: 0 };
      logger.warn('notifications: events dropped, see registry_notifications_dropped_total', { endpoint, ...counts });
    },
  };
}
